/**
 * Placement decision time: 1,000 instances over 100 workers (4 devices each: 1 cpu, 3 gpu), with the
 * pure engine (src/resources/placement.ts). Three scenarios, interleaved, medians of BENCH_RUNS runs:
 *
 *   npx tsx bench/placement.ts
 *
 * fill      = 1,000 single-instance placements one after the other into an empty fleet (each decision
 *             sees the instances placed before it): total time and per decision.
 * full      = one more placement into the full fleet that needs an eviction (1,000 instances weighed).
 * replicas  = 10 versions × 100 replicas placed from empty (spread across all 100 workers).
 */
import { planPlacement, type PlacedInstance, type PlacementRequest, type PlacementWorker } from '../src/resources/placement.ts';
import { mulberry32 } from '../src/sdk/index.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const GiB = 2 ** 30;
const WORKERS = 100;
const INSTANCES = 1_000;

const rand = mulberry32(7);
const workers: PlacementWorker[] = Array.from({ length: WORKERS }, (_, i) => ({
  id: `w${String(i).padStart(3, '0')}`,
  healthy: true,
  devices: [{ id: 'cpu', kind: 'cpu', memoryTotalBytes: 64 * GiB }, ...[0, 1, 2].map((g) => ({ id: `gpu:${g}`, kind: 'gpu', memoryTotalBytes: 24 * GiB }))],
}));
const sizes = Array.from({ length: INSTANCES }, () => Math.round((4 + rand() * 6) * GiB));
const base = (i: number, bytes: number, count = 1): PlacementRequest => ({
  modelId: `m${i}`,
  version: 'v1',
  deviceKind: 'gpu',
  bytes,
  count,
  priority: 1 + (i % 5),
  allowEviction: true,
  now: 10_000_000,
  idleMs: 60_000,
});

function fill(): { ms: number; placed: PlacedInstance[] } {
  const placed: PlacedInstance[] = [];
  const t = performance.now();
  for (let i = 0; i < INSTANCES; i++) {
    const plan = planPlacement(workers, placed, base(i, sizes[i]!));
    for (const p of plan.placements)
      placed.push({
        instanceId: `i${i}`,
        modelId: `m${i}`,
        version: 'v1',
        workerId: p.workerId,
        deviceId: p.deviceId,
        reservedBytes: p.bytes,
        priority: 1 + (i % 5),
        evictable: true,
        lastUsedAt: i * 1000,
        inflight: 0,
      });
  }
  return { ms: performance.now() - t, placed };
}

function full(placed: PlacedInstance[]): number {
  // 1,000 instances of 4–10 GiB leave every gpu nearly full: a 20 GiB request must evict
  const t = performance.now();
  const plan = planPlacement(workers, placed, { ...base(9999, 20 * GiB), priority: 10 });
  const ms = performance.now() - t;
  if (!plan.placements.length || !plan.evictions.length) throw new Error('expected a placement with evictions');
  return ms;
}

function replicas(): number {
  const placed: PlacedInstance[] = [];
  const t = performance.now();
  for (let v = 0; v < 10; v++) {
    const plan = planPlacement(workers, placed, base(v, 2 * GiB, 100));
    if (plan.shortfall) throw plan.shortfall;
    plan.placements.forEach((p, k) =>
      placed.push({
        ...p,
        instanceId: `r${v}-${k}`,
        modelId: `m${v}`,
        version: 'v1',
        reservedBytes: p.bytes,
        priority: 1,
        evictable: true,
        lastUsedAt: 0,
        inflight: 0,
      }),
    );
    if (new Set(plan.placements.map((p) => p.workerId)).size !== 100) throw new Error('replicas not spread over 100 workers');
  }
  return performance.now() - t;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fills: number[] = [];
const fulls: number[] = [];
const reps: number[] = [];
for (let r = 0; r < 3; r++) full(fill().placed); // warm-up
for (let r = 0; r < RUNS; r++) {
  const f = fill();
  fills.push(f.ms);
  fulls.push(full(f.placed));
  reps.push(replicas());
}
const fmt = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);
console.log(`placement bench: ${INSTANCES} instances over ${WORKERS} workers (4 devices each), ${RUNS} runs, medians`);
console.log(`| scenario | median total | per decision |`);
console.log(`|---|---:|---:|`);
console.log(`| fill: 1,000 single-instance placements in turn | ${fmt(median(fills))} | ${fmt(median(fills) / INSTANCES)} |`);
console.log(`| full fleet: one placement with eviction (1,000 weighed) | ${fmt(median(fulls))} | ${fmt(median(fulls))} |`);
console.log(`| replicas: 10 versions × 100 replicas, spread | ${fmt(median(reps))} | ${fmt(median(reps) / 10)} |`);
