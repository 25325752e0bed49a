import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { InferenceRequest, RoutingDecision } from '../../inference/types.ts';
import type { InstanceHandle } from '../../models/fleet.ts';
import type { WorkerLoad } from '../../workers/worker-registry.ts';
import { GatewayMetrics } from '../metrics.ts';
import { historyConfigSchema } from './config.ts';
import { LiveMetrics, type MetricsSnapshot } from './live.ts';
import { MetricsHistory } from './metrics-history.ts';
import { Sampler } from './sampler.ts';

const request = (model: string): InferenceRequest => ({
  id: 'r',
  model,
  input: { task: 'generate', prompt: 'hi' } as InferenceRequest['input'],
  stream: false,
  signal: new AbortController().signal,
  entry: 'graphql',
});
const decision = (version: string): RoutingDecision => ({
  model: 'chat',
  version,
  balancer: 'p2c-ewma',
  candidates: [],
  chosen: 'i-1',
  attempts: [],
  fallbacks: [],
});

function setup(over: Record<string, unknown> = {}) {
  const metrics = new GatewayMetrics(new Registry(), { knownModel: (id) => id === 'chat', roles: new Set() });
  const handles: InstanceHandle[] = [];
  const loads = new Map<string, WorkerLoad>();
  const sampler = new Sampler({ metrics, handles: () => handles, workerLoads: () => loads });
  const config = historyConfigSchema.parse({ persist: false, ring: '2m', ...over });
  const history = new MetricsHistory(config, sampler, undefined, pino({ level: 'silent' }));
  const ok = (version: string, ms: number) => metrics.onFinished(request('chat'), { ok: true, latencyMs: ms, decision: decision(version) });
  const fail = (version: string) =>
    metrics.onFinished(request('chat'), { ok: false, errorCode: 'MCP_BACKEND_ERROR', latencyMs: 5, decision: decision(version) });
  return { metrics, history, handles, loads, ok, fail };
}

const T0 = 1_800_000_000_000;
const value = (h: MetricsHistory, metric: string, labels: Record<string, string>, windowMs = 1000) =>
  h
    .range({ metric, labels }, windowMs, 1000)
    .find((s) => JSON.stringify(s.labels) === JSON.stringify(labels))
    ?.points.at(-1)?.value;

