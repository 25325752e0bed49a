/**
 * The placement reconciler: keeps every model version that states resource requirements at its
 * replica count on healthy workers. Each round (every placement.intervalMs, and soon after any
 * registry change) it reads the workers' devices (PlacementInventory), the instances placed now
 * with what they reserve, asks the engine (placement.ts) where missing replicas go, evicts what the
 * plan evicts (UNLOAD) and places the rest (LOAD) through the AdminService, the way an operator
 * would. Instances of a worker that died (heartbeat lost, deregistered) stop counting, so they are
 * placed again on the others. Replicas beyond the count are trimmed: drained first (the router stops
 * sending them requests and those in flight finish, up to the drain time), then unloaded, in the
 * background so a drain does not hold the round. The `instances` scaling actuator changes the count
 * with `setReplicas`. One replica at a time runs it, under the `placement-reconciler` lease.
 * Placements, evictions and shortfalls go out on `modelEvents`.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AdminService } from '../admin/admin-service.ts';
import { LeaderLease } from '../db/lease.ts';
import type { Config } from '../config/schema.ts';
import { logBackgroundFailure } from '../db/storage-errors.ts';
import { McpError, toMcpError } from '../errors.ts';
import type { EventBus, ModelEvent } from '../events/bus.ts';
import type { Fleet } from '../models/fleet.ts';
import type { InstanceRow, ModelRegistry, VersionRow } from '../models/registry.ts';
import { workerInstanceId, type WorkerRegistry } from '../workers/worker-registry.ts';
import { MemoryAccounting } from './memory-accounting.ts';
import { planPlacement, type PlacedInstance, type PlacementInventory, type PlacementPlan, type PlacementWorker } from './placement.ts';
import { deviceKey } from './inventory.ts';
import { parseRequirements, reservedBytes, type ResourceRequirements } from './requirements.ts';

/** Instance statuses that hold (or will hold) memory on their worker. */
const LIVE = new Set(['ready', 'loading', 'registered', 'draining']);

/**
 * The default inventory: devices as workers registered them, used memory from their last heartbeat.
 * (Commands are not queued: a LOAD sent before the worker subscribed is lost, and retried once its
 * pending time runs out.)
 */
export class WorkerInventory implements PlacementInventory {
  constructor(private readonly registry: Pick<WorkerRegistry, 'list' | 'loadReports'>) {}

  async workers(): Promise<PlacementWorker[]> {
    const reports = this.registry.loadReports();
    return (await this.registry.list())
      .filter((w) => !w.embedded)
      .map((w) => ({
        id: w.id,
        // a worker takes placements once it heartbeated since registering: by then it listens for commands
        healthy: w.status === 'healthy' && reports.has(w.id),
        devices: w.devices.map((d) => ({
          id: d.id,
          kind: d.kind,
          memoryTotalBytes: d.memoryTotalBytes,
          memoryUsedBytes: reports.get(w.id)?.deviceMemoryUsedBytes?.get(d.id),
        })),
      }));
  }
}

/** One instance as the `placements` query shows it. */
export interface PlacementView extends PlacedInstance {
  status: string;
  /** A LOAD sent, the worker has not registered the instance yet. */
  pending: boolean;
}

interface Pending {
  placed: PlacedInstance;
  sentAt: number;
  until: number;
}

interface MemoryCheck {
  kind: 'load' | 'unload';
  workerId: string;
  instanceId: string;
  modelId: string;
  version: string;
  before: ReadonlyMap<string, number>;
  after: number;
  /** The first heartbeat newer than the command; the check runs at a later one (the worker had a beat to act). */
  firstReport?: number;
  giveUpAt: number;
}

export interface ReconcilerOptions {
  registry: ModelRegistry;
  fleet: Pick<Fleet, 'handle'>;
  workers: Pick<WorkerRegistry, 'list' | 'loadReports' | 'instancesByWorker'>;
  admin: Pick<AdminService, 'loadModelOnWorker' | 'unloadFromWorker' | 'drainInstance'>;
  events: EventBus;
  lease: LeaderLease;
  inventory: PlacementInventory;
  accounting: MemoryAccounting;
  config: Config['placement'];
  logger: Logger;
}

interface State {
  workers: PlacementWorker[];
  placed: PlacementView[];
}

export class PlacementReconciler {
  private readonly pending = new Map<string, Pending>();
  private readonly checks: MemoryCheck[] = [];
  private readonly lastFailure = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private leaseValidUntil = 0;
  private closed = false;
  private readonly abort = new AbortController();
  /** Bytes reserved per `<worker>/<device>` as of the last round (every replica computes it): the inventory's `reserved`. */
  private reserved: ReadonlyMap<string, number> = new Map();
  /** Replicas being drained then unloaded (beyond the count): instance id → the work. */
  private readonly trimming = new Map<string, Promise<void>>();

