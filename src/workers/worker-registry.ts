import { and, asc, eq, inArray, lt, ne } from 'drizzle-orm';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Database } from '../db/client.ts';
import { workerModels, workers } from '../db/schema.ts';
import { storageFailure, storageFailureReason } from '../db/storage-errors.ts';
import { McpError } from '../errors.ts';
import type { EventBus, WorkerCommand } from '../events/bus.ts';
import type { Fleet } from '../models/fleet.ts';
import { TASKS, type InstanceRow, type ModelRegistry } from '../models/registry.ts';
import type { DeviceInfo } from '../plugin/contract.ts';
import type { PluginHost } from '../plugin/host.ts';
import { isWorkerCallSigner, WORKER_SESSION_PATTERN } from './call-auth.ts';

export type WorkerRow = typeof workers.$inferSelect;
type WorkerStatus = 'healthy' | 'unhealthy' | 'stopped';

/** Load figures a worker reports with each heartbeat (kept in memory, not stored). */
export interface WorkerLoad {
  /** Requests running on the worker now. */
  inflight: number;
  /** Requests served since the worker started. */
  requestsTotal: number;
  /** CPU time of the worker process since it started, seconds. */
  cpuSeconds?: number;
  /** Resident memory of the worker process, bytes. */
  residentMemoryBytes?: number;
  /** Memory used now per registered device id, bytes. */
  deviceMemoryUsedBytes?: ReadonlyMap<string, number>;
  /** Live figures of the registered devices the heartbeat reported. */
  devices?: readonly DeviceSample[];
  /** Memory each instance's backend holds, by the worker's instance id. */
  instances?: readonly InstanceSample[];
  at: Date;
}

/** Live figures of one device, as a heartbeat reported them (validated). */
export interface DeviceSample {
  id: string;
  memoryTotalBytes?: number;
  memoryUsedBytes?: number;
  /** 0 … 1. */
  utilization?: number;
  cores?: number;
}

/** Memory one instance holds on a worker, as its heartbeat reported it. */
export interface InstanceSample {
  /** The worker's own instance id. */
  remoteInstanceId: string;
  memoryBytes: number;
  device?: string;
}

/** Instances a heartbeat may report (more are ignored). */
const MAX_INSTANCE_SAMPLES = 256;

/** The load a heartbeat reports (GraphQL `WorkerLoadInput`); nulls mean not reported. */
export interface HeartbeatLoad {
  inflight?: number | null;
  requestsTotal?: number | null;
  cpuSeconds?: number | null;
  residentMemoryBytes?: number | null;
  devices?: ReadonlyArray<{
    id: string;
    memoryUsedBytes?: number | null;
    memoryTotalBytes?: number | null;
    utilization?: number | null;
    cores?: number | null;
  }> | null;
  instances?: ReadonlyArray<{ remoteInstanceId: string; memoryBytes: number; device?: string | null }> | null;
}

/** A reported figure kept when it is a finite, non-negative number (at most `max`). */
function figure(v: number | null | undefined, max = Number.MAX_SAFE_INTEGER): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= max ? v : undefined;
}

/**
 * The load as kept: figures that are not finite and non-negative are dropped, and device figures
 * only for devices the worker registered (so metric labels stay those of the registry).
 */
