/**
 * The fleet's device view: every worker's devices with their last live figures (the embedded
 * worker sampled here, worker processes from their heartbeats), the memory each instance holds,
 * what is reserved and what is free, per device, per worker and per device kind.
 */
import type { Logger } from 'pino';
import { McpError } from '../errors.ts';
import { logBackgroundFailure } from '../db/storage-errors.ts';
import type { Fleet, InstanceHandle } from '../models/fleet.ts';
import type { DeviceInfo } from '../plugin/contract.ts';
import type { PluginHost } from '../plugin/host.ts';
import { EMBEDDED_WORKER_ID, workerInstanceId, type WorkerRegistry, type WorkerView } from '../workers/worker-registry.ts';
import type { LocalDevices } from './local-devices.ts';

export type DeviceKind = DeviceInfo['kind'];
/** `<worker id>/<device id>`: one device of the fleet. */
export type DeviceKey = string;
/** Where reserved memory comes from: bytes per device key (the placement engine's reservations). */
export type ReservationSource = () => ReadonlyMap<DeviceKey, number>;

/** Group id of devices that remote serving engines declare (e.g. a JetStream TPU server through the `openai` backend); no worker name starts with `@`. */
export const REMOTE_GROUP_ID = '@remote';

export const deviceKey = (workerId: string, deviceId: string): DeviceKey => `${workerId}/${deviceId}`;

/** One device with its last figures. */
export interface DeviceView {
  key: DeviceKey;
  workerId: string;
  id: string;
  kind: DeviceKind;
  name?: string;
  cores?: number;
  memoryTotalBytes?: number;
  memoryUsedBytes?: number;
  /** Memory promised to instances (the reservation source's figure, else the sum of the instances' reported memory on it). */
  memoryReservedBytes: number;
  /** `total − max(used, reserved)`, never below 0; undefined when the total is unknown. */
  memoryFreeBytes?: number;
  /** 0 … 1 over the last sampling interval. */
  utilization?: number;
  source?: string;
  /** When the figures were taken (last heartbeat / sample). */
  at?: Date;
}

/** Memory one instance holds, as its backend reports it. */
export interface InstanceMemory {
  instanceId: string;
  model: string;
  version: string;
  workerId: string;
  device?: string;
  memoryBytes: number;
}

/** One worker (or the group of remote engines) and its devices. */
export interface WorkerDevices {
  workerId: string;
  embedded: boolean;
  /** True for the group of devices remote engines declare (not a process of ours). */
  remote: boolean;
  status: string;
  at?: Date;
  devices: DeviceView[];
  instances: InstanceMemory[];
}

/** Sums over a set of devices. */
export interface ResourceTotals {
  /** Device kind, or undefined for every kind together. */
  kind?: DeviceKind;
  devices: number;
  cores: number;
  memoryTotalBytes: number;
  memoryUsedBytes: number;
  memoryReservedBytes: number;
  memoryFreeBytes: number;
  /** Mean utilisation of the devices that report one; undefined when none does. */
  utilization?: number;
}

export interface ResourceSnapshot {
  at: Date;
  workers: WorkerDevices[];
  /** Healthy workers only (stopped and silent ones hold nothing one could use). */
  totals: ResourceTotals;
  byKind: ResourceTotals[];
}

export interface ResourceInventoryOptions {
  /** How often the embedded worker's devices are sampled, ms. */
  sampleIntervalMs: number;
  /** Least time between two update events, ms. */
  updatesMinIntervalMs: number;
}

const KINDS: readonly DeviceKind[] = ['cpu', 'gpu', 'tpu', 'remote'];

