/**
 * The placement engine: pure functions that decide where instances go, from the workers' devices
 * (capacity and what is used), the instances placed now (their reservations, priority, last use)
 * and what a version needs. No I/O: the reconciler feeds it and applies its decisions.
 */
import { McpError } from '../errors.ts';
import { formatBytes } from './requirements.ts';

export interface PlacementDevice {
  id: string;
  kind: string;
  memoryTotalBytes?: number | undefined;
  /** What the worker reports in use now (heartbeat); reservations count when larger. */
  memoryUsedBytes?: number | undefined;
}

export interface PlacementWorker {
  id: string;
  healthy: boolean;
  devices: readonly PlacementDevice[];
}

/** Where the engine reads workers and devices (today the workers table and heartbeats; later the live inventory). */
export interface PlacementInventory {
  workers(): Promise<PlacementWorker[]> | PlacementWorker[];
}

/** An instance placed on a worker's device, as the engine weighs it. */
export interface PlacedInstance {
  instanceId: string;
  modelId: string;
  version: string;
  workerId: string;
  deviceId: string;
  reservedBytes: number;
  priority: number;
  evictable: boolean;
  /** ms since epoch of its last request (or its load). */
  lastUsedAt: number;
  /** Requests on it now. */
  inflight: number;
}

export interface PlacementRequest {
  modelId: string;
  version: string;
  deviceKind: string;
  /** Bytes each new instance reserves. */
  bytes: number;
  /** How many instances to add. */
  count: number;
  priority: number;
  /** Whether idle, evictable instances of lower priority may be evicted to make room. */
  allowEviction: boolean;
  /** Now (ms); an instance is idle when nothing runs on it and its last use is at least idleMs old. */
  now: number;
  idleMs: number;
}

export interface Placement {
  workerId: string;
  deviceId: string;
  bytes: number;
}

export interface PlacementPlan {
  placements: Placement[];
  /** Instances to evict first, least recently used first. */
  evictions: PlacedInstance[];
  /** Set when fewer than `count` instances could be placed: what is short. */
  shortfall?: McpError;
}

interface DeviceState {
  workerId: string;
  deviceId: string;
  total: number;
  reserved: number;
  used: number;
  instances: PlacedInstance[];
}

const freeOf = (d: DeviceState) => d.total - Math.max(d.reserved, d.used);

/**
 * Plans `count` new instances of one version: each goes to the device, of the kind asked, whose free
 * memory fits it most tightly (best fit), on a worker that holds no instance of the version yet while
 * one such worker fits (spread). When none fits and eviction is allowed, the idle evictable instances
 * of strictly lower priority go, least recently used first: the device chosen is the one whose needed
 * victims are the least recently used (their newest use is oldest), then the fewest, then best fit.
 * Never over-commits a device: after the plan, reservations stay within every device's capacity.
 */
export function planPlacement(workers: readonly PlacementWorker[], current: readonly PlacedInstance[], req: PlacementRequest): PlacementPlan {
  const devices: DeviceState[] = [];
  const byKey = new Map<string, DeviceState>();
  for (const w of workers) {
    if (!w.healthy) continue;
    for (const d of w.devices) {
      if (d.kind !== req.deviceKind || d.memoryTotalBytes === undefined) continue;
      const s: DeviceState = { workerId: w.id, deviceId: d.id, total: d.memoryTotalBytes, reserved: 0, used: d.memoryUsedBytes ?? 0, instances: [] };
      devices.push(s);
      byKey.set(`${w.id}\u0000${d.id}`, s);
    }
  }
  const occupied = new Set<string>();
  for (const i of current) {
    const s = byKey.get(`${i.workerId}\u0000${i.deviceId}`);
    if (s) {
      s.reserved += i.reservedBytes;
      s.instances.push(i);
    }
    if (i.modelId === req.modelId && i.version === req.version) occupied.add(i.workerId);
  }
  const plan: PlacementPlan = { placements: [], evictions: [] };
  for (let n = 0; n < req.count; n++) {
    const target = bestFit(devices, occupied, req.bytes) ?? (req.allowEviction ? withEviction(devices, occupied, req, plan) : undefined);
    if (!target) {
      plan.shortfall = shortfall(devices, req, n);
      break;
    }
    target.reserved += req.bytes;
    occupied.add(target.workerId);
    plan.placements.push({ workerId: target.workerId, deviceId: target.deviceId, bytes: req.bytes });
  }
  return plan;
}

