/**
 * Traffic management through the real gateway: weighted splits, sticky assignment, not-ready
 * canaries, promotion/rollback, shadow traffic, per-variant stats with feedback, inference
 * records (group commit), automatic canary rollback, fallbacks.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from 'undici';
import type { ModelEvent } from '../../src/events/bus.ts';
import type { VariantView } from '../../src/traffic/traffic-manager.ts';
import type { TestGateway } from '../../src/testing/gateway.ts';
import {
  closeUpstreams,
  infer,
  load,
  loadInProcess,
  modelSeed,
  routerConfig,
  sleep,
  startRouterGateway,
  startUpstreams,
  until,
  type Upstream,
} from './harness.ts';

const AUTH = fileURLToPath(new URL('../support/header-auth-plugin.ts', import.meta.url));

const SPLIT = `mutation($m: ID!, $split: [TrafficSplitEntry!]!, $sticky: StickyInput) {
  setTrafficSplit(model: $m, split: $split, sticky: $sticky) { id routing }
}`;
const VARIANTS =
  `query($m: ID!) { model(id: $m) { defaultVersion variants { ` +
  `version weight shadow isDefault requests errors errorRate diverted p50Ms p95Ms accuracy feedbackCount } } }`;

/** What the `variants` field answers: the traffic manager's view of each variant. */
type Variant = VariantView;

