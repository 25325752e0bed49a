/**
 * The metrics history through a real gateway: the GraphQL `metrics` query (ring, then per-minute
 * rollups in PGlite beyond it, retention), argument bounds, metrics:read and model-limited keys,
 * and `metricsUpdates` over graphql-ws (a real client over `ws`) and SSE (fetch reading the event
 * stream), 50 subscribers with one filter sharing one computation per tick, 20 SSE subscribers one
 * serialisation per tick.
 */
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { metricRollups } from '../../src/db/schema.ts';
import { RollupStore } from '../../src/monitoring/history/rollups.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

const ECHO = [{ use: './examples/capibara-plugin-echo' }];
const register = (id: string) =>
  `mutation { registerModel(input: { id: "${id}", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }`;
const METRICS = `query($filter: MetricsFilter, $window: Int, $step: Int) {
  metrics(filter: $filter, window: $window, step: $step) { from to step source series { metric labels model version points { at value } summary { total max last } } }
}`;
const UPDATES =
  'subscription($f: MetricsFilter, $i: Int) { metricsUpdates(filter: $f, intervalMs: $i) { at intervalMs series { metric model version value } } }';

type Series = {
  metric: string;
  labels: Record<string, string>;
  model: string | null;
  points: Array<{ at: number; value: number }>;
  summary: { total: number };
};
type Snapshot = { at: number; intervalMs: number; series: Array<{ metric: string; model: string | null; value: number }> };

