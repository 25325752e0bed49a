import { randomUUID } from 'node:crypto';
import { and, asc, eq, inArray, isNull } from 'drizzle-orm';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Database } from '../db/client.ts';
import { instances, workers } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import type { EventBus, WorkerCommand } from '../events/bus.ts';
import type { Fleet } from '../models/fleet.ts';
import { parseInput, TASKS, type InstanceRow, type ModelRegistry } from '../models/registry.ts';
import type { DeviceInfo } from '../plugin/contract.ts';
import type { PluginHost } from '../plugin/host.ts';

export type WorkerRow = typeof workers.$inferSelect;
export type WorkerStatus = 'healthy' | 'unhealthy' | 'stopped';

/** Load figures a worker reports with each heartbeat (kept in memory, not stored). */
export interface WorkerLoad {
  /** Requests running on the worker now. */
  inflight: number;
  /** Requests served since the worker started. */
  requestsTotal: number;
  at: Date;
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
export const MISSED_HEARTBEATS = 2.5;

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, ".", "_" or "-", at most 63 characters');
const instanceId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lower-case letters, digits, ".", "_" or "-", at most 63 characters');
const httpUrl = z.string().url().refine((u) => /^https?:\/\//.test(u), 'an http(s) URL');

export const registerWorkerSchema = z.strictObject({
  name,
  endpoint: httpUrl,
  devices: z.array(z.strictObject({
    id: z.string().min(1).max(63),
    kind: z.enum(['cpu', 'gpu', 'tpu', 'remote']),
    name: z.string().max(200).optional(),
    memoryTotalBytes: z.number().min(0).optional(),
  })).max(64).default([]),
  heartbeatIntervalMs: z.number().int().min(50).max(600_000),
  instances: z.array(z.strictObject({
    model: instanceId,
    version: name,
    remoteInstanceId: instanceId,
    task: z.enum(TASKS),
    runtime: z.string().max(63).optional(),
    device: z.string().max(63).optional(),
  })).max(256).default([]),
});
export type RegisterWorkerInput = z.input<typeof registerWorkerSchema>;

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
  return `${workerId}.${remoteInstanceId}`.toLowerCase().replace(/[^a-z0-9._-]/g, '-').slice(0, 63);
}

export function workerIdOf(workerName: string): string {
  return workerName.toLowerCase();
}

export interface WorkerRegistryOptions {
  /** Longest wait of the watchdog between sweeps, ms (it runs at a quarter of the shortest heartbeat interval). */
  maxSweepMs?: number;
  /** How long unloadFromWorker waits for in-flight requests before unloading, ms. */
  drainMs?: number;
}

/**
 * Gateway side of worker processes: registration (worker row + one `worker`-backend instance per
 * model the worker serves, loaded through the Fleet so the router routes to it), heartbeats, the
 * watchdog that takes silent workers out of routing, and load/unload commands (event bus →
 * `workerCommands` subscription).
 */
export class WorkerRegistry {
  private readonly loads = new Map<string, WorkerLoad>();
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
    private readonly options: WorkerRegistryOptions = {},
  ) {}

  private get db() {
    return this.database.db;
  }

