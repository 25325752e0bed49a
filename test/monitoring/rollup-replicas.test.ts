/**
 * Per-minute rollups written by two gateway replicas into one database (PGlite): counts and
 * rates add up across replicas (a rate is the sum of the replicas' rates, not their mean),
 * latency percentiles take the worst replica, and series every replica samples alike (worker
 * figures) stay a mean. Two MetricsHistory writers with their own metrics, one RollupStore table.
 */
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.ts';
import type { InferenceRequest, RoutingDecision } from '../../src/inference/types.ts';
import { historyConfigSchema } from '../../src/monitoring/history/config.ts';
import { MetricsHistory } from '../../src/monitoring/history/metrics-history.ts';
import { RollupStore } from '../../src/monitoring/history/rollups.ts';
import { Sampler } from '../../src/monitoring/history/sampler.ts';
import { GatewayMetrics } from '../../src/monitoring/metrics.ts';
import type { WorkerLoad } from '../../src/workers/worker-registry.ts';

const request: InferenceRequest = {
  id: 'r',
  model: 'chat',
  input: { task: 'generate', prompt: 'hi' } as InferenceRequest['input'],
  stream: false,
  signal: new AbortController().signal,
  entry: 'graphql',
};
const decision: RoutingDecision = { model: 'chat', version: 'v1', balancer: 'p2c-ewma', candidates: [], chosen: 'i-1', attempts: [], fallbacks: [] };

/** On a 5-minute boundary, so the minutes written below are whole and fall in one 5-minute step. */
const T0 = 1_800_000_000_000 - (1_800_000_000_000 % 300_000);

function replica(store: RollupStore) {
  const metrics = new GatewayMetrics(new Registry(), { knownModel: (id) => id === 'chat', roles: new Set() });
  const loads = new Map<string, WorkerLoad>();
  const sampler = new Sampler({ metrics, handles: () => [], workerLoads: () => loads });
  const config = historyConfigSchema.parse({ persist: true, ring: '2m', tickMs: 1000 });
  const history = new MetricsHistory(config, sampler, store, pino({ level: 'silent' }));
  let cpu = 0;
  /** One second: `n` requests of `ms` each, and the worker's CPU at `cores`. */
  const second = (t: number, n: number, ms: number, cores: number) => {
    for (let i = 0; i < n; i++) metrics.onFinished(request, { ok: true, latencyMs: ms, decision });
    cpu += cores;
    loads.set('w-1', { inflight: 0, requestsTotal: 0, cpuSeconds: cpu, residentMemoryBytes: 1e9, at: new Date(T0 + t * 1000) });
    history.tick(T0 + t * 1000);
  };
  return { history, second };
}

describe('metric rollups from two replicas', () => {
  let database: Database;
  let store: RollupStore;

  beforeAll(async () => {
    database = await openDatabase({ dataDir: '', inMemory: true });
    await database.migrate();
    store = new RollupStore(database.db);
  }, 60_000);
  afterAll(async () => database?.close());

  it('sums counts and rates per minute, keeps the worst percentile, and averages what both sample alike', async () => {
    const a = replica(store);
    const b = replica(store);
    // Three whole minutes after a baseline tick: A serves 10 requests/s at 20 ms, B 30 requests/s at 2 s;
    // both see the worker at 1.5 cores.
    for (let t = -1; t < 180; t++) {
      a.second(t, 10, 20, 1.5);
      b.second(t, 30, 2000, 1.5);
    }
    await Promise.all([a.history.close(), b.history.close()]);
    const v1 = { model: 'chat', version: 'v1' };
    // A reader past the ring's reach reads the rollups only: 3 minutes at a 1-minute step.
    const rows = await store.read(['requests', 'requests_per_second', 'latency_p99_ms', 'worker_cpu_cores'], T0, T0 + 180_000, 60_000);
    const of = (metric: string, labels: Record<string, string>) =>
      rows.filter((r) => r.metric === metric && JSON.stringify(r.labels) === JSON.stringify(labels)).sort((x, y) => x.at - y.at);
    // Counts add up: 60 s × (10 + 30).
    expect(of('requests', v1).map((r) => r.sum)).toEqual([2400, 2400, 2400]);
    // Rates: each minute's value is the sum of the two replicas' rates (40/s), not their mean (20/s).
    expect(of('requests_per_second', v1).map((r) => Math.round((r.minuteValues / r.minutes) * 1e9) / 1e9)).toEqual([40, 40, 40]);
    // Percentiles: the worst replica.
    for (const r of of('latency_p99_ms', v1)) expect(r.max).toBeGreaterThan(1000);
    // Worker figures both replicas sample: a mean (1.5 cores, not 3).
    for (const r of of('worker_cpu_cores', { worker: 'w-1' })) expect(r.sum / r.count).toBeCloseTo(1.5, 5);

    // Through the history's read (the GraphQL `metrics` path): a fresh replica whose ring is empty reads the rollups.
    const reader = replica(store);
    reader.history.tick(T0 + 3 * 86_400_000);
    const answer = await reader.history.read({ metrics: ['requests_per_second', 'requests'], models: ['chat'] }, 3 * 86_400_000, 300_000, 100);
    const point = (metric: string) =>
      answer.series
        .find((s) => s.metric === metric && s.labels.version === 'v1')!
        .points.filter((p) => p.at === T0)
        .map((p) => Math.round(p.value * 1e9) / 1e9);
    // One 5-minute step holds the 3 minutes: the mean of the per-minute totals (40/s), and the sum of the counts.
    expect(answer.fromRollups).toBe(true);
    expect(point('requests_per_second')).toEqual([40]);
    expect(point('requests')).toEqual([40 * 180]);
    await reader.history.close();
  }, 60_000);
});