/** Latest-only slot of one subscriber (a slow reader skips, never queues). */
class Slot {
  pending: ResourceSnapshot | undefined;
  wake: (() => void) | undefined;
  push(s: ResourceSnapshot | undefined): void {
    this.pending = s;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

/** Owns the fleet's device view (read-only on the workers' reports and the Fleet's handles). */
export class ResourceInventory {
  private embeddedDevices: DeviceInfo[] = [];
  private embeddedAt: Date | undefined;
  private reservations: ReservationSource | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private sampling: Promise<void> | undefined;
  private first: Promise<void> | undefined;
  private closed = false;
  private readonly slots = new Set<Slot>();
  private emitTimer: ReturnType<typeof setTimeout> | undefined;
  private lastEmit = 0;
  private readonly unsubscribe: () => void;
  /** Update events computed since start (one per change burst, whatever the number of subscribers). */
  computations = 0;

  constructor(
    private readonly deps: { workers: WorkerRegistry; fleet: Fleet; plugins: PluginHost; local: LocalDevices; logger: Logger },
    private readonly options: ResourceInventoryOptions,
  ) {
    this.unsubscribe = deps.workers.onLoad(() => this.changed());
  }

  /**
   * The seam for placement: `source` answers reserved bytes per device key (`<worker>/<device>`); devices it
   * does not name count the instances' reported memory. Without a source, reserved = the sum of the memory the
   * instances on a device report.
   */
  setReservations(source: ReservationSource | undefined): void {
    this.reservations = source;
    this.changed();
  }

  /** Samples the embedded worker's devices now (in the background: answers wait for that first sample) and every sampleIntervalMs (its heartbeat). */
  start(): void {
    this.first ??= this.sampling = this.sampleEmbedded().finally(() => {
      this.sampling = undefined;
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.sampling = this.sampleEmbedded().finally(() => {
        this.sampling = undefined;
        this.schedule();
      });
    }, this.options.sampleIntervalMs);
    this.timer.unref?.();
  }

  private async sampleEmbedded(): Promise<void> {
    try {
      const extra: DeviceInfo[][] = [];
      for (const b of this.deps.plugins.names('backend')) {
        if (!(await this.deps.workers.isLocalBackend(b))) continue;
        const list = await Promise.resolve(this.deps.plugins.get('backend', b).devices?.()).catch(() => undefined);
        if (list) extra.push(list);
      }
      this.embeddedDevices = await this.deps.local.sample(extra);
      this.embeddedAt = new Date();
      this.changed();
    } catch (err) {
      this.deps.logger.warn({ err }, 'sampling the embedded worker devices failed');
    }
  }

  /** The devices of one worker (`embedded`, a worker id, or `@remote`), or of all when workerId is undefined; MCP_WORKER_NOT_FOUND for an unknown id. */
  async devices(workerId?: string): Promise<WorkerDevices[]> {
    const snap = await this.snapshot();
    if (workerId === undefined) return snap.workers;
    const found = snap.workers.filter((w) => w.workerId === workerId);
    if (found.length === 0 && workerId !== REMOTE_GROUP_ID) throw new McpError('MCP_WORKER_NOT_FOUND', `no worker with id "${workerId}"`);
    return found;
  }

  /** Everything now: per worker, and totals over healthy workers. */
  async snapshot(): Promise<ResourceSnapshot> {
    await this.first;
    const list = await this.deps.workers.list();
    const handles = [...this.deps.fleet.allHandles()];
    const groups: WorkerDevices[] = [];
    const remote: WorkerDevices = { workerId: REMOTE_GROUP_ID, embedded: false, remote: true, status: 'healthy', devices: [], instances: [] };
    for (const w of list) {
      if (w.embedded) groups.push(await this.embeddedGroup(w, handles, remote));
      else groups.push(this.workerGroup(w, handles));
    }
    if (remote.devices.length) groups.push(remote);
    const reserved = this.reservations?.();
    for (const g of groups) fillReserved(g, reserved);
    const live = groups.flatMap((g) => (g.status === 'healthy' ? g.devices : []));
    return {
      at: new Date(),
      workers: groups,
      totals: totalsOf(live),
      byKind: KINDS.map((k) =>
        totalsOf(
          live.filter((d) => d.kind === k),
          k,
        ),
      ).filter((t) => t.devices > 0),
    };
  }

  private async embeddedGroup(w: WorkerView, handles: readonly InstanceHandle[], remote: WorkerDevices): Promise<WorkerDevices> {
    const at = this.embeddedAt;
    const devices: DeviceView[] = this.embeddedDevices.map((d) => view(EMBEDDED_WORKER_ID, d, at));
    const instances: InstanceMemory[] = [];
    for (const h of handles) {
      const loaded = h.loaded;
      if (!loaded || h.backend === 'worker') continue;
      const declared = safe(() => loaded.deviceInfo?.());
      const bytes = safe(() => loaded.memoryBytes?.());
      if (declared && remote.devices.length < 256 && !(await this.deps.workers.isLocalBackend(h.backend))) {
        const d = view(REMOTE_GROUP_ID, { ...declared, id: declared.id.slice(0, 63) }, new Date());
        if (!remote.devices.some((x) => x.id === d.id)) remote.devices.push(d);
        if (typeof bytes === 'number' && Number.isFinite(bytes) && bytes >= 0)
          remote.instances.push({ instanceId: h.id, model: h.modelId, version: h.version, workerId: REMOTE_GROUP_ID, device: d.id, memoryBytes: bytes });
        continue;
      }
      if (typeof bytes === 'number' && Number.isFinite(bytes) && bytes >= 0)
        instances.push({ instanceId: h.id, model: h.modelId, version: h.version, workerId: EMBEDDED_WORKER_ID, device: loaded.device, memoryBytes: bytes });
    }
    return { workerId: w.id, embedded: true, remote: false, status: w.status, ...(at ? { at } : {}), devices, instances };
  }

  private workerGroup(w: WorkerView, handles: readonly InstanceHandle[]): WorkerDevices {
    const load = w.load;
    const samples = new Map((load?.devices ?? []).map((d) => [d.id, d]));
    const devices = w.devices.map((d) => {
      const s = samples.get(d.id);
      return view(w.id, { ...d, kind: d.kind as DeviceKind, ...(s ?? {}) } as DeviceInfo, load?.at);
    });
    const byId = new Map(handles.map((h) => [h.id, h]));
    const instances: InstanceMemory[] = [];
    for (const i of load?.instances ?? []) {
      const h = byId.get(workerInstanceId(w.id, i.remoteInstanceId));
      if (!h) continue;
      instances.push({
        instanceId: h.id,
        model: h.modelId,
        version: h.version,
        workerId: w.id,
        ...(i.device ? { device: i.device } : {}),
        memoryBytes: i.memoryBytes,
      });
    }
    return { workerId: w.id, embedded: false, remote: false, status: w.status, ...(load ? { at: load.at } : {}), devices, instances };
  }

  /**
   * Snapshots on each change (a heartbeat, an embedded sample, new reservations), at most one per
   * updatesMinIntervalMs, computed once for every subscriber; the first one at once. Ends when `signal` aborts.
   */
  async *updates(signal: AbortSignal): AsyncGenerator<ResourceSnapshot> {
    const slot = new Slot();
    this.slots.add(slot);
    const onAbort = () => slot.push(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      yield await this.snapshot();
      while (!signal.aborted && !this.closed) {
        if (!slot.pending) await new Promise<void>((resolve) => (slot.wake = resolve));
        const s = slot.pending;
        slot.pending = undefined;
        if (s && !signal.aborted) yield s;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.slots.delete(slot);
    }
  }

  /** Something changed: emit to subscribers now, or when the throttle allows. */
  private changed(): void {
    if (!this.slots.size || this.emitTimer || this.closed) return;
    const wait = Math.max(0, this.lastEmit + this.options.updatesMinIntervalMs - Date.now());
    this.emitTimer = setTimeout(() => void this.emit(), wait);
    this.emitTimer.unref?.();
  }

  private async emit(): Promise<void> {
    this.lastEmit = Date.now();
    try {
      const snap = await this.snapshot();
      this.computations++;
      for (const s of this.slots) s.push(snap);
    } catch (err) {
      logBackgroundFailure(this.deps.logger, err, {}, 'resource update failed');
    } finally {
      this.emitTimer = undefined;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe();
    if (this.timer) clearTimeout(this.timer);
    if (this.emitTimer) clearTimeout(this.emitTimer);
    for (const s of this.slots) s.push(undefined);
    await this.sampling;
  }
}

function safe<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

function view(workerId: string, d: DeviceInfo, at: Date | undefined): DeviceView {
  return {
    key: deviceKey(workerId, d.id),
    workerId,
    id: d.id,
    kind: d.kind,
    ...(d.name !== undefined ? { name: d.name } : {}),
    ...(d.cores !== undefined ? { cores: d.cores } : {}),
    ...(d.memoryTotalBytes !== undefined ? { memoryTotalBytes: d.memoryTotalBytes } : {}),
    ...(d.memoryUsedBytes !== undefined ? { memoryUsedBytes: d.memoryUsedBytes } : {}),
    ...(d.utilization !== undefined ? { utilization: d.utilization } : {}),
    ...(d.source !== undefined ? { source: d.source } : {}),
    ...(at ? { at } : {}),
    memoryReservedBytes: 0,
  };
}

/** Reserved per device (the source's figure, else the instances' memory on it), then free = total − max(used, reserved). */
function fillReserved(g: WorkerDevices, source: ReadonlyMap<DeviceKey, number> | undefined): void {
  const held = new Map<string, number>();
  for (const i of g.instances) if (i.device) held.set(i.device, (held.get(i.device) ?? 0) + i.memoryBytes);
  for (const d of g.devices) {
    const fromSource = source?.get(d.key);
    d.memoryReservedBytes = fromSource !== undefined && Number.isFinite(fromSource) && fromSource >= 0 ? fromSource : (held.get(d.id) ?? 0);
    if (d.memoryTotalBytes !== undefined) d.memoryFreeBytes = Math.max(0, d.memoryTotalBytes - Math.max(d.memoryUsedBytes ?? 0, d.memoryReservedBytes));
  }
}

function totalsOf(devices: readonly DeviceView[], kind?: DeviceKind): ResourceTotals {
  const t: ResourceTotals = { devices: devices.length, cores: 0, memoryTotalBytes: 0, memoryUsedBytes: 0, memoryReservedBytes: 0, memoryFreeBytes: 0 };
  if (kind) t.kind = kind;
  let utilSum = 0;
  let utilN = 0;
  for (const d of devices) {
    t.cores += d.cores ?? 0;
    t.memoryTotalBytes += d.memoryTotalBytes ?? 0;
    t.memoryUsedBytes += d.memoryUsedBytes ?? 0;
    t.memoryReservedBytes += d.memoryReservedBytes;
    t.memoryFreeBytes += d.memoryFreeBytes ?? 0;
    if (d.utilization !== undefined) {
      utilSum += d.utilization;
      utilN++;
    }
  }
  if (utilN) t.utilization = utilSum / utilN;
  return t;
}
