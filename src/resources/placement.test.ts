import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { McpError } from '../errors.ts';
import { planPlacement, placeOrThrow, type PlacedInstance, type PlacementRequest, type PlacementWorker } from './placement.ts';

const MiB = 2 ** 20;
const w = (id: string, mib: number, extra: Partial<PlacementWorker> = {}): PlacementWorker => ({
  id,
  healthy: true,
  devices: [{ id: 'cpu', kind: 'cpu', memoryTotalBytes: mib * MiB }],
  ...extra,
});
const req = (over: Partial<PlacementRequest> = {}): PlacementRequest => ({
  modelId: 'm',
  version: 'v1',
  deviceKind: 'cpu',
  bytes: 100 * MiB,
  count: 1,
  priority: 100,
  allowEviction: true,
  now: 1_000_000,
  idleMs: 1000,
  ...over,
});
const inst = (id: string, workerId: string, mib: number, over: Partial<PlacedInstance> = {}): PlacedInstance => ({
  instanceId: id,
  modelId: id,
  version: 'v1',
  workerId,
  deviceId: 'cpu',
  reservedBytes: mib * MiB,
  priority: 10,
  evictable: true,
  lastUsedAt: 0,
  inflight: 0,
  ...over,
});

describe('planPlacement', () => {
  it('places best fit: the device whose free memory fits most tightly', () => {
    const plan = placeOrThrow([w('big', 1000), w('small', 150), w('mid', 300)], [], req());
    expect(plan.placements).toEqual([{ workerId: 'small', deviceId: 'cpu', bytes: 100 * MiB }]);
    expect(plan.evictions).toEqual([]);
  });

  it('counts what is reserved and what the worker reports used (the larger)', () => {
    const workers = [w('a', 300), { ...w('b', 200), devices: [{ id: 'cpu', kind: 'cpu', memoryTotalBytes: 200 * MiB, memoryUsedBytes: 150 * MiB }] }];
    // a: 300 - 150 reserved = 150 free; b: 200 - 150 used = 50 free
    const plan = placeOrThrow(workers, [inst('x', 'a', 150, { priority: 1000 })], req());
    expect(plan.placements[0]!.workerId).toBe('a');
  });

  it('spreads replicas across workers while another worker fits, then doubles up', () => {
    const plan = placeOrThrow([w('a', 1000), w('b', 250)], [], req({ count: 3 }));
    expect(plan.placements.map((p) => p.workerId)).toEqual(['b', 'a', 'b']);
    const placedAlready = placeOrThrow([w('a', 1000), w('b', 1000)], [inst('m-1', 'a', 100, { modelId: 'm' })], req());
    expect(placedAlready.placements[0]!.workerId).toBe('b');
  });

  it('ignores unhealthy workers and other device kinds', () => {
    const gpu: PlacementWorker = { id: 'g', healthy: true, devices: [{ id: 'gpu:0', kind: 'gpu', memoryTotalBytes: 8000 * MiB }] };
    const plan = placeOrThrow([w('dead', 1000, { healthy: false }), gpu, w('ok', 200)], [], req());
    expect(plan.placements[0]!.workerId).toBe('ok');
    expect(placeOrThrow([gpu, w('ok', 200)], [], req({ deviceKind: 'gpu' })).placements[0]).toMatchObject({ workerId: 'g', deviceId: 'gpu:0' });
  });

  it('evicts idle lower-priority instances, least recently used first', () => {
    const current = [
      inst('old', 'a', 100, { lastUsedAt: 10 }),
      inst('newer', 'a', 100, { lastUsedAt: 500 }),
      inst('recent', 'b', 100, { lastUsedAt: 999_500 }), // used 500 ms ago: not idle
      inst('busy', 'b', 100, { inflight: 1 }),
    ];
    const plan = placeOrThrow([w('a', 200), w('b', 200)], current, req());
    expect(plan.placements[0]!.workerId).toBe('a');
    expect(plan.evictions.map((i) => i.instanceId)).toEqual(['old']);
  });

  it('never evicts equal or higher priority, unevictable, busy or recently used instances', () => {
    const current = [
      inst('same', 'a', 100, { priority: 100 }),
      inst('pinned', 'b', 100, { evictable: false }),
      inst('busy', 'c', 100, { inflight: 2 }),
      inst('recent', 'd', 100, { lastUsedAt: 999_999 }),
    ];
    const plan = planPlacement(
      ['a', 'b', 'c', 'd'].map((id) => w(id, 150)),
      current,
      req(),
    );
    expect(plan.placements).toEqual([]);
    expect(plan.evictions).toEqual([]);
    expect(plan.shortfall?.code).toBe('MCP_INSUFFICIENT_RESOURCES');
    expect(planPlacement([w('a', 150)], [inst('low', 'a', 100)], req({ allowEviction: false })).shortfall).toBeInstanceOf(McpError);
  });

  it('names what is short', () => {
    let err: unknown;
    try {
      placeOrThrow([w('w1', 1024), w('w2', 2048)], [inst('x', 'w2', 512, { priority: 500 })], req({ bytes: 2048 * MiB, modelId: 'big' }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe('MCP_INSUFFICIENT_RESOURCES');
    expect((err as McpError).message).toBe('big@v1 needs 2.0 GiB cpu memory, largest free is 1.5 GiB on worker w2 (device cpu)');
    expect(() => placeOrThrow([], [], req({ deviceKind: 'tpu' }))).toThrow(/no healthy worker has a tpu device/);
  });

  it('never over-commits a device and never evicts what it may not (property)', () => {
    const arbWorkers = fc.array(fc.integer({ min: 0, max: 4000 }), { minLength: 1, maxLength: 8 }).map((caps) => caps.map((c, i) => w(`w${i}`, c)));
    fc.assert(
      fc.property(
        arbWorkers,
        fc.array(
          fc.record({
            worker: fc.nat(7),
            mib: fc.integer({ min: 1, max: 800 }),
            priority: fc.integer({ min: 0, max: 200 }),
            evictable: fc.boolean(),
            lastUsedAt: fc.integer({ min: 0, max: 1_000_000 }),
            inflight: fc.integer({ min: 0, max: 2 }),
          }),
          { maxLength: 30 },
        ),
        fc.integer({ min: 1, max: 1500 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 0, max: 200 }),
        (workers, raw, mib, count, priority) => {
          // the starting state respects capacity: instances that would not fit are left out
          const left = new Map(workers.map((x) => [x.id, x.devices[0]!.memoryTotalBytes!]));
          const current: PlacedInstance[] = [];
          raw.forEach((r, i) => {
            const id = workers[r.worker % workers.length]!.id;
            if (left.get(id)! < r.mib * MiB) return;
            left.set(id, left.get(id)! - r.mib * MiB);
            current.push(inst(`i${i}`, id, r.mib, { priority: r.priority, evictable: r.evictable, lastUsedAt: r.lastUsedAt, inflight: r.inflight }));
          });
          const r = req({ bytes: mib * MiB, count, priority });
          const plan = planPlacement(workers, current, r);
          if (!plan.shortfall) expect(plan.placements).toHaveLength(count);
          for (const v of plan.evictions) {
            expect(v.evictable && v.priority < priority && v.inflight === 0 && r.now - v.lastUsedAt >= r.idleMs).toBe(true);
          }
          const gone = new Set(plan.evictions.map((v) => v.instanceId));
          for (const x of workers) {
            const kept = current.filter((i) => i.workerId === x.id && !gone.has(i.instanceId)).reduce((a, i) => a + i.reservedBytes, 0);
            const added = plan.placements.filter((p) => p.workerId === x.id).reduce((a, p) => a + p.bytes, 0);
            expect(kept + added).toBeLessThanOrEqual(x.devices[0]!.memoryTotalBytes!);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