function loadOf(load: HeartbeatLoad, registered: ReadonlyArray<{ id: string }>): WorkerLoad {
  const out: WorkerLoad = { inflight: figure(load.inflight) ?? 0, requestsTotal: figure(load.requestsTotal) ?? 0, at: new Date() };
  const cpu = figure(load.cpuSeconds);
  const rss = figure(load.residentMemoryBytes);
  if (cpu !== undefined) out.cpuSeconds = cpu;
  if (rss !== undefined) out.residentMemoryBytes = rss;
  if (load.devices?.length) {
    const known = new Set(registered.map((d) => d.id));
    const used = new Map<string, number>();
    const samples = new Map<string, DeviceSample>();
    for (const d of load.devices.slice(0, 64)) {
      if (!known.has(d.id) || samples.has(d.id)) continue;
      const sample: DeviceSample = { id: d.id };
      const v = figure(d.memoryUsedBytes);
      const total = figure(d.memoryTotalBytes);
      const util = figure(d.utilization, 1);
      const cores = figure(d.cores, 100_000);
      if (v !== undefined) used.set(d.id, (sample.memoryUsedBytes = v));
      if (total !== undefined) sample.memoryTotalBytes = total;
      if (util !== undefined) sample.utilization = util;
      if (cores !== undefined) sample.cores = Math.round(cores);
      samples.set(d.id, sample);
    }
    if (used.size) out.deviceMemoryUsedBytes = used;
    if (samples.size) out.devices = [...samples.values()];
  }
  if (load.instances?.length) {
    const seen = new Set<string>();
    const list: InstanceSample[] = [];
    for (const i of load.instances.slice(0, MAX_INSTANCE_SAMPLES)) {
      const bytes = figure(i.memoryBytes);
      if (bytes === undefined || seen.has(i.remoteInstanceId) || !instanceId.safeParse(i.remoteInstanceId).success) continue;
      seen.add(i.remoteInstanceId);
      const device = typeof i.device === 'string' && i.device.length <= 63 ? i.device : undefined;
      list.push({ remoteInstanceId: i.remoteInstanceId, memoryBytes: bytes, ...(device ? { device } : {}) });
    }
    if (list.length) out.instances = list;
  }
  return out;
}

/** A worker as the API shows it: the stored row, plus whether it is the gateway's own process and its last load report. */
export interface WorkerView extends WorkerRow {
  embedded: boolean;
  load?: WorkerLoad;
}

/** The built-in worker: backends that run inside the gateway process (tfjs under `npm start`). */
export const EMBEDDED_WORKER_ID = 'embedded';
/** statusReason of instances taken out of routing because their worker stopped heartbeating. */
export const HEARTBEAT_LOST = 'worker heartbeat lost';
/** statusReason of instances whose worker deregistered (SIGTERM). */
export const WORKER_STOPPED = 'worker stopped';
/** A worker is unhealthy when its last heartbeat is older than this many intervals. */
const MISSED_HEARTBEATS = 2.5;

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, ".", "_" or "-", at most 63 characters');
/** A worker name as an operator or a credential gives it (the worker id is its lower-case form). */
export const workerNameSchema = name;
const session = z.string().regex(WORKER_SESSION_PATTERN, '16 to 64 letters, digits, "_" or "-"');
const instanceId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lower-case letters, digits, ".", "_" or "-", at most 63 characters');
const httpUrl = z
  .string()
  .max(2048)
  .url()
  .refine((u) => /^https?:\/\//.test(u), 'an http(s) URL');

export const registerWorkerSchema = z.strictObject({
  name,
  endpoint: httpUrl,
  /** Random per worker process; with the endpoint, it selects the call token the gateway presents to this process. */
  session,
  devices: z
    .array(
      z.strictObject({
        id: z.string().min(1).max(63),
        kind: z.enum(['cpu', 'gpu', 'tpu', 'remote']),
        name: z.string().max(200).optional(),
        memoryTotalBytes: z.number().min(0).optional(),
      }),
    )
    .max(64)
    .default([]),
  heartbeatIntervalMs: z.number().int().min(50).max(600_000),
  instances: z
    .array(
      z.strictObject({
        model: instanceId,
        version: name,
        remoteInstanceId: instanceId,
        task: z.enum(TASKS),
        runtime: z.string().max(63).optional(),
        device: z.string().max(63).optional(),
      }),
    )
    .max(256)
    .default([]),
});
export type RegisterWorkerInput = z.input<typeof registerWorkerSchema>;
export type RegisterWorker = z.infer<typeof registerWorkerSchema>;

export const workerCallTokenSchema = z.strictObject({ name, endpoint: httpUrl, session });

/** Instance options of a worker's instance on the gateway (non-secret: the call token is derived from them and the gateway's key). */
export interface WorkerInstanceOptions {
  remoteInstanceId: string;
  worker: string;
  session: string;
}

export const workerLoadCommandSchema = z.strictObject({
  model: instanceId,
  version: name.default('v1'),
  task: z.enum(TASKS).default('generate'),
  /** Where the worker's backend finds the model (folder, model.json, URL). */
  source: z.string().min(1).optional(),
  backend: z.string().min(1).default('tfjs'),
  device: z.string().optional(),
  options: z.record(z.string(), z.unknown()).default({}),
  /** Instance id on the worker (default `<model>-<version>`). */
  instanceId: instanceId.optional(),
});

/** What a LOAD command carries in WorkerCommand.options (the bus payload is shared with other replicas). */
export interface WorkerCommandOptions {
  commandId: string;
  backend?: string;
  task?: string;
  device?: string;
  instanceOptions?: Record<string, unknown>;
}

/** Gateway instance id of a worker's instance: `<worker>.<remote id>`, lower case, at most 63 characters. */
export function workerInstanceId(workerId: string, remoteInstanceId: string): string {
  return `${workerId}.${remoteInstanceId}`
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '-')
    .slice(0, 63);
}