describe('traffic management', () => {
  let ups: Upstream[];
  let gw: TestGateway;
  const modelEvents: ModelEvent[] = [];
  const watch = new AbortController();

  beforeAll(async () => {
    // 0,1: v1 · 2: v2 · 3: v3 (shadow, slow) · 4: canary (flaky) · 5: fallback model
    ups = await startUpstreams(6);
    gw = await startRouterGateway({
      // Group commit: a full batch (500 rows) is written at once; otherwise rows wait for the test's
      // own recorder.flush() (or feedback), never for a timer, so what one INSERT holds does not
      // depend on how fast this machine runs the requests (the timer is unit-tested with fake timers).
      router: routerConfig({ recording: { flushIntervalMs: 3_600_000, maxBatch: 500 } }),
      plugins: [{ use: AUTH }],
      auth: { strategies: ['test-header-auth'] },
      models: [
        // 'ab' never has faults injected: its instances reach the fake servers directly, without the
        // fault proxy's extra HTTP hop (a third or more of the CPU of each of the split's 10,000 requests).
        modelSeed('ab', { v1: [ups[0]!.fake.url, ups[1]!.fake.url], v2: [ups[2]!.fake.url], v3: [ups[3]!.fake.url] }, 'v1'),
        // v2's instance has no endpoint: it fails to load, so v2 is never ready.
        {
          id: 'nr',
          task: 'generate',
          defaultVersion: 'v1',
          versions: [
            { version: 'v1', instances: [{ id: 'nr-v1', backend: 'openai', endpoint: ups[0]!.url, options: { model: 'fake-model' } }] },
            { version: 'v2', instances: [{ id: 'nr-v2', backend: 'openai', options: { model: 'fake-model' } }] },
          ],
        },
        modelSeed('can', { stable: [ups[0]!.url], canary: [ups[4]!.url] }, 'stable'),
        modelSeed('can2', { stable: [ups[1]!.url], canary: [ups[4]!.url] }, 'stable'),
        modelSeed('primary', { v1: [ups[4]!.url] }),
        modelSeed('backup', { v1: [ups[5]!.url] }),
      ],
    });
    void (async () => {
      for await (const e of gw.services.events.subscribe('modelEvents', watch.signal)) modelEvents.push(e);
    })();
  });
  afterAll(async () => {
    watch.abort();
    await gw?.close();
    await closeUpstreams(ups ?? []);
  });

  it('a 90/10 split over 10,000 requests lands within ±2%', async () => {
    const r = await gw.gql(SPLIT, {
      m: 'ab',
      split: [
        { version: 'v1', weight: 90 },
        { version: 'v2', weight: 10 },
      ],
    });
    expect(r.errors).toBeUndefined();
    // Distinct principals, no sticky: independent random draws. In process (no HTTP hop in front of
    // the gateway): the draws, the stats and the upstream calls are the same, at half the CPU.
    const answers = await loadInProcess(gw, 'ab', 10_000, 20, { headers: (i) => ({ 'x-test-user': `u${i}` }) });
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const v2 = answers.filter((a) => a.version === 'v2').length / answers.length;
    expect(Math.abs(v2 - 0.1)).toBeLessThanOrEqual(0.02);
    const v = await gw.gql<{ model: { variants: Variant[] } }>(VARIANTS, { m: 'ab' });
    const byVersion = Object.fromEntries(v.data!.model.variants.map((x) => [x.version, x]));
    expect(byVersion.v1!.weight).toBe(90);
    expect(byVersion.v1!.requests + byVersion.v2!.requests).toBe(10_000);
    expect(byVersion.v2!.requests).toBe(answers.filter((a) => a.version === 'v2').length);
    expect(byVersion.v1!.p50Ms).toBeGreaterThan(0);
    expect(byVersion.v1!.p95Ms).toBeGreaterThanOrEqual(byVersion.v1!.p50Ms!);
    console.log(`[split] 90/10 over 10000 requests: v2 got ${(v2 * 100).toFixed(2)}%`);
  });

  it('a sticky principal never changes variant while the weights stay the same', async () => {
    await gw.gql(SPLIT, {
      m: 'ab',
      split: [
        { version: 'v1', weight: 50 },
        { version: 'v2', weight: 50 },
      ],
      sticky: { by: 'PRINCIPAL' },
    });
    const seen = new Map<string, Set<string>>();
    await load(gw, 'ab', 1200, 12, {
      headers: (i) => ({ 'x-test-user': `p${i % 100}` }),
      onAnswer: (a, i) => {
        const k = `p${i % 100}`;
        if (!seen.has(k)) seen.set(k, new Set());
        seen.get(k)!.add(a.version!);
      },
    });
    expect(seen.size).toBe(100);
    expect([...seen.values()].every((s) => s.size === 1)).toBe(true);
    const onV2 = [...seen.values()].filter((s) => s.has('v2')).length;
    expect(onV2).toBeGreaterThan(25);
    expect(onV2).toBeLessThan(75);
    // By header: the key travels in a header of our choice.
    await gw.gql(SPLIT, {
      m: 'ab',
      split: [
        { version: 'v1', weight: 50 },
        { version: 'v2', weight: 50 },
      ],
      sticky: { by: 'HEADER', header: 'X-Session' },
    });
    // (GraphQL passes the request headers to the router; see README-ROUTING.md for the other entry points.)
    const q = 'mutation { infer(model: "ab", input: { prompt: "hi" }) { version } }';
    const bySession = new Map<string, Set<string>>();
    for (const sid of ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8']) {
      const versions = new Set<string>();
      for (let i = 0; i < 6; i++)
        versions.add((await gw.gql<{ infer: { version: string } }>(q, {}, { 'x-session': sid, 'x-test-user': `other${i}` })).data!.infer.version);
      expect(versions.size).toBe(1);
      bySession.set(sid, versions);
    }
  });

  it('a not-ready canary gets no traffic', async () => {
    const st = await gw.gql<{ instance: { status: string; health: string } }>('query { instance(id: "nr-v2") { status health } }');
    expect(st.data?.instance.status).toBe('FAILED');
    expect(
      (
        await gw.gql(SPLIT, {
          m: 'nr',
          split: [
            { version: 'v1', weight: 50 },
            { version: 'v2', weight: 50 },
          ],
        })
      ).errors,
    ).toBeUndefined();
    const answers = await load(gw, 'nr', 500, 10, { headers: (i) => ({ 'x-test-user': `n${i}` }) });
    expect(answers.every((a) => a.status === 200 && a.version === 'v1')).toBe(true);
  });

  it('validates splits: unknown versions, duplicate versions and all-zero weights are refused', async () => {
    const a = await gw.gql(SPLIT, { m: 'ab', split: [{ version: 'nope', weight: 1 }] });
    expect(a.errors?.[0]?.extensions?.code).toBe('MCP_VERSION_NOT_FOUND');
    const b = await gw.gql(SPLIT, { m: 'ab', split: [{ version: 'v1', weight: 0 }] });
    expect(b.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const c = await gw.gql(SPLIT, {
      m: 'ab',
      split: [
        { version: 'v1', weight: 1 },
        { version: 'v1', weight: 2 },
      ],
    });
    expect(c.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
  });

  it('promoteVersion makes a version the default with all the traffic; rollbackVersion goes back', async () => {
    const p = await gw.gql<{ promoteVersion: { defaultVersion: string; routing: { split: Record<string, number>; previousDefault: string } } }>(
      'mutation { promoteVersion(model: "ab", version: "v2") { defaultVersion routing } }',
    );
    expect(p.errors).toBeUndefined();
    expect(p.data!.promoteVersion.defaultVersion).toBe('v2');
    expect(p.data!.promoteVersion.routing.split).toEqual({});
    const after = await load(gw, 'ab', 200, 10);
    expect(after.every((a) => a.version === 'v2')).toBe(true);
    const rb = await gw.gql<{ rollbackVersion: { defaultVersion: string } }>('mutation { rollbackVersion(model: "ab") { defaultVersion } }');
    expect(rb.data!.rollbackVersion.defaultVersion).toBe('v1');
    const back = await load(gw, 'ab', 200, 10);
    expect(back.every((a) => a.version === 'v1')).toBe(true);
    expect(modelEvents.filter((e) => e.modelId === 'ab' && e.type === 'TRAFFIC_CHANGED').length).toBeGreaterThanOrEqual(4);
    const none = await gw.gql('mutation { rollbackVersion(model: "nr") { id } }');
    expect(none.errors?.[0]?.extensions?.code).toBe('MCP_CONFLICT');
  });

  it('records every inference with group commit; submitFeedback feeds Model.variants.accuracy', async () => {
    const recorder = gw.services.traffic.recorder!;
    await recorder.flush();
    const before = gw.services.database.statements.count;
    const { written, batches } = recorder.stats;
    const answers = await load(gw, 'ab', 300, 10);
    await recorder.flush();
    const statements = gw.services.database.statements.count - before;
    expect(statements).toBeLessThan(30); // batched inserts, not one per request
    // By construction (the window stays open until flush()): the 300 rows went out in one INSERT.
    expect(recorder.stats.written - written).toBe(300);
    expect(recorder.stats.batches - batches).toBe(1);
    const ids = answers.map((a) => a.id!);
    const fb = `mutation($id: ID!, $s: Float!, $l: String) { submitFeedback(inferenceId: $id, score: $s, label: $l) { inferenceId version shadow } }`;
    for (const [i, id] of ids.slice(0, 10).entries()) {
      const r = await gw.gql<{ submitFeedback: { version: string } }>(fb, { id, s: i < 8 ? 1 : 0, l: i < 8 ? 'correct' : 'wrong' });
      expect(r.errors).toBeUndefined();
      expect(r.data!.submitFeedback.version).toBe('v1');
    }
    const missing = await gw.gql(fb, { id: 'no-such-inference', s: 1 });
    expect(missing.errors?.[0]?.extensions?.code).toBe('MCP_NOT_FOUND');
    const v = await gw.gql<{ model: { variants: Variant[] } }>(VARIANTS, { m: 'ab' });
    const v1 = v.data!.model.variants.find((x) => x.version === 'v1')!;
    expect(v1.feedbackCount).toBe(10);
    expect(v1.accuracy).toBeCloseTo(0.8, 5);
    // An answer recorded right now is found at once (feedback flushes the buffer).
    const fresh = await infer(gw, new Agent(), 'ab');
    expect((await gw.gql(fb, { id: fresh.id, s: 1 })).errors).toBeUndefined();
  });

  it('deletes inference records older than the retention, in batches, and keeps the newer ones', async () => {
    const recorder = gw.services.traffic.recorder!;
    await load(gw, 'ab', 30, 5);
    await recorder.flush();
    const db = gw.services.database.db;
    const count = async (where: string) =>
      ((await db.execute(`select count(*)::int as n from inferences where ${where}` as never)) as unknown as { rows: Array<{ n: number }> }).rows[0]!.n;
    // Age 12 of the 'ab' records past the 168 h retention (shipped default).
    await db.execute(
      ("update inferences set created_at = now() - interval '200 hours' " +
        "where id in (select id from inferences where model_id = 'ab' order by created_at desc limit 12)") as never,
    );
    const kept = await count("created_at >= now() - interval '168 hours'");
    expect(await count("created_at < now() - interval '168 hours'")).toBe(12);
    expect(await recorder.prune()).toBe(12);
    expect(await count("created_at < now() - interval '168 hours'")).toBe(0);
    expect(await count("created_at >= now() - interval '168 hours'")).toBe(kept);
    expect(await recorder.prune()).toBe(0);
  });

  it('shadow traffic is recorded, never returned, and does not slow the primary answer', async () => {
    // The shadow's upstream answers only when the test opens the gate, so "the primary does not wait
    // for it" is shown by construction rather than by a wall-clock bound a busy machine can break.
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    ups[3]!.fake.setBehavior({ models: ['fake-model'], tokens: ['shadow-answer'], gate });
    const r = await gw.gql('mutation { setShadow(model: "ab", version: "v3", fraction: 1) { routing } }');
    expect(r.errors).toBeUndefined();
    const answers = await load(gw, 'ab', 40, 4);
    expect(answers.every((a) => a.status === 200 && a.version === 'v1')).toBe(true);
    // Every primary answer is back while no shadow has been answered yet.
    const held = await gw.gql<{ model: { variants: Variant[] } }>(VARIANTS, { m: 'ab' });
    expect(held.data!.model.variants.find((x) => x.shadow)?.requests ?? 0).toBe(0);
    // Each shadow started (setImmediate after its primary was dispatched) before its primary answered,
    // so holding the gate 400 ms longer makes every shadow take at least that long.
    await sleep(400);
    open();
    const recorded = async () => {
      await gw.services.traffic.recorder!.flush();
      const rows = await gw.services.database.db.execute(
        "select count(*)::int as n, bool_and(ok) as ok, min(output) as output from inferences where model_id = 'ab' and shadow" as never,
      );
      return (rows as unknown as { rows: Array<{ n: number; ok: boolean; output: string }> }).rows[0]!;
    };
    await until(async () => (await recorded()).n >= 40, 10_000, 50);
    const row = await recorded();
    expect(row.n).toBeGreaterThanOrEqual(40);
    expect(row.ok).toBe(true);
    expect(row.output).toBe('shadow-answer');
    const v = await gw.gql<{ model: { variants: Variant[] } }>(VARIANTS, { m: 'ab' });
    const sh = v.data!.model.variants.find((x) => x.shadow)!;
    expect(sh.version).toBe('v3');
    expect(sh.p50Ms).toBeGreaterThanOrEqual(350);
    const explained = await infer(gw, new Agent(), 'ab', { 'x-mcp-explain': '1' });
    expect(explained.routing?.shadow).toBe('v3');
    await gw.gql('mutation { setShadow(model: "ab", fraction: 0) { id } }');
  });

  const rollbackWithin = async (model: string, seen: number): Promise<void> => {
    const rolledBack = await until(() => modelEvents.slice(seen).some((e) => e.modelId === model && e.type === 'TRAFFIC_CHANGED'), 5000);
    if (!rolledBack) {
      const v = await gw.gql<{ model: { variants: Variant[] } }>(VARIANTS, { m: model });
      throw new Error(`no rollback; variants: ${JSON.stringify(v.data?.model.variants)}`);
    }
    const m = await gw.gql<{ model: { routing: { split: Record<string, number>; autoRollback: unknown } } }>(`query { model(id: "${model}") { routing } }`);
    expect(m.data!.model.routing.split).toEqual({ stable: 50 });
    expect(m.data!.model.routing.autoRollback).toBeNull();
    const after = await load(gw, model, 100, 4);
    expect(after.every((a) => a.version === 'stable' && a.status === 200)).toBe(true);
  };

  it('rolls a canary back automatically when its error rate exceeds the baseline by the margin', async () => {
    // 500: not retried, the client sees it. Whether or not a streak of errors gets the canary's
    // instance ejected on the way, the rollback happens: requests diverted from an ejected canary count against it.
    ups[4]!.proxy.set({ errorRate: 0.3, errorStatus: 500 }, 7);
    await gw.gql(SPLIT, {
      m: 'can',
      split: [
        { version: 'stable', weight: 50 },
        { version: 'canary', weight: 50 },
      ],
    });
    const pol = await gw.gql(
      'mutation { setAutoRollback(model: "can", policy: { canary: "canary", maxErrorRateDelta: 0.1, maxP95Ratio: 5, minSamples: 50 }) { routing } }',
    );
    expect(pol.errors).toBeUndefined();
    const seen = modelEvents.length;
    await load(gw, 'can', 600, 4);
    await rollbackWithin('can', seen);
    ups[4]!.proxy.set({});
    // Prometheus has the same per-variant view, failures included (they carry the version routed to).
    const metrics = (await (await fetch(`${gw.url}/metrics`)).text()).split('\n');
    const series = (name: string, ...labels: string[]) => metrics.filter((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)));
    const failed = series('mcp_inference_requests_total', 'model="can"', 'version="canary"').filter((l) => !l.includes('code="OK"'));
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.reduce((n, l) => n + Number(l.split(' ').pop()), 0)).toBeGreaterThan(0);
    expect(series('mcp_inference_duration_seconds_count', 'model="can"', 'version="stable"')).toHaveLength(1);
  });

  it('a canary whose only instance is ejected gets its traffic diverted to the baseline, and is rolled back', async () => {
    ups[4]!.proxy.set({ errorRate: 1, errorStatus: 500 });
    await gw.gql(SPLIT, {
      m: 'can2',
      split: [
        { version: 'stable', weight: 50 },
        { version: 'canary', weight: 50 },
      ],
    });
    const pol = await gw.gql(
      'mutation { setAutoRollback(model: "can2", policy: { canary: "canary", maxErrorRateDelta: 0.1, maxP95Ratio: 5, minSamples: 50 }) { routing } }',
    );
    expect(pol.errors).toBeUndefined();
    const seen = modelEvents.length;
    const answers = await load(gw, 'can2', 300, 4, { headers: () => ({ 'x-mcp-explain': '1' }) });
    await rollbackWithin('can2', seen);
    const v = await gw.gql<{ model: { variants: Variant[] } }>(VARIANTS, { m: 'can2' });
    const canary = v.data!.model.variants.find((x) => x.version === 'canary')!;
    // The instance is ejected after a few straight errors; the rest of the canary's share went to stable.
    expect(canary.errors).toBeLessThan(20);
    expect(canary.diverted).toBeGreaterThan(0);
    expect(canary.errors + canary.diverted).toBeGreaterThanOrEqual(50);
    const diverted = answers.filter((a) => (a.routing as { diverted?: string } | undefined)?.diverted === 'canary');
    expect(diverted.length).toBeGreaterThan(0);
    expect(diverted.every((a) => a.status === 200 && a.version === 'stable')).toBe(true);
    ups[4]!.proxy.set({});
  });

  it('falls back to the next model in order when every instance fails, and explains it', async () => {
    ups[4]!.proxy.set({ errorRate: 1, errorStatus: 503 });
    const r = await gw.gql('mutation { setFallbacks(model: "primary", models: ["backup"]) { routing } }');
    expect(r.errors).toBeUndefined();
    const self = await gw.gql('mutation { setFallbacks(model: "primary", models: ["primary"]) { id } }');
    expect(self.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const a = await infer(gw, new Agent(), 'primary', { 'x-mcp-explain': '1' });
    expect(a.status).toBe(200);
    const routing = a.routing as { model: string; fallbacks: string[]; attempts: Array<{ instanceId: string; outcome: string; errorCode?: string }> };
    expect(routing.model).toBe('backup');
    expect(routing.fallbacks).toEqual(['backup']);
    expect(routing.attempts.map((x) => [x.instanceId, x.outcome, x.errorCode ?? null])).toEqual([
      ['primary-v1-0', 'error', 'MCP_UPSTREAM_UNAVAILABLE'],
      ['backup-v1-0', 'ok', null],
    ]);
    ups[4]!.proxy.set({});
  });
});
