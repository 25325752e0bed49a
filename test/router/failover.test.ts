/**
 * Failover scenarios through the real gateway: one bad instance of three (503 to everything),
 * retry amplification under 50% errors everywhere, and a black-holed upstream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from 'undici';
import type { InstanceHealthEvent } from '../../src/events/bus.ts';
import type { TestGateway } from '../../src/testing/gateway.ts';
import { stallMeter } from '../support/stall-meter.ts';
import {
  closeUpstreams,
  infer,
  loadFor,
  loadInProcess,
  modelSeed,
  routerConfig,
  sleep,
  startRouterGateway,
  startUpstreams,
  until,
  type Upstream,
} from './harness.ts';

describe('one of three instances answers 503 to everything', () => {
  let ups: Upstream[];
  let gw: TestGateway;
  const events: InstanceHealthEvent[] = [];
  const watch = new AbortController();

  beforeAll(async () => {
    ups = await startUpstreams(3);
    // Faults are injected on the third instance only: the healthy two reach their fake servers
    // directly, without the fault proxy's HTTP hop (CPU the 5,000 requests do not need).
    gw = await startRouterGateway({ router: routerConfig(), models: [modelSeed('m3', { v1: [ups[0]!.fake.url, ups[1]!.fake.url, ups[2]!.url] })] });
    void (async () => {
      for await (const e of gw.services.events.subscribe('instanceHealth', watch.signal)) events.push(e);
    })();
  });
  afterAll(async () => {
    watch.abort();
    await gw?.close();
    await closeUpstreams(ups ?? []);
  });

  it('≥ 99% of 5,000 requests succeed; the breaker opens, allows one trial per half-open interval, and traffic returns after healing', async () => {
    // Round-robin keeps offering the bad instance its share, so the breaker (not p2c-EWMA's error penalty,
    // which would mostly avoid it on its own) is what protects the traffic here.
    expect((await gw.gql('mutation { setBalancer(model: "m3", balancer: "round-robin") { id } }')).errors).toBeUndefined();
    const bad = ups[2]!.proxy;
    bad.set({ errorRate: 1, errorStatus: 503 });
    // In process (no HTTP hop in front of the gateway): the router, breaker and upstream calls are the same.
    const answers = await loadInProcess(gw, 'm3', 5000, 20);
    const ok = answers.filter((a) => a.status === 200).length;
    expect(ok / answers.length).toBeGreaterThanOrEqual(0.99);
    const opened = events.find((e) => e.instanceId === 'm3-v1-2' && e.state === 'circuit-open');
    expect(opened?.reason).toBe('consecutive-failures');
    // Healthy instances were never reported unhealthy.
    expect(events.filter((e) => e.instanceId !== 'm3-v1-2' && e.state !== 'healthy')).toEqual([]);
    // While it stays broken: at most one trial per half-open interval (openMs 200, backing off to 400).
    const n0 = bad.requests;
    const t0 = Date.now();
    await loadFor(gw, 'm3', 1500, 4);
    const elapsed = Date.now() - t0;
    const trials = bad.requests - n0;
    expect(trials).toBeGreaterThanOrEqual(1); // a trial needs the balancer to pick it while half-open
    expect(trials).toBeLessThanOrEqual(Math.ceil(elapsed / 200) + 1);
    // Heal: traffic comes back within two (max) open intervals.
    bad.set({});
    // The bound is the gateway's own time: what a busy machine kept this process from running is added.
    const stall = stallMeter();
    const healedAt = Date.now();
    const f0 = bad.forwarded;
    const agent = new Agent({ connections: 4 });
    let back = false;
    const deadline = Date.now() + 3000;
    while (!back && Date.now() < deadline) {
      await Promise.all(Array.from({ length: 4 }, () => infer(gw, agent, 'm3')));
      back = bad.forwarded > f0;
    }
    const returnedAfter = Date.now() - healedAt;
    await agent.close();
    expect(back).toBe(true);
    expect(returnedAfter).toBeLessThanOrEqual(2 * 400 + 100 + stall.stop());
    expect(await until(() => gw.services.router.healthOf('m3-v1-2') === 'healthy', 1000)).toBe(true);
    const r = await gw.gql<{ instance: { health: string } }>('query { instance(id: "m3-v1-2") { health } }');
    expect(r.data?.instance.health).toBe('healthy');
    console.log(
      `[failover] 5000 requests, 1 of 3 instances 503: success ${(ok / 50).toFixed(2)}%; ` +
        `trials while open ${trials} in ${elapsed} ms; traffic back ${returnedAfter} ms after healing`,
    );
  });
});

describe("an operator resets an instance's health", () => {
  it('resetInstanceHealth closes an open circuit at once instead of after its cool-down, and says so on instanceHealth', async () => {
    const ups = await startUpstreams(1);
    const gw = await startRouterGateway({
      router: routerConfig({ circuitBreaker: { openMs: 60_000, maxOpenMs: 60_000 } }),
      models: [modelSeed('solo', { v1: [ups[0]!.url] })],
    });
    const events: InstanceHealthEvent[] = [];
    const watch = new AbortController();
    void (async () => {
      for await (const e of gw.services.events.subscribe('instanceHealth', watch.signal)) events.push(e);
    })();
    const agent = new Agent({ connections: 1 });
    try {
      ups[0]!.proxy.set({ errorRate: 1, errorStatus: 503 });
      for (let i = 0; i < 8; i++) await infer(gw, agent, 'solo');
      expect(gw.services.router.healthOf('solo-v1-0')).toBe('circuit-open');
      ups[0]!.proxy.set({});
      const blocked = await infer(gw, agent, 'solo');
      expect([blocked.status, blocked.code]).toEqual([503, 'MCP_CIRCUIT_OPEN']); // healed, but the circuit stays open for 60 s
      const q = 'mutation($id: ID!) { resetInstanceHealth(id: $id) { id health } }';
      const r = await gw.gql<{ resetInstanceHealth: { id: string; health: string } }>(q, { id: 'solo-v1-0' });
      expect(r.errors).toBeUndefined();
      expect(r.data!.resetInstanceHealth.health).not.toMatch(/circuit|ejected/);
      const after = await infer(gw, agent, 'solo');
      expect(after.status).toBe(200);
      expect(await until(() => events.some((e) => e.instanceId === 'solo-v1-0' && e.reason === 'reset by an operator'), 1000)).toBe(true);
      const missing = await gw.gql(q, { id: 'no-such-instance' });
      expect(missing.errors?.[0]?.extensions?.code).toBe('MCP_INSTANCE_NOT_FOUND');
    } finally {
      watch.abort();
      await agent.close();
      await gw.close();
      await closeUpstreams(ups);
    }
  });
});

describe('50% errors on every instance', () => {
  it('upstream requests / client requests ≤ 1.2 plus the budget floor', async () => {
    const ups = await startUpstreams(3, {}, { errorRate: 0.5, errorStatus: 503 });
    const minRetriesPerSecond = 1;
    const windowMs = 10_000;
    const gw = await startRouterGateway({
      router: routerConfig({
        retryBudget: { ratio: 0.2, minRetriesPerSecond, windowMs },
        // Breakers and ejection out of the way: this measures the retry budget alone.
        circuitBreaker: { consecutiveFailures: 1000, failureRateThreshold: 1, minRequests: 1_000_000 },
        outlierDetection: { consecutiveFailures: 1000, failureRateThreshold: 0 },
      }),
      models: [modelSeed('m50', { v1: ups.map((u) => u.url) })],
    });
    try {
      const t0 = Date.now();
      const n = 2000;
      const answers = await loadInProcess(gw, 'm50', n, 20); // no HTTP hop in front of the gateway: same router, less CPU
      const seconds = (Date.now() - t0) / 1000;
      const upstream = ups.reduce((s, u) => s + u.proxy.requests, 0);
      // The budget allows 20% of the requests in any window plus minRetriesPerSecond × window; the run spans
      // ⌈seconds / window⌉ windows at most.
      const floor = minRetriesPerSecond * (windowMs / 1000) * Math.ceil(seconds / (windowMs / 1000));
      const ratio = upstream / n;
      expect(upstream).toBeLessThanOrEqual(1.2 * n + floor);
      const ok = answers.filter((a) => a.status === 200).length;
      // Retries did help: better than the bare 50%.
      expect(ok / n).toBeGreaterThan(0.55);
      const exhausted = answers.filter((a) => a.status !== 200 && a.details?.retryBudgetExhausted === true).length;
      expect(exhausted).toBeGreaterThan(0);
      console.log(
        `[retry-amplification] ${n} requests, 50% errors everywhere: upstream/client ${ratio.toFixed(3)} ` +
          `(allowed ${(1.2 + floor / n).toFixed(3)}), success ${((ok / n) * 100).toFixed(1)}%, ${seconds.toFixed(1)} s`,
      );
    } finally {
      await gw.close();
      await closeUpstreams(ups);
    }
  });
});

describe('black hole', () => {
  it('ends with MCP_DEADLINE_EXCEEDED within deadline + 100 ms and leaves no sockets behind', async () => {
    const ups = await startUpstreams(1, {}, {});
    const gw = await startRouterGateway({ router: routerConfig(), models: [modelSeed('bh', { v1: [ups[0]!.url] })] });
    const tcp = () => process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
    try {
      const agent = new Agent({ connections: 2 });
      expect((await infer(gw, agent, 'bh')).status).toBe(200); // warm: pools and sockets exist before the baseline
      await agent.close();
      await sleep(50);
      const before = tcp();
      ups[0]!.proxy.set({ blackHole: true });
      const a2 = new Agent({ connections: 4 });
      const deadlineMs = 300;
      const stall = stallMeter(); // the bound is the gateway's own time (see stall-meter.ts)
      const answers = await Promise.all(Array.from({ length: 4 }, () => infer(gw, a2, 'bh', { 'x-mcp-timeout-ms': String(deadlineMs) })));
      const stalled = stall.stop();
      for (const a of answers) {
        expect(a.status).toBe(504);
        expect(a.code).toBe('MCP_DEADLINE_EXCEEDED');
        expect(a.ms).toBeLessThanOrEqual(deadlineMs + 100 + stalled);
      }
      await a2.close();
      // Every upstream socket of the abandoned calls is gone (the proxy saw the gateway hang up).
      const gone = await until(() => tcp() <= before, 5000);
      if (!gone) console.log('[black-hole] handles left:', process.getActiveResourcesInfo().join(', '));
      expect(gone).toBe(true);
      console.log(
        `[black-hole] deadline ${deadlineMs} ms: answered in ${Math.max(...answers.map((a) => a.ms)).toFixed(0)} ms max; ` +
          `TCP handles before ${before}, after ${tcp()}`,
      );
    } finally {
      await gw.close();
      await closeUpstreams(ups);
    }
  });
});