export function workerIdOf(workerName: string): string {
  return workerName.toLowerCase();
}

/** Longest wait of the watchdog between sweeps, ms (it runs at a quarter of the shortest heartbeat interval). */
const MAX_SWEEP_MS = 1000;

/**
 * Gateway side of worker processes: the `workers` table (registration, heartbeats, stop), the
 * load each worker reports, the watchdog that takes silent workers' instances out of routing
 * (through the Fleet), and the command channel (event bus → `workerCommands` subscription).
 * What a registration or a command does to models and instances is AdminService's.
 */
export class WorkerRegistry {
  private readonly loads = new Map<string, WorkerLoad>();
  private readonly loadListeners = new Set<(workerId: string) => void>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly localBackends = new Map<string, boolean>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private minIntervalMs = Number.POSITIVE_INFINITY;
  private closed = false;
  private sweeping: Promise<void> | undefined;

  constructor(
    private readonly database: Database,
    private readonly registry: ModelRegistry,
    private readonly fleet: Fleet,
    private readonly plugins: PluginHost,
    private readonly events: EventBus,
    private readonly logger: Logger,
  ) {}

  private get db() {
    return this.database.db;
  }

  /** Runs fn after every earlier operation on the same worker (registration, heartbeat, deregistration, watchdog). */
  inOrder<T>(workerId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(workerId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    const tail = next.catch(() => {});
    this.queues.set(workerId, tail);
    void tail.then(() => {
      if (this.queues.get(workerId) === tail) this.queues.delete(workerId);
    });
    return next;
  }

  private view(row: WorkerRow): WorkerView {
    const load = this.loads.get(row.id);
    return load ? { ...row, embedded: false, load } : { ...row, embedded: false };
  }

  private noteInterval(ms: number): void {
    if (ms < this.minIntervalMs) {
      this.minIntervalMs = ms;
      // a faster worker arrived: sweep sooner than planned
      if (this.timer) this.schedule();
    }
  }

  // ─────────────── queries ───────────────

  /** Calls fn after each heartbeat load is recorded and when a worker's load is forgotten (stopped, removed); returns an unsubscribe. */
  onLoad(fn: (workerId: string) => void): () => void {
    this.loadListeners.add(fn);
    return () => this.loadListeners.delete(fn);
  }

  private loadChanged(workerId: string): void {
    for (const fn of this.loadListeners) {
      try {
        fn(workerId);
      } catch (err) {
        this.logger.warn({ err, worker: workerId }, 'load listener failed');
      }
    }
  }

  /** The last load each worker reported, by worker id (in memory; the metrics history samples it). */
  loadReports(): ReadonlyMap<string, WorkerLoad> {
    return this.loads;
  }

  async list(): Promise<WorkerView[]> {
    const rows = await this.db.select().from(workers).orderBy(asc(workers.createdAt), asc(workers.id));
    return [await this.embedded(), ...rows.map((r) => this.view(r))];
  }

  async get(workerId: string): Promise<WorkerView | undefined> {
    if (workerId === EMBEDDED_WORKER_ID) return this.embedded();
    const [row] = await this.db.select().from(workers).where(eq(workers.id, workerId));
    return row ? this.view(row) : undefined;
  }

  async require(workerId: string): Promise<WorkerView> {
    const w = await this.get(workerId);
    if (!w) throw new McpError('MCP_WORKER_NOT_FOUND', `no worker "${workerId}"`, { details: { worker: workerId } });
    return w;
  }

  /** Instances per worker, for DataLoader (`embedded`: instances of in-process backends). */
  async instancesByWorker(workerIds: readonly string[]): Promise<InstanceRow[][]> {
    const remote = await this.registry.instancesByWorker(workerIds.filter((w) => w !== EMBEDDED_WORKER_ID));
    let local: InstanceRow[] = [];
    if (workerIds.includes(EMBEDDED_WORKER_ID)) {
      const unowned = await this.registry.instancesWithoutWorker();
      const flags = await Promise.all(unowned.map((r) => this.isLocalBackend(r.backend)));
      local = unowned.filter((_, i) => flags[i]);
    }
    let next = 0;
    return workerIds.map((w) => (w === EMBEDDED_WORKER_ID ? local : remote[next++]!));
  }

  /** In-process backends (tfjs, example plugins) report local devices or none; remote ones only `remote`. */
  async isLocalBackend(backend: string): Promise<boolean> {
    const known = this.localBackends.get(backend);
    if (known !== undefined) return known;
    let local = false;
    if (this.plugins.has('backend', backend)) {
      const devices = await Promise.resolve(this.plugins.get('backend', backend).devices?.()).catch(() => undefined);
      local = !devices || devices.length === 0 || devices.some((d) => d.kind !== 'remote');
    }
    this.localBackends.set(backend, local);
    return local;
  }

  /** The gateway's own process, shown as a worker: it runs the in-process backends (tfjs) through the Fleet. */
  private async embedded(): Promise<WorkerView> {
    const devices: WorkerRow['devices'] = [];
    const seen = new Set<string>();
    for (const backend of this.plugins.names('backend')) {
      if (!(await this.isLocalBackend(backend))) continue;
      const list: DeviceInfo[] = (await Promise.resolve(this.plugins.get('backend', backend).devices?.()).catch(() => undefined)) ?? [];
      for (const d of list) {
        if (seen.has(d.id)) continue;
        seen.add(d.id);
        devices.push({
          id: d.id,
          kind: d.kind,
          ...(d.name ? { name: d.name } : {}),
          ...(d.memoryTotalBytes !== undefined ? { memoryTotalBytes: d.memoryTotalBytes } : {}),
        });
      }
    }
    const now = new Date();
    return {
      id: EMBEDDED_WORKER_ID,
      name: EMBEDDED_WORKER_ID,
      endpoint: 'in-process',
      devices,
      status: 'healthy',
      heartbeatIntervalMs: 0,
      lastHeartbeatAt: now,
      createdAt: now,
      embedded: true,
    };
  }

  // ─────────────── registration and heartbeats ───────────────

  /** Upserts the worker's row as healthy, heartbeating now (call inside inOrder). */
  async upsert(workerId: string, input: RegisterWorker): Promise<WorkerView> {
    const now = new Date();
    const set = {
      name: input.name,
      endpoint: input.endpoint,
      devices: input.devices,
      status: 'healthy',
      heartbeatIntervalMs: input.heartbeatIntervalMs,
      lastHeartbeatAt: now,
    };
    const [row] = await this.db
      .insert(workers)
      .values({ id: workerId, ...set })
      .onConflictDoUpdate({ target: workers.id, set })
      .returning();
    this.noteInterval(input.heartbeatIntervalMs);
    return this.view(row!);
  }

  /**
   * Records a heartbeat (and the load it reports) of a registered, not stopped worker; returns the
   * worker and the status it had before (call inside inOrder).
   */
  async recordHeartbeat(workerId: string, load?: HeartbeatLoad): Promise<{ worker: WorkerView; was: WorkerStatus }> {
    const [before] = await this.db.select().from(workers).where(eq(workers.id, workerId));
    if (!before) throw new McpError('MCP_WORKER_NOT_FOUND', `no worker "${workerId}": register first`, { details: { worker: workerId } });
    if (before.status === 'stopped')
      throw new McpError('MCP_WORKER_NOT_FOUND', `worker "${workerId}" deregistered: register again`, { details: { worker: workerId } });
    const [row] = await this.db.update(workers).set({ lastHeartbeatAt: new Date(), status: 'healthy' }).where(eq(workers.id, workerId)).returning();
    this.noteInterval(before.heartbeatIntervalMs);
    if (load) {
      this.loads.set(workerId, loadOf(load, before.devices));
      this.loadChanged(workerId);
    }
    return { worker: this.view(row!), was: before.status as WorkerStatus };
  }

  /** Marks the worker stopped (deregistered) and forgets its load report; the row stays (call inside inOrder). */
  async markStopped(workerId: string): Promise<WorkerView> {
    const [row] = await this.db.update(workers).set({ status: 'stopped' }).where(eq(workers.id, workerId)).returning();
    if (!row) throw new McpError('MCP_WORKER_NOT_FOUND', `no worker "${workerId}"`, { details: { worker: workerId } });
    this.loads.delete(workerId);
    this.loadChanged(workerId);
    return this.view(row);
  }

  /**
   * Deletes the worker's row and its model assignments, unless it is heartbeating (`healthy`: a
   * registration another replica just accepted wins). Answers with the deleted row, or undefined
   * when nothing was deleted (call inside inOrder).
   */
  async deleteGone(workerId: string): Promise<WorkerView | undefined> {
    const [row] = await this.db
      .delete(workers)
      .where(and(eq(workers.id, workerId), ne(workers.status, 'healthy')))
      .returning();
    if (!row) return undefined;
    await this.db.delete(workerModels).where(eq(workerModels.worker, workerId));
    this.loads.delete(workerId);
    this.loadChanged(workerId);
    return this.view(row);
  }

  /** Workers stopped or not heartbeating whose last heartbeat is older than `before`. */
  async goneSince(before: Date): Promise<WorkerRow[]> {
    return this.db
      .select()
      .from(workers)
      .where(and(ne(workers.status, 'healthy'), lt(workers.lastHeartbeatAt, before)));
  }

  // ─────────────── model assignments (worker_models) ───────────────

  /** Models an operator assigned to each worker (DataLoader order). */
  async assignedModels(workerIds: readonly string[]): Promise<string[][]> {
    const rows = workerIds.length
      ? await this.db
          .select()
          .from(workerModels)
          .where(inArray(workerModels.worker, [...workerIds]))
          .orderBy(asc(workerModels.modelId))
      : [];
    return workerIds.map((w) => rows.filter((r) => r.worker === w).map((r) => r.modelId));
  }

  async assign(workerId: string, modelIds: readonly string[]): Promise<void> {
    if (!modelIds.length) return;
    await this.db
      .insert(workerModels)
      .values(modelIds.map((modelId) => ({ worker: workerId, modelId })))
      .onConflictDoNothing();
  }

  async unassign(workerId: string, modelIds: readonly string[]): Promise<void> {
    if (!modelIds.length) return;
    await this.db.delete(workerModels).where(and(eq(workerModels.worker, workerId), inArray(workerModels.modelId, [...modelIds])));
  }

  // ─────────────── gateway → worker call tokens ───────────────

  /** The token the gateway presents to this worker process; computed by the `worker` backend plugin (which alone holds the key). */
  async callToken(workerId: string, sessionId: string, endpoint: string): Promise<string> {
    const backend = this.plugins.has('backend', 'worker') ? this.plugins.get('backend', 'worker') : undefined;
    if (!isWorkerCallSigner(backend)) {
      throw new McpError('MCP_UNKNOWN_PLUGIN', 'the gateway has no `worker` backend plugin: it cannot call worker processes', {
        details: { plugin: 'worker' },
      });
    }
    return backend.workerCallToken(workerId, sessionId, endpoint);
  }

  // ─────────────── watchdog ───────────────

  /** Marks workers whose last heartbeat is older than MISSED_HEARTBEATS intervals unhealthy and takes their instances out of routing. */
  private async sweep(): Promise<void> {
    const rows = await this.db.select().from(workers).where(eq(workers.status, 'healthy'));
    for (const w of rows) {
      this.noteInterval(w.heartbeatIntervalMs);
      if (Date.now() - w.lastHeartbeatAt.getTime() <= MISSED_HEARTBEATS * w.heartbeatIntervalMs) continue;
      await this.inOrder(w.id, async () => {
        // re-check inside the queue: a heartbeat may have landed meanwhile
        const [cur] = await this.db.select().from(workers).where(eq(workers.id, w.id));
        if (!cur || cur.status !== 'healthy' || Date.now() - cur.lastHeartbeatAt.getTime() <= MISSED_HEARTBEATS * cur.heartbeatIntervalMs) return;
        await this.db.update(workers).set({ status: 'unhealthy' }).where(eq(workers.id, w.id));
        const [rowsOf = []] = await this.registry.instancesByWorker([w.id]);
        for (const inst of rowsOf) {
          if (inst.status === 'ready' || inst.status === 'loading' || inst.status === 'registered') await this.fleet.markFailed(inst.id, HEARTBEAT_LOST);
        }
        this.logger.warn(
          { worker: w.id, lastHeartbeatAt: cur.lastHeartbeatAt, intervalMs: cur.heartbeatIntervalMs },
          'worker stopped heartbeating: marked unhealthy',
        );
      });
    }
    await this.alignLocalHandles();
  }

  /** Another gateway replica may have marked a worker (shared database): this replica's Fleet follows. */
  private async alignLocalHandles(): Promise<void> {
    const all = await this.db.select({ id: workers.id, status: workers.status }).from(workers);
    const rows = await this.registry.instancesByWorker(all.map((w) => w.id));
    this.fleet.followWorkers(
      all.flatMap((w, i) =>
        (rows[i] ?? []).map((r) => ({
          instanceId: r.id,
          status: r.status,
          workerHealthy: w.status === 'healthy',
        })),
      ),
    );
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    const delay = Math.max(25, Math.min(MAX_SWEEP_MS, Math.floor(this.minIntervalMs / 4)));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sweeping = this.sweep()
        // An unreachable database is logged once per outage by the storage health, not at every sweep.
        .catch((err) =>
          storageFailure(err)
            ? this.logger.debug({ reason: storageFailureReason(err) }, 'worker watchdog sweep failed: storage unavailable')
            : this.logger.warn({ err }, 'worker watchdog sweep failed'),
        )
        .finally(() => {
          this.sweeping = undefined;
          this.schedule();
        });
    }, delay);
    this.timer.unref?.();
  }

  /** Starts the watchdog (every quarter of the shortest heartbeat interval, at most MAX_SWEEP_MS). */
  startWatchdog(): void {
    this.schedule();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.sweeping;
  }

  // ─────────────── commands ───────────────

  /** The commands for one worker, as they are issued (the `workerCommands` subscription). */
  async *commands(workerId: string, signal: AbortSignal): AsyncGenerator<WorkerCommand> {
    for await (const c of this.events.subscribe('workerCommands', signal)) if (c.workerId === workerId) yield c;
  }

  /** Sends a command to its worker (every replica delivers it to the worker's subscription). */
  send(command: WorkerCommand): void {
    this.events.publish('workerCommands', command);
    const { workerId: worker, action, modelId: model, version } = command;
    this.logger.info({ worker, action, model, version }, `${action} command sent to worker`);
  }
}