/** The plan, or MCP_INSUFFICIENT_RESOURCES when not every instance fits. */
export function placeOrThrow(workers: readonly PlacementWorker[], current: readonly PlacedInstance[], req: PlacementRequest): PlacementPlan {
  const plan = planPlacement(workers, current, req);
  if (plan.shortfall) throw plan.shortfall;
  return plan;
}

function bestFit(devices: readonly DeviceState[], occupied: ReadonlySet<string>, bytes: number): DeviceState | undefined {
  let best: DeviceState | undefined;
  let bestSpread = false;
  for (const d of devices) {
    const free = freeOf(d);
    if (free < bytes) continue;
    const spread = !occupied.has(d.workerId);
    if (!best || (spread && !bestSpread) || (spread === bestSpread && (free < freeOf(best) || (free === freeOf(best) && key(d) < key(best))))) {
      best = d;
      bestSpread = spread;
    }
  }
  return best;
}

const key = (d: DeviceState) => `${d.workerId}\u0000${d.deviceId}`;

function withEviction(devices: readonly DeviceState[], occupied: ReadonlySet<string>, req: PlacementRequest, plan: PlacementPlan): DeviceState | undefined {
  let best: { d: DeviceState; victims: PlacedInstance[]; newest: number; spread: boolean; left: number } | undefined;
  for (const d of devices) {
    if (d.total < req.bytes) continue;
    const idle = d.instances
      .filter((i) => i.evictable && i.priority < req.priority && i.inflight === 0 && req.now - i.lastUsedAt >= req.idleMs)
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt || (a.instanceId < b.instanceId ? -1 : 1));
    let free = freeOf(d);
    const victims: PlacedInstance[] = [];
    for (const v of idle) {
      if (free >= req.bytes) break;
      victims.push(v);
      // what the victim held leaves both the reservations and (when reported) the used figure
      free = d.total - Math.max(d.reserved - sum(victims), d.used - sum(victims));
    }
    if (free < req.bytes || victims.length === 0) continue;
    const cand = { d, victims, newest: victims[victims.length - 1]!.lastUsedAt, spread: !occupied.has(d.workerId), left: free - req.bytes };
    if (
      !best ||
      (cand.spread && !best.spread) ||
      (cand.spread === best.spread &&
        (cand.newest < best.newest ||
          (cand.newest === best.newest &&
            (cand.victims.length < best.victims.length || (cand.victims.length === best.victims.length && cand.left < best.left)))))
    )
      best = cand;
  }
  if (!best) return undefined;
  const gone = new Set(best.victims);
  best.d.instances = best.d.instances.filter((i) => !gone.has(i));
  const freed = sum(best.victims);
  best.d.reserved -= freed;
  best.d.used = Math.max(0, best.d.used - freed);
  plan.evictions.push(...best.victims);
  return best.d;
}

const sum = (xs: readonly PlacedInstance[]) => xs.reduce((a, i) => a + i.reservedBytes, 0);

function shortfall(devices: readonly DeviceState[], req: PlacementRequest, placed: number): McpError {
  const what = `${req.modelId}@${req.version}`;
  const needs = `needs ${formatBytes(req.bytes)} ${req.deviceKind} memory`;
  const of = req.count > 1 ? ` (instance ${placed + 1} of ${req.count})` : '';
  let largest: DeviceState | undefined;
  for (const d of devices) if (!largest || freeOf(d) > freeOf(largest)) largest = d;
  const message = largest
    ? `${what} ${needs}${of}, largest free is ${formatBytes(Math.max(0, freeOf(largest)))} on worker ${largest.workerId} (device ${largest.deviceId})`
    : `${what} ${needs}${of}, no healthy worker has a ${req.deviceKind} device with stated memory`;
  return new McpError('MCP_INSUFFICIENT_RESOURCES', message, {
    details: {
      model: req.modelId,
      version: req.version,
      deviceKind: req.deviceKind,
      neededBytes: req.bytes,
      largestFreeBytes: largest ? Math.max(0, freeOf(largest)) : 0,
      ...(largest ? { worker: largest.workerId, device: largest.deviceId } : {}),
      placed,
    },
  });
}