  constructor(private readonly o: ReconcilerOptions) {}

  /** What placed instances reserve per `<worker>/<device>`, as of the last round (ResourceInventory.setReservations). */
  reservations(): ReadonlyMap<string, number> {
    return this.reserved;
  }

  get isLeader(): boolean {
    return Date.now() < this.leaseValidUntil;
  }

  /** Rounds every intervalMs, and soon after registry changes (other than its own events). */
  start(): void {
    if (!this.o.config.enabled) return;
    this.timer = setInterval(() => void this.kick(), this.o.config.intervalMs);
    this.timer.unref();
    void (async () => {
      for await (const e of this.o.events.subscribe('modelEvents', this.abort.signal)) {
        if (e.type !== 'INSTANCE_PLACED' && e.type !== 'INSTANCE_EVICTED' && e.type !== 'PLACEMENT_FAILED') void this.kick();
      }
    })().catch(() => {});
    void this.kick();
  }

  /** Runs a round now (or right after the one running); resolves when it is done. */
  kick(): Promise<void> {
    if (this.closed || !this.o.config.enabled) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.round().catch((err: unknown) => logBackgroundFailure(this.o.logger, err, {}, 'placement round failed'));
      } while (this.again && !this.closed);
    })().finally(() => (this.running = undefined));
    return this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await Promise.allSettled([...this.trimming.values()]);
    if (this.isLeader) await this.o.lease.release().catch(() => {});
    this.leaseValidUntil = 0;
  }

  // ─────────────── reads ───────────────

  /** Every instance on a worker with what it reserves, plus LOADs sent and not registered yet. */
  async placements(): Promise<PlacementView[]> {
    return (await this.state()).placed;
  }

  private requirementsOf(modelId: string, versionId: string): { version: VersionRow; resources: ResourceRequirements | null } | undefined {
    const version = this.o.registry.versionsOf(modelId).find((v) => v.id === versionId);
    return version ? { version, resources: version.resources } : undefined;
  }

  private async state(): Promise<State> {
    const workers = await this.o.inventory.workers();
    const ids = workers.map((w) => w.id);
    const rows = ids.length ? await this.o.workers.instancesByWorker(ids) : [];
    const placed: PlacementView[] = [];
    const now = Date.now();
    workers.forEach((w, i) => {
      for (const row of rows[i] ?? []) {
        const found = this.requirementsOf(row.modelId, row.versionId);
        if (!found) continue;
        const p = this.pending.get(row.id);
        // an older row under the same id (unloaded before) does not answer the LOAD sent since
        if (p && (LIVE.has(row.status) || row.updatedAt.getTime() >= p.sentAt)) this.pending.delete(row.id);
        if (!w.healthy || !LIVE.has(row.status)) continue;
        placed.push({ ...this.describe(row, w, found.version.version, found.resources, p?.placed.deviceId), status: row.status, pending: false });
      }
    });
    for (const [id, p] of this.pending) {
      if (p.until < now || !workers.some((w) => w.id === p.placed.workerId && w.healthy)) this.pending.delete(id);
      else placed.push({ ...p.placed, status: 'loading', pending: true });
    }
    const reserved = new Map<string, number>();
    for (const p of placed) {
      const key = deviceKey(p.workerId, p.deviceId);
      reserved.set(key, (reserved.get(key) ?? 0) + p.reservedBytes);
    }
    this.reserved = reserved;
    return { workers, placed };
  }

  private describe(row: InstanceRow, w: PlacementWorker, version: string, r: ResourceRequirements | null, device: string | undefined): PlacedInstance {
    const h = this.o.fleet.handle(row.id);
    const kind = r?.deviceKind ?? 'cpu';
    const deviceId =
      device ?? (row.device && w.devices.some((d) => d.id === row.device) ? row.device : (w.devices.find((d) => d.kind === kind)?.id ?? row.device ?? kind));
    return {
      instanceId: row.id,
      modelId: row.modelId,
      version,
      workerId: w.id,
      deviceId,
      reservedBytes: r ? reservedBytes(r) : 0,
      // instances nobody stated requirements for are never evicted
      priority: r?.priority ?? Number.MAX_SAFE_INTEGER,
      evictable: r?.evictable ?? false,
      lastUsedAt: h?.lastUsedAt ?? row.updatedAt.getTime(),
      inflight: h?.outstanding ?? 0,
    };
  }

  // ─────────────── requirements ───────────────

  /**
   * Sets what one instance of the version needs. Refused with MCP_INSUFFICIENT_RESOURCES (nothing
   * stored) when the replicas it adds cannot be placed even after allowed evictions; else stored, and
   * on the lease holder placed before answering.
   */
  async setRequirements(modelId: string, version: string, raw: unknown): Promise<VersionRow> {
    const r = parseRequirements(raw, 'requirements');
    const v = await this.o.registry.requireVersion(modelId, version);
    if (r.memoryBytes === undefined && v.resources?.measuredBytes !== undefined) r.measuredBytes = v.resources.measuredBytes;
    return this.store(modelId, version, r);
  }

  /**
   * Sets the version's replica count, keeping the rest of its stored requirements (the `instances`
   * scaling actuator's path): MCP_CONFLICT when the version states no requirements; more replicas
   * than can be placed even after allowed evictions are refused with MCP_INSUFFICIENT_RESOURCES
   * (nothing stored). Fewer replicas are drained for up to `drainMs` (stored with the requirements, so
   * the lease holder uses it whichever replica set it) before they are unloaded.
   * Runs a round before answering (on the lease holder: LOADs sent, trims started).
   */
  async setReplicas(modelId: string, version: string, replicas: number, opts: { drainMs?: number } = {}): Promise<VersionRow> {
    if (!Number.isInteger(replicas) || replicas < 0 || replicas > 64) {
      throw new McpError('MCP_VALIDATION_FAILED', `replicas: ${replicas} is not a whole number from 0 to 64`, { details: { path: 'replicas' } });
    }
    const v = await this.o.registry.requireVersion(modelId, version);
    if (!v.resources) {
      throw new McpError('MCP_CONFLICT', `${modelId}@${version} states no resource requirements: placement does not keep its replicas`, {
        details: { model: modelId, version },
      });
    }
    const drainMs = opts.drainMs ?? v.resources.drainMs;
    if (v.resources.replicas === replicas && v.resources.drainMs === drainMs) {
      await this.kick();
      return v;
    }
    return this.store(modelId, version, { ...v.resources, replicas, drainMs });
  }

  /** Stores the requirements once the replicas they add fit (MCP_INSUFFICIENT_RESOURCES otherwise, nothing stored), then runs a round. */
  private async store(modelId: string, version: string, r: ResourceRequirements): Promise<VersionRow> {
    const { workers, placed } = await this.state();
    const missing = r.replicas - this.counted(placed, modelId, version).length;
    if (missing > 0) {
      const plan = this.plan(workers, placed, modelId, version, r, missing);
      if (plan.shortfall) throw plan.shortfall;
    }
    const row = await this.o.registry.setVersionResources(modelId, version, r);
    await this.kick();
    return row;
  }

  /** The version's replicas that count towards its stated number: placed or loading, not draining or being trimmed. */
  async replicasOf(modelId: string, version: string): Promise<{ counted: number; leaving: number }> {
    const { placed } = await this.state();
    const counted = this.counted(placed, modelId, version).length;
    const all = placed.filter((p) => p.modelId === modelId && p.version === version).length;
    return { counted, leaving: all - counted };
  }

  private counted<T extends PlacementView>(placed: T[], modelId: string, version: string): T[] {
    return placed.filter((p) => p.modelId === modelId && p.version === version && p.status !== 'draining' && !this.trimming.has(p.instanceId));
  }

  private plan(workers: PlacementWorker[], placed: PlacedInstance[], modelId: string, version: string, r: ResourceRequirements, count: number): PlacementPlan {
    return planPlacement(workers, placed, {
      modelId,
      version,
      deviceKind: r.deviceKind,
      bytes: reservedBytes(r),
      count,
      priority: r.priority,
      allowEviction: true,
      now: Date.now(),
      idleMs: this.o.config.idleMs,
    });
  }

  // ─────────────── one round ───────────────

  private async round(): Promise<void> {
    // Every replica reads the state each round (it refreshes the reservations the inventory shows); the leader plans from it.
    let current: State | undefined = await this.state();
    const grant = await this.o.lease.acquire();
    if (!grant) {
      this.leaseValidUntil = 0;
      return;
    }
    this.leaseValidUntil = grant.validUntil;
    await this.runChecks();
    const wanted = this.o.registry.versionsWithResources().sort((a, b) => b.resources.priority - a.resources.priority);
    // read once a round, and again only after a version changed something (a round may visit many versions)
    for (const { model, version, resources } of wanted) {
      if (this.closed || !this.isLeader) return;
      current ??= await this.state();
      const { workers, placed } = current;
      // replicas draining (trimmed, or drained by an operator) are leaving: they keep their memory, not their place in the count
      const mine = this.counted(placed, model.id, version.version);
      const key = `${model.id}@${version.version}`;
      if (mine.length > resources.replicas) {
        // fewest requests in flight first, then least recently used; each is drained before it is unloaded
        const extra = mine.filter((p) => !p.pending).sort((a, b) => a.inflight - b.inflight || a.lastUsedAt - b.lastUsedAt);
        for (const p of extra.slice(0, mine.length - resources.replicas)) this.trim(p, resources.drainMs, `${key} wants ${resources.replicas} replicas`);
        continue;
      }
      if (mine.length === resources.replicas) {
        this.lastFailure.delete(key);
        continue;
      }
      const plan = this.plan(workers, placed, model.id, version.version, resources, resources.replicas - mine.length);
      if (plan.evictions.length || plan.placements.length) current = undefined;
      for (const v of plan.evictions) await this.evict(v, `room for ${key} (priority ${resources.priority})`);
      const taken = new Set(placed.map((p) => p.instanceId));
      for (const p of plan.placements) {
        const remote = remoteIdFor(model.id, version.version, p.workerId, taken);
        const instanceId = workerInstanceId(p.workerId, remote);
        taken.add(instanceId);
        await this.place(model.id, model.task, version.version, resources, p.workerId, p.deviceId, remote, instanceId);
      }
      if (plan.shortfall) this.noteShortfall(key, model.id, version.version, plan.shortfall);
      else this.lastFailure.delete(key);
    }
  }

  private publish(e: Omit<ModelEvent, 'at' | 'origin'>): void {
    this.o.events.publish('modelEvents', { ...e, at: new Date(), origin: 'placement' });
  }

  private noteShortfall(key: string, modelId: string, version: string, err: McpError): void {
    if (this.lastFailure.get(key) === err.message) return;
    this.lastFailure.set(key, err.message);
    this.o.logger.warn({ model: modelId, version, code: err.code }, err.message);
    this.publish({ type: 'PLACEMENT_FAILED', modelId, version, reason: err.message });
  }

  private usedNow(workerId: string): ReadonlyMap<string, number> {
    return this.o.workers.loadReports().get(workerId)?.deviceMemoryUsedBytes ?? new Map();
  }

  private async place(
    modelId: string,
    task: string,
    version: string,
    r: ResourceRequirements,
    workerId: string,
    deviceId: string,
    remote: string,
    instanceId: string,
  ): Promise<void> {
    const before = this.usedNow(workerId);
    try {
      await this.o.admin.loadModelOnWorker(workerId, {
        model: modelId,
        version,
        task,
        backend: r.backend,
        ...(r.source ? { source: r.source } : {}),
        ...(r.deviceKind !== 'cpu' ? { device: deviceId } : {}),
        options: r.options,
        instanceId: remote,
      });
    } catch (err) {
      const e = toMcpError(err);
      this.o.logger.warn({ worker: workerId, model: modelId, version, code: e.code }, `placement: LOAD not sent: ${e.message}`);
      return;
    }
    const now = Date.now();
    this.pending.set(instanceId, {
      sentAt: now,
      until: now + this.o.config.pendingTimeoutMs,
      placed: {
        instanceId,
        modelId,
        version,
        workerId,
        deviceId,
        reservedBytes: reservedBytes(r),
        priority: r.priority,
        evictable: r.evictable,
        lastUsedAt: now,
        inflight: 0,
      },
    });
    this.checks.push({ kind: 'load', workerId, instanceId, modelId, version, before, after: now, giveUpAt: now + this.o.config.pendingTimeoutMs });
    this.o.logger.info({ worker: workerId, device: deviceId, instance: instanceId, model: modelId, version, bytes: reservedBytes(r) }, 'instance placed');
    this.publish({ type: 'INSTANCE_PLACED', modelId, version, instanceId, workerId, device: deviceId });
  }

  /** Drains a replica beyond the count (its in-flight requests finish, no new ones come), then unloads it; in the background. */
  private trim(p: PlacedInstance, drainMs: number, why: string): void {
    const work = (async () => {
      await this.o.admin.drainInstance(p.instanceId, drainMs);
      await this.evict(p, why);
    })()
      .catch((err: unknown) => logBackgroundFailure(this.o.logger, err, { instance: p.instanceId }, 'placement: trimming a replica failed'))
      .finally(() => {
        this.trimming.delete(p.instanceId);
        void this.kick();
      });
    this.trimming.set(p.instanceId, work);
  }

  private async evict(p: PlacedInstance, why: string): Promise<void> {
    const before = this.usedNow(p.workerId);
    try {
      await this.o.admin.unloadFromWorker(p.workerId, p.instanceId);
    } catch (err) {
      if (!(err instanceof McpError && err.code === 'MCP_INSTANCE_NOT_FOUND')) throw err;
    }
    this.pending.delete(p.instanceId);
    const now = Date.now();
    this.checks.push({ ...p, kind: 'unload', before, after: now, giveUpAt: now + this.o.config.pendingTimeoutMs });
    this.o.logger.info(
      { worker: p.workerId, instance: p.instanceId, model: p.modelId, version: p.version, lastUsedAt: new Date(p.lastUsedAt) },
      `instance evicted: ${why}`,
    );
    this.publish({
      type: 'INSTANCE_EVICTED',
      modelId: p.modelId,
      version: p.version,
      instanceId: p.instanceId,
      workerId: p.workerId,
      device: p.deviceId,
      reason: why,
    });
  }

  /**
   * Memory accounting of the LOADs and UNLOADs sent: once two heartbeats newer than the command came
   * (and, for a load, the instance is ready), the worker's device figures before and after are
   * compared; a version without stated memory records what its first load took.
   */
  private async runChecks(): Promise<void> {
    const reports = this.o.workers.loadReports();
    const now = Date.now();
    for (let i = this.checks.length - 1; i >= 0; i--) {
      const c = this.checks[i]!;
      const report = reports.get(c.workerId);
      const at = report?.deviceMemoryUsedBytes ? report.at.getTime() : 0;
      if (at > c.after && c.firstReport === undefined) c.firstReport = at;
      const settled = report?.deviceMemoryUsedBytes && c.firstReport !== undefined && at > c.firstReport;
      if (c.kind === 'load') {
        const row = await this.o.registry.getInstance(c.instanceId);
        if (!settled || row?.status !== 'ready' || report.at.getTime() <= row.updatedAt.getTime()) {
          if (now > c.giveUpAt) this.checks.splice(i, 1);
          continue;
        }
        this.checks.splice(i, 1);
        const took = this.o.accounting.recordLoad(c.workerId, c.instanceId, c.before, report.deviceMemoryUsedBytes!);
        const v = this.o.registry.versionsOf(c.modelId).find((x) => x.version === c.version);
        if (v?.resources && v.resources.memoryBytes === undefined && v.resources.measuredBytes === undefined && took !== undefined && took > 0) {
          await this.o.registry.setVersionResources(c.modelId, c.version, { ...v.resources, measuredBytes: took });
          this.o.logger.info({ model: c.modelId, version: c.version, bytes: took }, 'instance memory measured at its first load');
        }
      } else {
        if (!settled) {
          if (now > c.giveUpAt) this.checks.splice(i, 1);
          continue;
        }
        this.checks.splice(i, 1);
        this.o.accounting.recordUnload(c.workerId, c.instanceId, c.before, report.deviceMemoryUsedBytes!);
      }
    }
  }
}

