/**
 * 429 + Retry-After, hedging, no retry after the first streamed token, the idempotency rule,
 * and draining — through the real gateway and real loopback upstreams.
 */
import { describe, expect, it } from 'vitest';
import { Agent } from 'undici';
import { buildInferenceRequest } from '../../src/inference/request.ts';
import { McpError } from '../../src/errors.ts';
import { stallMeter } from '../support/stall-meter.ts';
import { closeUpstreams, infer, load, modelSeed, routerConfig, sleep, startRouterGateway, startUpstreams, until } from './harness.ts';

describe('resilience', () => {
  const retryAfter429 =
    '429 + Retry-After: the instance is left alone for that long; ' + 'a single instance is waited for when that fits the deadline, else answered at once';
  it(retryAfter429, async () => {
    const ups = await startUpstreams(3);
    const gw = await startRouterGateway({
      router: routerConfig(),
      models: [modelSeed('rl', { v1: [ups[0]!.url, ups[1]!.url] }), modelSeed('rl1', { v1: [ups[2]!.url] })],
    });
    const agent = new Agent({ connections: 4 });
    try {
      // Asked to back off for 10 s: no second request inside those seconds (10 requests one after the
      // other fit in them however busy the machine is; with 1 s they need not).
      ups[0]!.proxy.set({ errorRate: 1, errorStatus: 429, retryAfter: '10' });
      const first = await load(gw, 'rl', 10, 1, { agent });
      expect(first.every((a) => a.status === 200)).toBe(true);
      const hits = ups[0]!.proxy.requests;
      expect(hits).toBe(1);
      expect(gw.services.router.healthOf('rl-v1-0')).toBe('throttled');

      // One instance: wait for Retry-After when the deadline allows it. Upper bounds are in the gateway's
      // own time: what a busy machine kept this process from running is added.
      const p = ups[2]!.proxy;
      p.set({ errorRate: 1, errorStatus: 429, retryAfter: '1' });
      let stall = stallMeter();
      const faulted = p.faulted;
      const pending = infer(gw, agent, 'rl1', { 'x-mcp-timeout-ms': '3000' });
      // Healed once the 429 went out (not "300 ms later": a busy machine may not have sent it by then).
      expect(await until(() => p.faulted > faulted, 10_000)).toBe(true);
      p.set({});
      const waited = await pending;
      expect(waited.status).toBe(200);
      expect(waited.ms).toBeGreaterThanOrEqual(900);
      expect(waited.ms).toBeLessThan(2000 + stall.stop());
      // ...and answer at once, with Retry-After, when it does not.
      p.set({ errorRate: 1, errorStatus: 429, retryAfter: '2' });
      stall = stallMeter();
      const t0 = performance.now();
      const { request } = await import('undici');
      const r = await request(`${gw.url}/api/v1/models/rl1/inference`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json', 'x-mcp-timeout-ms': '1000' },
        body: JSON.stringify({ prompt: 'hi' }),
      });
      const body = (await r.body.json()) as { error: { code: string } };
      expect(r.statusCode).toBe(429);
      expect(body.error.code).toBe('MCP_UPSTREAM_RATE_LIMITED');
      expect(r.headers['retry-after']).toBe('2');
      expect(performance.now() - t0).toBeLessThan(300 + stall.stop());
    } finally {
      await agent.close();
      await gw.close();
      await closeUpstreams(ups);
    }
  });

  it('hedging: a request stuck on a slow instance gets a second attempt elsewhere after the delay', async () => {
    const ups = await startUpstreams(2);
    const gw = await startRouterGateway({
      router: routerConfig({ hedging: { enabled: true, percentile: 95, minDelayMs: 60 } }),
      models: [modelSeed('hg', { v1: ups.map((u) => u.url) })],
    });
    // The slow instance answers nothing until the end of the test: an answer can only come from the
    // hedge, and only an abort can take its twin out of the in-flight count.
    let open!: () => void;
    ups[1]!.fake.setBehavior({
      models: ['fake-model'],
      tokens: ['ok'],
      gate: new Promise<void>((r) => {
        open = r;
      }),
    });
    const agent = new Agent({ connections: 4 });
    try {
      expect((await gw.gql('mutation { setBalancer(model: "hg", balancer: "round-robin") { id } }')).errors).toBeUndefined();
      const answers = [];
      // The time bound is the gateway's own time: what a busy machine kept this process from running is added.
      const stall = stallMeter();
      // (A deadline, so a request left on the slow instance fails instead of hanging the test.)
      for (let i = 0; i < 6; i++) answers.push(await infer(gw, agent, 'hg', { 'x-mcp-explain': '1', 'x-mcp-timeout-ms': '5000' }));
      expect(answers.every((a) => a.status === 200)).toBe(true);
      expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(400 + stall.stop());
      const hedged = answers.filter((a) => (a.routing as { hedged?: boolean }).hedged);
      expect(hedged.length).toBeGreaterThanOrEqual(2);
      for (const h of hedged) expect((h.routing as { chosen: string }).chosen).toBe('hg-v1-0');
      // The abandoned twin does not keep counting as in flight.
      expect(await until(() => gw.services.instances.handle('hg-v1-1')!.outstanding === 0, 5000)).toBe(true);
    } finally {
      open();
      await agent.close();
      await gw.close();
      await closeUpstreams(ups);
    }
  });

  it('no retry after the first streamed token; before it, the stream fails over', async () => {
    const ups = await startUpstreams(2, { tokens: ['a', 'b', 'c', 'd'], tokenDelayMs: 20 });
    const gw = await startRouterGateway({ router: routerConfig(), models: [modelSeed('st', { v1: ups.map((u) => u.url) })] });
    const run = async () => {
      const stream = gw.services.inference.stream(
        buildInferenceRequest({ model: 'st', input: { task: 'generate', prompt: 'x' }, stream: true, entry: 'test', signal: new AbortController().signal }),
      );
      let text = '';
      try {
        for await (const c of stream) text += c.text;
        return { text };
      } catch (err) {
        return { text, error: err as McpError };
      }
    };
    try {
      for (const u of ups) u.fake.setBehavior({ models: ['fake-model'], tokens: ['a', 'b', 'c', 'd'], tokenDelayMs: 20, dropAfterTokens: 2 });
      const before = ups[0]!.fake.requests + ups[1]!.fake.requests;
      const r = await run();
      expect(r.text.length).toBeGreaterThan(0); // the client saw output...
      expect(r.text.length).toBeLessThan(4);
      expect(['MCP_UPSTREAM_ERROR', 'MCP_UPSTREAM_UNAVAILABLE']).toContain(r.error?.code); // ...then an error, not a retry
      expect(ups[0]!.fake.requests + ups[1]!.fake.requests - before).toBe(1);
      // A failure before the first token is retried on the other instance.
      for (const u of ups) u.fake.setBehavior({ models: ['fake-model'], tokens: ['a', 'b', 'c', 'd'], tokenDelayMs: 20 });
      ups[0]!.proxy.set({ errorRate: 1, errorStatus: 503 });
      for (let i = 0; i < 4; i++) expect((await run()).text).toBe('abcd');
    } finally {
      await gw.close();
      await closeUpstreams(ups);
    }
  });

  it('non-idempotent models: a 502 (the model may have run) is not retried, a 503 is', async () => {
    const ups = await startUpstreams(2);
    const gw = await startRouterGateway({ router: routerConfig(), models: [modelSeed('ni', { v1: ups.map((u) => u.url) })] });
    const agent = new Agent({ connections: 2 });
    try {
      expect((await gw.gql('mutation { setIdempotent(model: "ni", idempotent: false) { routing } }')).errors).toBeUndefined();
      expect((await gw.gql('mutation { setBalancer(model: "ni", balancer: "round-robin") { id } }')).errors).toBeUndefined();
      ups[0]!.proxy.set({ errorRate: 1, errorStatus: 502 });
      const codes = [];
      for (let i = 0; i < 4; i++) codes.push((await infer(gw, agent, 'ni')).code ?? 'OK');
      expect(codes.filter((c) => c === 'MCP_UPSTREAM_ERROR').length).toBe(2); // the ones sent to the 502 instance
      ups[0]!.proxy.set({ errorRate: 1, errorStatus: 503 });
      for (let i = 0; i < 4; i++) expect((await infer(gw, agent, 'ni')).status).toBe(200);
      // Idempotent (the default): 502 is retried elsewhere.
      ups[0]!.proxy.set({ errorRate: 1, errorStatus: 502 });
      await gw.gql('mutation { setIdempotent(model: "ni", idempotent: true) { id } }');
      for (let i = 0; i < 2; i++) expect((await infer(gw, agent, 'ni')).status).toBe(200);
    } finally {
      await agent.close();
      await gw.close();
      await closeUpstreams(ups);
    }
  });

  it('drainInstance stops new requests and lets the in-flight ones finish', async () => {
    const ups = await startUpstreams(2);
    const gw = await startRouterGateway({ router: routerConfig(), models: [modelSeed('dr', { v1: ups.map((u) => u.url) })] });
    // Both upstreams hold their answers until the test opens the gate: what is in flight, and when it
    // finishes, is decided by the test rather than by a latency and the machine's speed.
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    for (const u of ups) u.fake.setBehavior({ models: ['fake-model'], tokens: ['ok'], gate });
    const agent = new Agent({ connections: 16 });
    try {
      await gw.gql('mutation { setBalancer(model: "dr", balancer: "round-robin") { id } }');
      const inflight = Array.from({ length: 6 }, () => infer(gw, agent, 'dr'));
      expect(await until(() => ups[0]!.fake.requests + ups[1]!.fake.requests >= 6, 10_000)).toBe(true);
      expect(gw.services.instances.handle('dr-v1-0')!.outstanding).toBeGreaterThan(0);
      const t0 = Date.now();
      const drained = gw.gql<{ drainInstance: { status: string } }>('mutation { drainInstance(id: "dr-v1-0", timeoutMs: 5000) { status } }');
      expect(await until(() => gw.services.instances.handle('dr-v1-0')!.draining, 10_000)).toBe(true);
      let settled = false;
      void drained.then(() => {
        settled = true;
      });
      const before = ups[0]!.proxy.requests;
      const other = ups[1]!.fake.requests;
      const during = Array.from({ length: 4 }, () => infer(gw, agent, 'dr'));
      expect(await until(() => ups[1]!.fake.requests >= other + 4, 10_000)).toBe(true); // all four went to the other instance
      await sleep(200);
      expect(settled).toBe(false); // still waiting for the in-flight requests
      open();
      const d = await drained;
      const waited = Date.now() - t0;
      expect(d.data?.drainInstance.status).toBe('DRAINING');
      expect(waited).toBeGreaterThanOrEqual(200); // it waited for the in-flight requests
      expect((await Promise.all(inflight)).every((a) => a.status === 200)).toBe(true);
      expect((await Promise.all(during)).every((a) => a.status === 200)).toBe(true);
      expect(ups[0]!.proxy.requests).toBe(before); // nothing new reached the draining instance
      expect(gw.services.instances.handle('dr-v1-0')!.outstanding).toBe(0);
    } finally {
      open();
      await agent.close();
      await gw.close();
      await closeUpstreams(ups);
    }
  });
});