const waitFor = async (cond: () => boolean | Promise<boolean>, ms = 20_000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('metrics history over GraphQL', () => {
  let gw: TestGateway;
  let admin: Record<string, string>;
  let limitedKey: string;
  const infer = (model: string) =>
    fetch(`${gw.url}/api/v1/models/${model}/inference`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: '{"input":"hi"}' });

  beforeAll(async () => {
    gw = await startTestGateway({
      plugins: ECHO,
      auth: {},
      monitoring: { history: { tickMs: 250, ring: '2m', retentionDays: 2 } },
      server: { websocket: { maxSubscriptionsPerSocket: 200 } },
    });
    admin = await gw.login();
    for (const id of ['alpha', 'beta']) expect((await gw.gql(register(id), {}, admin)).errors).toBeUndefined();
    const key = await gw.gql<{ createApiKey: { key: string } }>(
      'mutation { createApiKey(input: { name: "alpha-only", roles: ["viewer"], models: ["alpha"] }) { key } }',
      {},
      admin,
    );
    expect(key.errors).toBeUndefined();
    limitedKey = key.data!.createApiKey.key;
  }, 120_000);
  afterAll(async () => {
    await gw?.close();
  });

  it('answers time series from the ring, per model/version and gateway-wide, to metrics:read only', async () => {
    for (let i = 0; i < 5; i++) expect((await infer('alpha')).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await infer('beta')).status).toBe(200);
    const total = async (model: string) => {
      const r = await gw.gql<{ metrics: { series: Series[] } }>(METRICS, { filter: { metrics: ['requests'], models: [model] }, window: 60, step: 1 }, admin);
      return r.data!.metrics.series.reduce((a, s) => a + s.summary.total, 0);
    };
    await waitFor(async () => (await total('alpha')) === 5 && (await total('beta')) === 2);
    const all = await gw.gql<{ metrics: { source: string; step: number; series: Series[] } }>(
      METRICS,
      { filter: { metrics: ['requests', 'latency_p95_ms'] }, window: 60 },
      admin,
    );
    expect(all.errors).toBeUndefined();
    expect(all.data!.metrics.source).toBe('RING');
    const gateway = all.data!.metrics.series.find((s) => s.metric === 'requests' && s.model === null)!;
    expect(gateway.labels).toEqual({});
    expect(gateway.summary.total).toBeGreaterThanOrEqual(7);
    const p95 = all.data!.metrics.series.find((s) => s.metric === 'latency_p95_ms' && s.model === 'alpha')!;
    expect(p95.points.length).toBeGreaterThan(0);
    expect(p95.points.every((p) => p.value > 0)).toBe(true);

    // No credentials: refused. A key limited to alpha sees alpha's series only (none gateway-wide).
    const anon = await gw.gql(METRICS, { window: 60 });
    expect(anon.errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
    const limited = await gw.gql<{ metrics: { series: Series[] } }>(
      METRICS,
      { filter: { metrics: ['requests'] }, window: 60 },
      { authorization: `Bearer ${limitedKey}` },
    );
    expect(limited.errors).toBeUndefined();
    const models = new Set(limited.data!.metrics.series.map((s) => s.model));
    expect(models).toEqual(new Set(['alpha']));
  });

  it('bounds what a client sends: window ≤ retention, step ≥ tick and ≤ max points, known metric names, list sizes, intervalMs ≥ 250', async () => {
    const code = async (vars: Record<string, unknown>) => (await gw.gql(METRICS, vars, admin)).errors?.[0]?.extensions?.code;
    expect(await code({ window: 3 * 86_400 })).toBe('MCP_VALIDATION_FAILED');
    expect(await code({ window: 0 })).toBe('MCP_VALIDATION_FAILED');
    expect(await code({ window: 86_400, step: 1 })).toBe('MCP_VALIDATION_FAILED');
    expect(await code({ filter: { metrics: ['nope'] } })).toBe('MCP_VALIDATION_FAILED');
    expect(await code({ filter: { models: Array.from({ length: 101 }, (_, i) => `m${i}`) } })).toBe('MCP_VALIDATION_FAILED');
    const sub = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { ...admin, 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: UPDATES, variables: { i: 100 } }),
    });
    const text = await sub.text();
    expect(text).toContain('MCP_VALIDATION_FAILED');
  });

  it('reads beyond the ring from per-minute rollups in the database, and deletes rollups past the retention', async () => {
    const history = gw.services.metricsHistory;
    const store = new RollupStore(gw.services.database.db);
    const now = Date.now();
    const minute = Math.floor(now / 60_000) * 60_000;
    const labels = { model: 'alpha', version: 'v1' };
    const key = JSON.stringify([
      ['model', 'alpha'],
      ['version', 'v1'],
    ]);
    // Ten minutes that ended before the ring's reach (2 minutes), 6 requests a minute.
    const rows = Array.from({ length: 10 }, (_, i) => ({
      metric: 'requests',
      labelsKey: key,
      labels,
      minute: minute - (20 - i) * 60_000,
      count: 240,
      sum: 6,
      min: 0,
      max: 1,
    }));
    await store.write(rows);
    const r = await gw.gql<{ metrics: { source: string; step: number; series: Series[] } }>(
      METRICS,
      { filter: { metrics: ['requests'], models: ['alpha'], versions: ['v1'] }, window: 1800, step: 300 },
      admin,
    );
    expect(r.errors).toBeUndefined();
    expect(r.data!.metrics.source).toBe('ROLLUPS');
    expect(r.data!.metrics.step).toBe(300);
    const [s] = r.data!.metrics.series;
    // The 10 old minutes (60) plus what the ring holds of the earlier test (5).
    expect(s!.summary.total).toBe(65);
    expect(s!.points.every((p) => p.at % 300_000 === 0)).toBe(true);
    // Retention: a rollup older than retentionDays goes on the next retention pass.
    await store.write([{ metric: 'requests', labelsKey: key, labels, minute: minute - 3 * 86_400_000, count: 1, sum: 1, min: 1, max: 1 }]);
    expect(await store.deleteBefore(now - history.config.retentionDays * 86_400_000)).toBe(1);
    const left = await gw.services.database.db.select().from(metricRollups);
    expect(left.every((row) => row.minute.getTime() > now - 86_400_000)).toBe(true);
    // The history writes its own rollups as minutes pass (ring samples → one row per series and minute).
    await waitFor(async () => {
      await history.flushed();
      const mine = await gw.services.database.db.select().from(metricRollups);
      return mine.some((row) => row.metric === 'requests' && row.count > 1);
    }, 75_000);
  }, 90_000);

  it('metricsUpdates over graphql-ws: 50 subscribers with one filter share one snapshot computation per tick', async () => {
    const client: Client = createClient({
      url: `${gw.url.replace('http', 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { authorization: admin.authorization! },
    });
    const live = gw.services.liveMetrics;
    const got: Snapshot[][] = Array.from({ length: 50 }, () => []);
    const stops = got.map((list) =>
      client.subscribe<{ metricsUpdates: Snapshot }>(
        { query: UPDATES, variables: { f: { metrics: ['requests_per_second'], models: ['beta'] }, i: 250 } },
        { next: (m) => m.data && list.push(m.data.metricsUpdates), error: () => {}, complete: () => {} },
      ),
    );
    try {
      await waitFor(() => got.every((l) => l.length >= 1));
      const before = live.computations;
      const ticksBefore = gw.services.metricsHistory.ticks;
      await waitFor(() => got.every((l) => l.length >= 6));
      const ticks = gw.services.metricsHistory.ticks - ticksBefore;
      // One computation per tick for the 50 (plus none per subscriber); allow for ticks around the reads.
      expect(live.computations - before).toBeLessThanOrEqual(ticks + 1);
      expect(live.size).toBe(1);
      const snap = got[0]!.at(-1)!;
      expect(snap.intervalMs).toBe(250);
      expect(snap.series.every((s) => s.metric === 'requests_per_second' && s.model === 'beta')).toBe(true);
      expect(snap.series.length).toBeGreaterThan(0);
      // Every subscriber got the same ticks.
      const ats = new Set(got[0]!.map((s) => s.at));
      for (const l of got) expect(l.slice(1, 4).every((s) => ats.has(s.at))).toBe(true);
    } finally {
      for (const stop of stops) stop();
      await client.dispose();
    }
    await waitFor(() => live.size === 0);
  });

  it('metricsUpdates over graphql-ws writes pre-serialised snapshots: permissions per subscriber, complete stops them', async () => {
    const url = `${gw.url.replace('http', 'ws')}/graphql`;
    const live = gw.services.liveMetrics;
    const asAdmin = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { authorization: admin.authorization! } });
    const asLimited = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { authorization: `Bearer ${limitedKey}` } });
    const vars = { f: { metrics: ['requests'], includeGlobal: false }, i: 250 };
    const seen = { admin: new Set<string>(), limited: new Set<string>() };
    const counts = { admin: 0, limited: 0 };
    let completed = 0;
    const sub = (c: Client, who: 'admin' | 'limited') =>
      c.subscribe<{ metricsUpdates: Snapshot }>(
        { query: UPDATES, variables: vars },
        {
          next: (m) => {
            expect(m.errors).toBeUndefined();
            counts[who]++;
            for (const s of m.data!.metricsUpdates.series) seen[who].add(String(s.model));
          },
          error: () => {},
          complete: () => completed++,
        },
      );
    const stops = [sub(asAdmin, 'admin'), sub(asAdmin, 'admin'), sub(asLimited, 'limited')];
    try {
      await waitFor(async () => {
        await Promise.all([infer('alpha'), infer('beta')]);
        return seen.admin.has('beta') && seen.limited.has('alpha') && counts.limited >= 3;
      });
      // The same variables, resolved per principal: the model-limited key never sees beta.
      expect(seen.limited).toEqual(new Set(['alpha']));
      expect(seen.admin).toEqual(new Set(['alpha', 'beta']));
      expect(live.size).toBe(2);
      // complete from the client: no message for it afterwards, and its feed closes.
      stops[2]!();
      await waitFor(() => live.size === 1);
      const after = counts.limited;
      await new Promise((r) => setTimeout(r, 800));
      expect(counts.limited).toBe(after);
      expect(counts.admin).toBeGreaterThan(0);
    } finally {
      for (const stop of stops) stop();
      await Promise.all([asAdmin.dispose(), asLimited.dispose()]);
    }
    await waitFor(() => live.size === 0);
  });

  /** An SSE subscriber (fetch reading the event stream): the snapshots and errors it got, and how to stop it. */
  async function sseSubscriber(headers: Record<string, string>, variables: Record<string, unknown>) {
    const ac = new AbortController();
    const res = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: UPDATES, variables }),
      signal: ac.signal,
    });
    const got = {
      status: res.status,
      type: res.headers.get('content-type'),
      snaps: [] as Snapshot[],
      errors: [] as Array<{ extensions?: { code?: string } }>,
      completed: false,
    };
    const reading = (async () => {
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (frame.startsWith('event: complete')) got.completed = true;
          const data = frame.split('\n').find((l) => l.startsWith('data: {'));
          if (!data) continue;
          const body = JSON.parse(data.slice(6)) as { data?: { metricsUpdates: Snapshot }; errors?: Array<{ extensions?: { code?: string } }> };
          if (body.errors) got.errors.push(...body.errors);
          if (body.data) got.snaps.push(body.data.metricsUpdates);
        }
      }
    })().catch(() => undefined);
    return Object.assign(got, { stop: async () => (ac.abort(), await reading), ended: reading });
  }

  it('metricsUpdates over SSE: fetch reads snapshots from the event stream', async () => {
    const sub = await sseSubscriber(admin, { f: { metrics: ['requests'] }, i: 500 });
    expect(sub.type).toContain('text/event-stream');
    await waitFor(() => sub.snaps.length >= 3);
    await sub.stop();
    const snaps = sub.snaps;
    expect(sub.errors).toEqual([]);
    expect(snaps[2]!.at - snaps[1]!.at).toBeGreaterThanOrEqual(400);
    expect(snaps[2]!.series.some((s) => s.metric === 'requests' && s.model === null)).toBe(true);
  });

  it('metricsUpdates over SSE: 20 subscribers with one filter share one serialisation per tick; the stream ends when they leave', async () => {
    const live = gw.services.liveMetrics;
    const served = async () => {
      const m = await gw.services.metricsRegistry.getSingleMetric('mcp_graphql_http_requests_total')!.get();
      return m.values.find((v) => v.labels.path === 'sse')?.value ?? 0;
    };
    const servedBefore = await served();
    const vars = { f: { metrics: ['requests_per_second'], models: ['alpha'] }, i: 250 };
    const subs = await Promise.all(Array.from({ length: 20 }, () => sseSubscriber(admin, vars)));
    // Snapshots serialised in the gateway (this process) while the 20 read: JSON.stringify calls that produce one.
    const stringify = JSON.stringify;
    let serialised = 0;
    JSON.stringify = ((...a: Parameters<typeof stringify>) => {
      const out = stringify(...a);
      if (typeof out === 'string' && out.startsWith('{"data":{"metricsUpdates"')) serialised++;
      return out;
    }) as typeof JSON.stringify;
    try {
      await waitFor(() => subs.every((s) => s.snaps.length >= 1));
      const ticksBefore = gw.services.metricsHistory.ticks;
      const counted = serialised;
      await waitFor(() => subs.every((s) => s.snaps.length >= 6));
      const ticks = gw.services.metricsHistory.ticks - ticksBefore;
      // One serialisation per tick for the 20 (allow for ticks around the reads), not one per subscriber.
      expect(serialised - counted).toBeLessThanOrEqual(ticks + 1);
      expect(serialised - counted).toBeGreaterThan(0);
    } finally {
      JSON.stringify = stringify;
    }
    expect(live.size).toBe(1);
    expect((await served()) - servedBefore).toBe(20);
    for (const s of subs) expect(s.errors).toEqual([]);
    const ats = new Set(subs[0]!.snaps.map((s) => s.at));
    for (const s of subs) expect(s.snaps.slice(1, 4).every((x) => ats.has(x.at))).toBe(true);
    expect(subs[0]!.snaps.at(-1)!.series.every((x) => x.metric === 'requests_per_second' && x.model === 'alpha')).toBe(true);
    await Promise.all(subs.map((s) => s.stop()));
    await waitFor(() => live.size === 0);
  });

  it('metricsUpdates over SSE: permissions per subscriber (a model-limited key sees its models only; no credential is refused)', async () => {
    const vars = { f: { metrics: ['requests'], includeGlobal: false }, i: 250 };
    const asAdmin = await sseSubscriber(admin, vars);
    const asLimited = await sseSubscriber({ authorization: `Bearer ${limitedKey}` }, vars);
    const models = (s: { snaps: Snapshot[] }) => new Set(s.snaps.flatMap((x) => x.series.map((y) => String(y.model))));
    try {
      await waitFor(async () => {
        await Promise.all([infer('alpha'), infer('beta')]);
        return models(asAdmin).has('beta') && models(asLimited).has('alpha') && asLimited.snaps.length >= 3;
      });
      expect(models(asLimited)).toEqual(new Set(['alpha']));
      expect(models(asAdmin)).toEqual(new Set(['alpha', 'beta']));
    } finally {
      await Promise.all([asAdmin.stop(), asLimited.stop()]);
    }
    const anonymous = await sseSubscriber({}, vars);
    await anonymous.ended;
    expect(anonymous.status).toBe(401);
    expect(anonymous.snaps).toEqual([]);
    expect(anonymous.errors[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
    expect(anonymous.completed).toBe(true);
  });
});
