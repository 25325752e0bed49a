/**
 * Health wiring through the real gateway: circuit breaking of a single-instance model, active
 * probes through the backend's health() (never an inference), the instanceHealth subscription,
 * Instance.health, explainable routing with states and scores, and cleanup when an instance leaves.
 */
import { describe, expect, it } from 'vitest';
import { Agent } from 'undici';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { closeUpstreams, infer, modelSeed, routerConfig, sleep, startRouterGateway, startUpstreams, until } from './harness.ts';

describe('health', () => {
  it('the circuit breaker protects a model with a single instance: fails fast while open, one trial per interval, closes after healing', async () => {
    const ups = await startUpstreams(1);
    // Open for 1 s: the request that checks "fails fast while open" comes right after the circuit
    // opened, and a busy machine can hold this process up for a few hundred ms in between.
    const gw = await startRouterGateway({
      router: routerConfig({ circuitBreaker: { openMs: 1000, maxOpenMs: 1000 } }),
      models: [modelSeed('one', { v1: [ups[0]!.url] })],
    });
    const agent = new Agent({ connections: 2 });
    try {
      const p = ups[0]!.proxy;
      p.set({ errorRate: 1, errorStatus: 503 });
      for (let i = 0; i < 5; i++) expect((await infer(gw, agent, 'one')).code).toBe('MCP_UPSTREAM_UNAVAILABLE');
      expect(gw.services.router.healthOf('one-v1-0')).toBe('circuit-open');
      const n = p.requests;
      const fast = await infer(gw, agent, 'one');
      expect(fast.code).toBe('MCP_CIRCUIT_OPEN');
      expect(fast.status).toBe(503);
      expect(p.requests).toBe(n); // never reached the upstream
      // Half-open after 1 s: one trial per interval while it stays broken.
      const t0 = Date.now();
      while (Date.now() - t0 < 3000) {
        await infer(gw, agent, 'one');
        await sleep(5);
      }
      const trials = p.requests - n;
      expect(trials).toBeGreaterThanOrEqual(2);
      expect(trials).toBeLessThanOrEqual(Math.ceil((Date.now() - t0) / 1000) + 1);
      p.set({});
      expect(await until(async () => (await infer(gw, agent, 'one')).status === 200, 2500)).toBe(true); // the next trial, at most one interval away
      expect(gw.services.router.healthOf('one-v1-0')).toBe('healthy');
    } finally {
      await agent.close();
      await gw.close();
      await closeUpstreams(ups);
    }
  });

  it('probes use health() (GET /models, never an inference), publish instanceHealth over graphql-ws and show in Instance.health', async () => {
    const ups = await startUpstreams(2);
    const gw = await startRouterGateway({
      router: routerConfig({ healthCheck: { enabled: true, intervalMs: 50, timeoutMs: 200, healthyThreshold: 2, unhealthyThreshold: 2 } }),
      models: [modelSeed('pr', { v1: ups.map((u) => u.url) })],
    });
    const client = createClient({ url: `${gw.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    const events: Array<{ instanceId: string; state: string; reason: string | null }> = [];
    const unsubscribe = client.subscribe<{ instanceHealth: { instanceId: string; state: string; reason: string | null } }>(
      { query: 'subscription { instanceHealth(modelId: "pr") { instanceId state reason version at } }' },
      {
        next: (m) => {
          if (m.data) events.push(m.data.instanceHealth);
        },
        error: () => {},
        complete: () => {},
      },
    );
    const agent = new Agent({ connections: 2 });
    try {
      expect(await until(() => gw.services.router.healthOf('pr-v1-0') === 'healthy' && gw.services.router.healthOf('pr-v1-1') === 'healthy', 2000)).toBe(true);
      // The subscription is live once an event published after it arrives (an operator reset publishes
      // one), rather than "100 ms later", which a busy machine can make too early.
      expect(
        await until(
          async () => {
            await gw.gql('mutation { resetInstanceHealth(id: "pr-v1-1") { id } }');
            return events.some((e) => e.instanceId === 'pr-v1-1' && e.reason === 'reset by an operator');
          },
          10_000,
          50,
        ),
      ).toBe(true);
      ups[1]!.proxy.set({ errorRate: 1, errorStatus: 503 });
      expect(await until(() => events.some((e) => e.instanceId === 'pr-v1-1' && e.state === 'unhealthy'), 3000)).toBe(true);
      const q = await gw.gql<{ model: { versions: Array<{ instances: Array<{ id: string; health: string }> }> } }>(
        'query { model(id: "pr") { versions { instances { id health } } } }',
      );
      expect(Object.fromEntries(q.data!.model.versions[0]!.instances.map((i) => [i.id, i.health]))).toEqual({ 'pr-v1-0': 'healthy', 'pr-v1-1': 'unhealthy' });
      // Routing avoids it, and probes never cost an inference.
      const before = ups[1]!.proxy.requests;
      for (let i = 0; i < 20; i++) expect((await infer(gw, agent, 'pr')).status).toBe(200);
      expect(ups[0]!.fake.counts['/v1/completions']).toBe(20);
      expect(ups[1]!.fake.counts['/v1/completions'] ?? 0).toBe(0);
      expect(ups[1]!.fake.counts['/v1/models']).toBeGreaterThan(0);
      expect(ups[1]!.proxy.requests - before).toBeLessThanOrEqual(Math.ceil((20 * 5) / 50) + 10); // only probes
      // Explain shows the state of every candidate.
      const ex = await infer(gw, agent, 'pr', { 'x-mcp-explain': '1' });
      const r = ex.routing as {
        chosen: string;
        balancer: string;
        candidates: Array<{ instanceId: string; state: string; score?: number }>;
        attempts: unknown[];
      };
      expect(r.chosen).toBe('pr-v1-0');
      expect(r.balancer).toBe('p2c-ewma');
      expect(r.candidates.find((c) => c.instanceId === 'pr-v1-1')?.state).toBe('unhealthy');
      expect(r.candidates.find((c) => c.instanceId === 'pr-v1-0')?.state).toBe('healthy');
      expect(typeof r.candidates.find((c) => c.instanceId === 'pr-v1-0')?.score).toBe('number');
      expect(r.attempts).toHaveLength(1);
      ups[1]!.proxy.set({});
      expect(await until(() => events.some((e) => e.instanceId === 'pr-v1-1' && e.state === 'healthy'), 3000)).toBe(true);
    } finally {
      unsubscribe();
      await client.dispose();
      await agent.close();
      await gw.close();
      await closeUpstreams(ups);
    }
  });

  it('passive outlier ejection shows in explain; a removed instance is forgotten by the outlier detector and the balancer', async () => {
    const ups = await startUpstreams(3);
    const gw = await startRouterGateway({
      router: routerConfig({
        circuitBreaker: { consecutiveFailures: 100, failureRateThreshold: 1, minRequests: 1000 },
        outlierDetection: { consecutiveFailures: 3, baseEjectionMs: 5000, maxEjectionMs: 5000 },
      }),
      models: [modelSeed('od', { v1: ups.map((u) => u.url) })],
    });
    const agent = new Agent({ connections: 2 });
    try {
      // Round-robin keeps sending to the bad instance until the detector ejects it (p2c-EWMA would mostly avoid it on its own).
      expect((await gw.gql('mutation { setBalancer(model: "od", balancer: "round-robin") { id } }')).errors).toBeUndefined();
      ups[2]!.proxy.set({ errorRate: 1, errorStatus: 503 });
      expect(
        await until(
          async () => {
            await infer(gw, agent, 'od');
            return gw.services.router.healthOf('od-v1-2') === 'ejected';
          },
          3000,
          1,
        ),
      ).toBe(true);
      expect((await gw.gql('mutation { setBalancer(model: "od") { id } }')).errors).toBeUndefined(); // back to the default, p2c-ewma
      const ex = await infer(gw, agent, 'od', { 'x-mcp-explain': '1' });
      const r = ex.routing as { candidates: Array<{ instanceId: string; state: string }> };
      expect(r.candidates.find((c) => c.instanceId === 'od-v1-2')?.state).toBe('ejected');
      // p2c-EWMA keeps a latency estimate per instance; removing the instance drops it (balancer.forget) and its health.
      const bal = gw.services.plugins.get('balancer', 'p2c-ewma') as unknown as {
        costOf(id: string): number;
        observe(id: string, o: { ok: boolean; latencyMs: number }): void;
      };
      bal.observe('od-v1-1', { ok: false, latencyMs: 5000 }); // a failure: leaves the fleet-wide average (the neutral cost) alone
      expect(bal.costOf('od-v1-1')).toBeGreaterThan(1000);
      expect((await gw.gql('mutation { removeInstance(id: "od-v1-1") { id } }')).errors).toBeUndefined();
      expect((await gw.gql('mutation { removeInstance(id: "od-v1-2") { id } }')).errors).toBeUndefined();
      expect(await until(() => bal.costOf('od-v1-1') < 100 && gw.services.router.healthOf('od-v1-2') === 'unknown', 1000)).toBe(true);
      for (let i = 0; i < 5; i++) expect((await infer(gw, agent, 'od')).status).toBe(200);
    } finally {
      await agent.close();
      await gw.close();
      await closeUpstreams(ups);
    }
  });
});