/** The worker's own id for a new instance of the version: `<model>-<version>`, then `-2`, `-3`… when taken there. */
function remoteIdFor(modelId: string, version: string, workerId: string, taken: ReadonlySet<string>): string {
  const base = `${modelId}-${version}`
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '-')
    .slice(0, 56);
  for (let n = 1; ; n++) {
    const remote = n === 1 ? base : `${base}-${n}`;
    if (!taken.has(workerInstanceId(workerId, remote))) return remote;
  }
}

/** The placement domain as the gateway wires it: accounting (also around the Fleet's in-process loads), the reconciler under its lease. */
export function createPlacement(o: {
  config: Config['placement'];
  db: ConstructorParameters<typeof LeaderLease>[0];
  registry: ModelRegistry;
  fleet: Fleet;
  workers: WorkerRegistry;
  admin: AdminService;
  events: EventBus;
  metrics: Registry;
  logger: Logger;
  inventory?: PlacementInventory;
}): PlacementReconciler {
  const accounting = new MemoryAccounting({ logger: o.logger, metrics: o.metrics });
  o.fleet.accountMemory(accounting);
  const holder = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  return new PlacementReconciler({
    registry: o.registry,
    fleet: o.fleet,
    workers: o.workers,
    admin: o.admin,
    events: o.events,
    lease: new LeaderLease(o.db, 'placement-reconciler', holder, 3 * o.config.intervalMs + 1000),
    inventory: o.inventory ?? new WorkerInventory(o.workers),
    accounting,
    config: o.config,
    logger: o.logger,
  });
}