describe('MetricsHistory', () => {
  it('turns counter and histogram deltas into per-tick requests, errors, rates and latency percentiles per version and gateway-wide', () => {
    const { history, ok, fail } = setup();
    history.tick(T0); // baseline
    for (let i = 0; i < 90; i++) ok('v1', 20);
    for (let i = 0; i < 10; i++) ok('v1', 2000);
    fail('v2');
    history.tick(T0 + 2000);
    const v1 = { model: 'chat', version: 'v1' };
    expect(value(history, 'requests', v1)).toBe(100);
    expect(value(history, 'requests_per_second', v1)).toBe(50);
    expect(value(history, 'error_rate', v1)).toBe(0);
    expect(value(history, 'error_rate', { model: 'chat', version: 'v2' })).toBe(1);
    expect(value(history, 'requests', {})).toBe(101);
    expect(value(history, 'errors', {})).toBe(1);
    const p50 = value(history, 'latency_p50_ms', v1)!;
    const p99 = value(history, 'latency_p99_ms', v1)!;
    expect(p50).toBeGreaterThan(19.5); // the bucket of 20 ms: (19.5 … 48.8 ms]
    expect(p50).toBeLessThanOrEqual(48.9);
    expect(p99).toBeGreaterThan(1000);
    // Nothing happens next tick: counts are 0 and latency has no point (no request to measure).
    history.tick(T0 + 3000);
    expect(value(history, 'requests', v1)).toBe(0);
    expect(history.range({ metric: 'latency_p99_ms', labels: v1 }, 1000, 1000)).toEqual([]);
    expect(history.names()).toContain('queue_depth');
  });

  it('range() aggregates ticks into steps: sum for counts, max for percentiles, mean for rates; labels are a subset match', () => {
    const { history, ok } = setup();
    history.tick(T0);
    for (let t = 1; t <= 10; t++) {
      for (let i = 0; i < t; i++) ok('v1', t === 5 ? 3000 : 10);
      ok('v2', 10);
      history.tick(T0 + t * 1000);
    }
    const [req] = history.range({ metric: 'requests', labels: { model: 'chat', version: 'v1' } }, 10_000, 10_000);
    expect(req!.points.reduce((a, p) => a + p.value, 0)).toBe(55);
    const both = history.range({ metric: 'requests', labels: { model: 'chat' } }, 10_000, 1000);
    expect(both.map((s) => s.labels.version).sort()).toEqual(['v1', 'v2']);
    const [p99] = history.range({ metric: 'latency_p99_ms', labels: { model: 'chat', version: 'v1' } }, 10_000, 60_000);
    expect(p99!.points.length).toBe(1);
    expect(p99!.points[0]!.value).toBeGreaterThan(1000);
    const [rps] = history.range({ metric: 'requests_per_second', labels: { model: 'chat', version: 'v2' } }, 10_000, 60_000);
    expect(rps!.points[0]!.value).toBeCloseTo(1, 6);
  });

  it('samples in-flight, queue depth and worker CPU/memory; the ring keeps its size and forgets old ticks', () => {
    const { history, handles, loads } = setup();
    const h = {
      id: 'i-1',
      modelId: 'chat',
      version: 'v1',
      backend: 'x',
      weight: 1,
      outstanding: 3,
      status: 'ready',
      draining: false,
    } as unknown as InstanceHandle;
    handles.push(h);
    loads.set('w-1', {
      inflight: 0,
      requestsTotal: 0,
      cpuSeconds: 10,
      residentMemoryBytes: 1e9,
      deviceMemoryUsedBytes: new Map([['gpu0', 5e8]]),
      at: new Date(),
    });
    history.tick(T0);
    history.tick(T0 + 1000);
    loads.set('w-1', { inflight: 0, requestsTotal: 0, cpuSeconds: 11.5, residentMemoryBytes: 1e9, at: new Date() });
    history.tick(T0 + 2000);
    expect(value(history, 'in_flight', { model: 'chat', version: 'v1' })).toBe(3);
    expect(value(history, 'queue_depth', { model: 'chat', version: 'v1' })).toBe(2);
    expect(value(history, 'worker_cpu_cores', { worker: 'w-1' })).toBeCloseTo(1.5, 5);
    expect(value(history, 'worker_memory_bytes', { worker: 'w-1' })).toBe(1e9);
    for (let t = 3; t < 400; t++) history.tick(T0 + t * 1000);
    // 2 minutes of ring at 1 s: 120 points at most, the oldest ones gone.
    const [s] = history.range({ metric: 'in_flight', labels: { model: 'chat', version: 'v1' } }, 3_600_000, 1000);
    expect(s!.points.length).toBe(120);
    expect(s!.points[0]!.at).toBe(T0 + 280_000);
  });

  it('shares one snapshot computation per tick among subscribers with the same filter', async () => {
    const { history, ok } = setup();
    const live = new LiveMetrics(history, 100);
    const ac = new AbortController();
    const received: number[][] = [];
    const readers = Array.from({ length: 50 }, async (_, i) => {
      received[i] = [];
      for await (const s of live.subscribe({ metrics: ['requests'], global: true }, 1000, new AbortController().signal)) {
        received[i]!.push(s.at);
        if (received[i]!.length === 3) break;
      }
    });
    const other = live.subscribe({ metrics: ['errors'] }, 1000, ac.signal);
    const otherFirst = other.next();
    await new Promise((r) => setImmediate(r));
    expect(live.size).toBe(2);
    const before = live.computations;
    for (let t = 0; t < 3; t++) {
      ok('v1', 10);
      history.tick(T0 + t * 1000);
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(readers);
    // 3 ticks × 2 feeds, not 3 × 51.
    expect(live.computations - before).toBe(6);
    for (const r of received) expect(r).toEqual([T0, T0 + 1000, T0 + 2000]);
    // The first tick only sets the baselines (an empty snapshot); the next one has the errors series.
    expect((await otherFirst).value?.series).toEqual([]);
    const second = (await other.next()).value as MetricsSnapshot;
    expect(second.series.length).toBeGreaterThan(0);
    expect(new Set(second.series.map((s) => s.metric))).toEqual(new Set(['errors']));
    ac.abort();
    await other.return();
    expect(live.size).toBe(0);
  });
});