  /** Runs fn after every earlier operation on the same worker (register, heartbeat, watchdog). */
  private serial<T>(workerId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(workerId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(fn);
    const tail = next.catch(() => {});
    this.queues.set(workerId, tail);
    void tail.then(() => { if (this.queues.get(workerId) === tail) this.queues.delete(workerId); });
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
    const remote = workerIds.filter((w) => w !== EMBEDDED_WORKER_ID);
    const rows = remote.length
      ? await this.db.select().from(instances).where(inArray(instances.workerId, remote)).orderBy(asc(instances.createdAt), asc(instances.id))
      : [];
    let local: InstanceRow[] = [];
    if (workerIds.includes(EMBEDDED_WORKER_ID)) {
      const unowned = await this.db.select().from(instances).where(isNull(instances.workerId)).orderBy(asc(instances.createdAt), asc(instances.id));
      const flags = await Promise.all(unowned.map((r) => this.isLocalBackend(r.backend)));
      local = unowned.filter((_, i) => flags[i]);
    }
    return workerIds.map((w) => (w === EMBEDDED_WORKER_ID ? local : rows.filter((r) => r.workerId === w)));
  }

  /** In-process backends (tfjs, example plugins) report local devices or none; remote ones only `remote`. */
  private async isLocalBackend(backend: string): Promise<boolean> {
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
        devices.push({ id: d.id, kind: d.kind, ...(d.name ? { name: d.name } : {}), ...(d.memoryTotalBytes !== undefined ? { memoryTotalBytes: d.memoryTotalBytes } : {}) });
      }
    }
    const now = new Date();
    return {
      id: EMBEDDED_WORKER_ID, name: EMBEDDED_WORKER_ID, endpoint: 'in-process', devices, status: 'healthy',
      heartbeatIntervalMs: 0, lastHeartbeatAt: now, createdAt: now, embedded: true,
    };
  }

  // ─────────────── registration and heartbeats ───────────────

  /**
   * Upserts the worker and its instances (registering missing models and versions), loads them
   * through the Fleet, and unloads instances the worker no longer serves. Idempotent: a worker
   * re-registers after every restart and after every load/unload command.
   */
  async register(raw: unknown): Promise<WorkerView> {
    const input = parseInput(registerWorkerSchema, raw);
    const workerId = workerIdOf(input.name);
    if (workerId === EMBEDDED_WORKER_ID) {
      throw new McpError('MCP_VALIDATION_FAILED', `input.name: "${EMBEDDED_WORKER_ID}" is reserved for the gateway's own process`, { details: { path: 'input.name' } });
    }
    const remoteIds = input.instances.map((i) => i.remoteInstanceId);
    const dup = remoteIds.find((r, i) => remoteIds.indexOf(r) !== i);
    if (dup) throw new McpError('MCP_VALIDATION_FAILED', `input.instances: remoteInstanceId "${dup}" is listed twice`, { details: { path: 'input.instances' } });
    return this.serial(workerId, async () => {
      const now = new Date();
      const [row] = await this.db.insert(workers).values({
        id: workerId, name: input.name, endpoint: input.endpoint, devices: input.devices, status: 'healthy',
        heartbeatIntervalMs: input.heartbeatIntervalMs, lastHeartbeatAt: now,
      }).onConflictDoUpdate({
        target: workers.id,
        set: { name: input.name, endpoint: input.endpoint, devices: input.devices, status: 'healthy', heartbeatIntervalMs: input.heartbeatIntervalMs, lastHeartbeatAt: now },
      }).returning();
      this.noteInterval(input.heartbeatIntervalMs);
      const previous = await this.db.select().from(instances).where(eq(instances.workerId, workerId));
      const keep = new Set<string>();
      for (const inst of input.instances) {
        const id = workerInstanceId(workerId, inst.remoteInstanceId);
        keep.add(id);
        try {
          await this.upsertInstance(workerId, input.endpoint, id, inst);
        } catch (err) {
          this.logger.warn({ err, worker: workerId, instance: id }, 'worker instance not registered');
        }
      }
      for (const old of previous) {
        if (keep.has(old.id) || old.status === 'unloaded') continue;
        await this.takeOut(old.id, 'unloaded', 'no longer served by the worker');
      }
      this.logger.info({ worker: workerId, endpoint: input.endpoint, instances: input.instances.length }, 'worker registered');
      return this.view(row!);
    });
  }

  private async upsertInstance(workerId: string, endpoint: string, id: string, inst: z.infer<typeof registerWorkerSchema>['instances'][number]): Promise<void> {
    if (!(await this.registry.get(inst.model))) {
      try {
        await this.registry.register({ id: inst.model, task: inst.task, labels: { 'registered-by': 'worker' }, versions: [] });
      } catch (err) {
        if (!(err instanceof McpError && err.code === 'MCP_DUPLICATE_ID')) throw err;
      }
    }
    const version = await this.registry.requireVersion(inst.model, inst.version).catch(async (err: unknown) => {
      if (!(err instanceof McpError && err.code === 'MCP_VERSION_NOT_FOUND')) throw err;
      return this.registry.addVersion(inst.model, { version: inst.version }).catch(async (e: unknown) => {
        if (e instanceof McpError && e.code === 'MCP_DUPLICATE_ID') return this.registry.requireVersion(inst.model, inst.version);
        throw e;
      });
    });
    const options = { remoteInstanceId: inst.remoteInstanceId };
    let existing = await this.registry.getInstance(id);
    if (existing && existing.versionId !== version.id) {
      // the worker now serves another model under this instance id
      await this.fleet.unload(id).catch(() => {});
      await this.registry.removeInstance(id);
      existing = undefined;
    }
    let reload = false;
    if (!existing) {
      await this.registry.addInstance(inst.model, inst.version, { id, backend: 'worker', endpoint, ...(inst.device ? { device: inst.device } : {}), options });
    } else {
      reload = existing.endpoint !== endpoint || existing.backend !== 'worker';
    }
    await this.db.update(instances).set({
      workerId, endpoint, backend: 'worker', options, updatedAt: new Date(),
      ...(inst.device ? { device: inst.device } : {}), ...(inst.runtime ? { runtime: inst.runtime } : {}),
    }).where(eq(instances.id, id));
    if (reload && this.fleet.handle(id)?.loaded) await this.fleet.unload(id);
    await this.fleet.load(id);
  }

  /** Records a heartbeat; a worker coming back from `unhealthy` gets its instances back into routing. */
  async heartbeat(workerId: string, load?: { inflight?: number | null; requestsTotal?: number | null }): Promise<WorkerView> {
    if (workerId === EMBEDDED_WORKER_ID) return this.embedded();
    return this.serial(workerId, async () => {
      const [before] = await this.db.select().from(workers).where(eq(workers.id, workerId));
      if (!before) throw new McpError('MCP_WORKER_NOT_FOUND', `no worker "${workerId}": register first`, { details: { worker: workerId } });
      if (before.status === 'stopped') throw new McpError('MCP_WORKER_NOT_FOUND', `worker "${workerId}" deregistered: register again`, { details: { worker: workerId } });
      const [row] = await this.db.update(workers).set({ lastHeartbeatAt: new Date(), status: 'healthy' }).where(eq(workers.id, workerId)).returning();
      this.noteInterval(before.heartbeatIntervalMs);
      if (load) this.loads.set(workerId, { inflight: load.inflight ?? 0, requestsTotal: load.requestsTotal ?? 0, at: new Date() });
      if (before.status === 'unhealthy') {
        const lost = await this.db.select().from(instances).where(and(eq(instances.workerId, workerId), eq(instances.status, 'failed'), eq(instances.statusReason, HEARTBEAT_LOST)));
        for (const inst of lost) {
          await this.fleet.load(inst.id).catch((err) => this.logger.warn({ err, instance: inst.id }, 'worker instance did not come back'));
        }
        this.logger.info({ worker: workerId, instances: lost.length }, 'worker heartbeats are back');
      }
      return this.view(row!);
    });
  }

  /** A worker shutting down (SIGTERM): its instances leave routing at once, the row stays as `stopped`. */
  async deregister(workerId: string): Promise<WorkerView> {
    if (workerId === EMBEDDED_WORKER_ID) throw new McpError('MCP_CONFLICT', 'the embedded worker stops with the gateway');
    return this.serial(workerId, async () => {
      const [row] = await this.db.update(workers).set({ status: 'stopped' }).where(eq(workers.id, workerId)).returning();
      if (!row) throw new McpError('MCP_WORKER_NOT_FOUND', `no worker "${workerId}"`, { details: { worker: workerId } });
      const rows = await this.db.select().from(instances).where(eq(instances.workerId, workerId));
      for (const inst of rows) if (inst.status !== 'unloaded') await this.takeOut(inst.id, 'unloaded', WORKER_STOPPED);
      this.loads.delete(workerId);
      this.logger.info({ worker: workerId }, 'worker deregistered');
      return this.view(row);
    });
  }

  /** Stops routing to an instance now (the router reads the in-memory handle), then records why. */
  private async takeOut(id: string, status: 'failed' | 'unloaded', reason: string): Promise<void> {
    const h = this.fleet.handle(id);
    if (h) h.status = status;
    if (status === 'unloaded') await this.fleet.unload(id).catch((err) => this.logger.warn({ err, instance: id }, 'unload failed'));
    await this.registry.setInstanceStatus(id, status, { reason });
  }

  // ─────────────── watchdog ───────────────

  /** Marks workers whose last heartbeat is older than MISSED_HEARTBEATS intervals unhealthy; returns their ids. */
  async sweep(now = Date.now()): Promise<string[]> {
    const rows = await this.db.select().from(workers).where(eq(workers.status, 'healthy'));
    const lapsed: string[] = [];
    for (const w of rows) {
      this.noteInterval(w.heartbeatIntervalMs);
      if (now - w.lastHeartbeatAt.getTime() <= MISSED_HEARTBEATS * w.heartbeatIntervalMs) continue;
      const marked = await this.serial(w.id, async () => {
        // re-check inside the queue: a heartbeat may have landed meanwhile
        const [cur] = await this.db.select().from(workers).where(eq(workers.id, w.id));
        if (!cur || cur.status !== 'healthy' || Date.now() - cur.lastHeartbeatAt.getTime() <= MISSED_HEARTBEATS * cur.heartbeatIntervalMs) return false;
        await this.db.update(workers).set({ status: 'unhealthy' }).where(eq(workers.id, w.id));
        const rowsOf = await this.db.select().from(instances).where(eq(instances.workerId, w.id));
        for (const inst of rowsOf) {
          if (inst.status === 'ready' || inst.status === 'loading' || inst.status === 'registered') await this.takeOut(inst.id, 'failed', HEARTBEAT_LOST);
        }
        this.logger.warn({ worker: w.id, lastHeartbeatAt: cur.lastHeartbeatAt, intervalMs: cur.heartbeatIntervalMs }, 'worker stopped heartbeating: marked unhealthy');
        return true;
      });
      if (marked) lapsed.push(w.id);
    }
    await this.alignLocalHandles();
    return lapsed;
  }

  /**
   * Another gateway replica may have marked a worker (shared database): make this replica's
   * in-memory handles agree — no routing to instances of unhealthy/stopped workers, and
   * instances taken out for a lost heartbeat come back once the worker is healthy again.
   */
  private async alignLocalHandles(): Promise<void> {
    const rows = await this.db.select({ id: instances.id, status: instances.status, reason: instances.statusReason, worker: workers.status })
      .from(instances).innerJoin(workers, eq(instances.workerId, workers.id));
    for (const r of rows) {
      const h = this.fleet.handle(r.id);
      if (!h?.loaded) continue;
      if (r.worker !== 'healthy' && h.status === 'ready') h.status = r.status === 'unloaded' ? 'unloaded' : 'failed';
      else if (r.worker === 'healthy' && r.status === 'ready' && h.status === 'failed') h.status = 'ready';
    }
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    const maxSweep = this.options.maxSweepMs ?? 1000;
    const delay = Math.max(25, Math.min(maxSweep, Math.floor(this.minIntervalMs / 4)));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sweeping = this.sweep().then(() => {}, (err) => this.logger.warn({ err }, 'worker watchdog sweep failed')).finally(() => {
        this.sweeping = undefined;
        this.schedule();
      });
    }, delay);
    this.timer.unref?.();
  }

  /** Starts the watchdog (every quarter of the shortest heartbeat interval, at most maxSweepMs). */
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

  /** Asks a worker to load a model (it loads, then re-registers); on `embedded` the gateway loads it itself. */
  async loadOnWorker(workerId: string, raw: unknown): Promise<WorkerCommand> {
    const input = parseInput(workerLoadCommandSchema, raw);
    const remoteId = input.instanceId ?? `${input.model}-${input.version}`.toLowerCase().replace(/[^a-z0-9._-]/g, '-').slice(0, 63);
    const options: WorkerCommandOptions = { commandId: randomUUID(), backend: input.backend, task: input.task, instanceOptions: input.options };
    if (input.device) options.device = input.device;
    const command: WorkerCommand = {
      workerId, action: 'LOAD', instanceId: remoteId, modelId: input.model, version: input.version,
      ...(input.source ? { endpoint: input.source } : {}), options: options as unknown as Record<string, unknown>,
    };
    if (workerId === EMBEDDED_WORKER_ID) {
      if (!(await this.isLocalBackend(input.backend))) {
        throw new McpError('MCP_UNKNOWN_PLUGIN', `backend "${input.backend}" does not run in the gateway process`, { details: { path: 'backend' } });
      }
      if (!(await this.registry.get(input.model))) await this.registry.register({ id: input.model, task: input.task, versions: [] });
      await this.registry.requireVersion(input.model, input.version).catch(() => this.registry.addVersion(input.model, { version: input.version }));
      const id = workerInstanceId(EMBEDDED_WORKER_ID, remoteId);
      if (!(await this.registry.getInstance(id))) {
        await this.registry.addInstance(input.model, input.version, {
          id, backend: input.backend, options: input.options, ...(input.source ? { endpoint: input.source } : {}), ...(input.device ? { device: input.device } : {}),
        });
      }
      await this.fleet.load(id);
      return { ...command, instanceId: id };
    }
    const w = await this.require(workerId);
    if (w.status === 'stopped') throw new McpError('MCP_CONFLICT', `worker "${workerId}" is stopped`, { details: { worker: workerId } });
    this.events.publish('workerCommands', command);
    this.logger.info({ worker: workerId, model: input.model, version: input.version }, 'LOAD command sent to worker');
    return command;
  }

  /**
   * Takes one of a worker's instances (gateway instance id or the worker's own id) out of routing,
   * waits for its in-flight requests, unloads it and tells the worker to release it.
   */
  async unloadFromWorker(workerId: string, instance: string): Promise<WorkerCommand> {
    const w = await this.require(workerId);
    const rows = (await this.instancesByWorker([workerId]))[0] ?? [];
    const row = rows.find((r) => r.id === instance || (r.options as { remoteInstanceId?: string }).remoteInstanceId === instance);
    if (!row) throw new McpError('MCP_INSTANCE_NOT_FOUND', `worker "${workerId}" has no instance "${instance}"`, { details: { worker: workerId, instance } });
    const version = (await this.registry.requireInstance(row.id)).version;
    if (this.fleet.handle(row.id)) await this.fleet.drain(row.id, this.options.drainMs ?? 10_000);
    await this.fleet.unload(row.id);
    const remoteId = (row.options as { remoteInstanceId?: string }).remoteInstanceId ?? row.id;
    const command: WorkerCommand = {
      workerId, action: 'UNLOAD', instanceId: w.embedded ? row.id : remoteId, modelId: row.modelId, version,
      options: { commandId: randomUUID() },
    };
    if (!w.embedded) this.events.publish('workerCommands', command);
    return command;
  }
}
