import type { Logger } from 'pino';
import type { ModelRouting } from '../db/schema.ts';
import { McpError, toMcpError } from '../errors.ts';
import type { BalancerCandidate, LoadedInstance } from '../plugin/contract.ts';
import type { PluginHost } from '../plugin/host.ts';
import { modelStatus, type InstanceRow, type InstanceStatus, type ModelRegistry } from './registry.ts';
import type { ViewDiff } from './registry-view.ts';
import { usageOf, type AccountingToken, type MemoryAccounting } from '../resources/memory-accounting.ts';

/** The worker id memory accounting files the gateway's own (in-process) loads under. */
const IN_PROCESS = 'embedded';

/** An instance as the router sees it: live counters, the loaded handle, status. */
export interface InstanceHandle extends BalancerCandidate {
  readonly id: string;
  readonly modelId: string;
  readonly version: string;
  readonly backend: string;
  weight: number;
  outstanding: number;
  status: InstanceStatus;
  draining: boolean;
  loaded?: LoadedInstance;
  /** Resolves when `outstanding` drops to 0 while draining. */
  idle?: () => void;
  /** When the last request began on it here, or it loaded (ms since epoch): eviction takes the least recently used. */
  lastUsedAt?: number;
}

/** A model as the router sees it, cached in memory and refreshed on registry events. */
export interface ModelView {
  id: string;
  task: string;
  defaultVersion: string | null;
  routing: ModelRouting;
  versions: Map<string, InstanceHandle[]>;
}

/**
 * Loads and unloads instances through their backend plugins and keeps the in-memory view the
 * router reads on every request (no SQL on the hot path). The one owner of instance handles:
 * everyone else asks it (load, unload, drain, markFailed, followWorkers, forget…) and reads.
 *
 * A change made on this replica is applied here by the service that made it, before it answers;
 * `watch` applies the changes other replicas publish.
 */
export class Fleet {
  private readonly handles = new Map<string, InstanceHandle>();
  private readonly views = new Map<string, ModelView>();
  private readonly abort = new AbortController();
  private readonly pendingLoads = new Map<string, Promise<void>>();
  private refreshSeq = 0;
  private readonly appliedRefresh = new Map<string, number>();
  private memory: MemoryAccounting | undefined;

  constructor(
    private readonly registry: ModelRegistry,
    private readonly plugins: PluginHost,
    private readonly logger: Logger,
  ) {}

  /** Checks the device memory in-process backends report around every load and unload here. */
  accountMemory(accounting: MemoryAccounting): void {
    this.memory = accounting;
  }

  private async usage(backend: string): Promise<Map<string, number>> {
    if (!this.memory || !this.plugins.has('backend', backend)) return new Map();
    return usageOf(await Promise.resolve(this.plugins.get('backend', backend).devices?.()).catch(() => undefined));
  }

  /** The router's view of a model; undefined when not registered. */
  view(modelId: string): ModelView | undefined {
    return this.views.get(modelId);
  }

  handle(instanceId: string): InstanceHandle | undefined {
    return this.handles.get(instanceId);
  }

  allHandles(): IterableIterator<InstanceHandle> {
    return this.handles.values();
  }

  /** The router's view of a model, built from the registry when this replica has none yet; undefined when not registered. */
  async current(modelId: string): Promise<ModelView | undefined> {
    return this.views.get(modelId) ?? this.refresh(modelId);
  }

  /** The model's status from this replica's view, when it has one (undefined otherwise: statusOf builds it). */
  statusNow(modelId: string): InstanceStatus | undefined {
    const view = this.views.get(modelId);
    if (!view) return undefined;
    const handles: InstanceHandle[] = [];
    for (const pool of view.versions.values()) handles.push(...pool);
    return modelStatus(handles);
  }

  /** The model's status from this replica's handles (no SQL once the view exists): ready when any instance is ready here. */
  async statusOf(modelId: string): Promise<InstanceStatus> {
    const view = await this.current(modelId);
    return modelStatus(view ? [...view.versions.values()].flat() : []);
  }

  /** Rebuilds the view of one model from the registry (after any change to it). */
  async refresh(modelId: string): Promise<ModelView | undefined> {
    // Refreshes of one model may overlap (the router, an admin operation, the event watcher); the one
    // started last read the newest rows, so an older one that finishes later must not overwrite its view.
    const seq = ++this.refreshSeq;
    const model = await this.registry.find(modelId);
    if ((this.appliedRefresh.get(modelId) ?? 0) > seq) return this.views.get(modelId);
    if (!model) {
      this.appliedRefresh.set(modelId, seq);
      this.views.delete(modelId);
      return undefined;
    }
    const [versions] = await this.registry.versionsByModel([modelId]);
    const [rows] = await this.registry.instancesByModel([modelId]);
    const versionName = new Map((versions ?? []).map((v) => [v.id, v.version]));
    const view: ModelView = { id: model.id, task: model.task, defaultVersion: model.defaultVersion, routing: model.routing ?? {}, versions: new Map() };
    for (const v of versions ?? []) view.versions.set(v.version, []);
    for (const row of rows ?? []) {
      const h = this.upsertHandle(row, versionName.get(row.versionId) ?? '?');
      view.versions.get(h.version)?.push(h);
    }
    if ((this.appliedRefresh.get(modelId) ?? 0) > seq) return this.views.get(modelId);
    this.appliedRefresh.set(modelId, seq);
    this.views.set(modelId, view);
    return view;
  }

  private upsertHandle(row: InstanceRow, version: string): InstanceHandle {
    let h = this.handles.get(row.id);
    if (!h) {
      h = {
        id: row.id,
        modelId: row.modelId,
        version,
        backend: row.backend,
        weight: row.weight,
        outstanding: 0,
        status: row.status as InstanceStatus,
        draining: false,
      };
      this.handles.set(row.id, h);
    }
    h.weight = row.weight;
    if (!h.loaded || row.status === 'draining') h.status = row.status as InstanceStatus;
    h.draining = row.status === 'draining' || h.draining;
    return h;
  }

  /** Loads every instance of the model that should be loaded, then refreshes its view. */
  async reconcileModel(modelId: string): Promise<void> {
    const view = await this.refresh(modelId);
    if (!view) return;
    const toLoad = [...view.versions.values()].flat().filter(shouldLoad);
    await Promise.all(toLoad.map((h) => this.load(h.id).catch(() => {})));
  }

  /**
   * Starts loading, in the background, the model's instances that this replica should hold and
   * does not: registered or loaded elsewhere (status ready/loading in the shared registry) but
   * never loaded here, because a registry event was missed or could not be applied. Failed,
   * unloaded and draining instances are left alone; a load already under way is not repeated.
   * The router calls it when a model has no ready instance; what it returns settles when every
   * load of the model under way here has ended (undefined when none is).
   */
  catchUp(modelId: string): Promise<void> | undefined {
    const view = this.views.get(modelId);
    if (!view) return undefined;
    const handles = [...view.versions.values()].flat();
    for (const h of handles) {
      if (!shouldLoad(h) || h.status === 'failed' || this.pendingLoads.has(h.id)) continue;
      this.logger.info({ instance: h.id, model: modelId, status: h.status }, 'loading an instance this replica does not hold yet');
      void this.load(h.id).catch(() => {});
    }
    const pending = handles.flatMap((h) => this.pendingLoads.get(h.id) ?? []);
    return pending.length ? Promise.allSettled(pending).then(() => undefined) : undefined;
  }

  /** At boot: builds every model's view, then loads what should be loaded, a few at a time. */
  async start(concurrency = 8): Promise<void> {
    const ids: string[] = [];
    let after: string | undefined;
    do {
      const page = await this.registry.list({}, { first: 500, after });
      ids.push(...page.items.map((m) => m.id));
      after = page.hasNextPage ? (page.endCursor ?? undefined) : undefined;
    } while (after);
    await mapLimit(ids, concurrency, (id) => this.refresh(id));
    const toLoad = [...this.views.values()].flatMap((v) => [...v.versions.values()].flat()).filter(shouldLoad);
    await mapLimit(toLoad, concurrency, (h) => this.load(h.id).catch(() => {}));
  }

  /** Loads one instance through its backend; status goes loading → ready | failed. */
  async load(instanceId: string): Promise<void> {
    const pending = this.pendingLoads.get(instanceId);
    if (pending) return pending;
    const p = this.doLoad(instanceId).finally(() => this.pendingLoads.delete(instanceId));
    this.pendingLoads.set(instanceId, p);
    return p;
  }

  private async doLoad(instanceId: string): Promise<void> {
    const row = await this.registry.requireInstance(instanceId);
    const h = this.upsertHandle(row, row.version);
    if (h.loaded) {
      // A drained (still loaded) instance loaded again takes traffic again.
      h.draining = false;
      if (h.status !== 'ready') await this.setStatus(h, 'ready');
      return;
    }
    h.draining = false;
    await this.setStatus(h, 'loading');
    let token: AccountingToken | undefined;
    let forgotten = false;
    try {
      const backend = this.plugins.get('backend', row.backend);
      token = this.memory?.begin(IN_PROCESS);
      const before = await this.usage(row.backend);
      const loaded = await backend.load(
        {
          id: row.id,
          model: row.modelId,
          version: row.version,
          endpoint: row.endpoint ?? undefined,
          options: await this.registry.resolveOptions(row),
          device: row.device ?? undefined,
        },
        this.abort.signal,
      );
      if (this.handles.get(row.id) !== h) {
        // Forgotten while it loaded (its model or instance was deleted): nothing routes to
        // this handle or will unload it later, so what the backend loaded is let go of now.
        forgotten = true;
        this.memory?.abandon(token);
        token = undefined;
        await loaded.unload().catch((err) => this.logger.warn({ err, instance: row.id }, 'unload of a forgotten instance failed'));
        this.logger.info({ instance: row.id, model: row.modelId }, 'instance deleted while it loaded: unloaded');
        return;
      }
      h.loaded = loaded;
      h.lastUsedAt = Date.now();
      if (this.memory) this.memory.recordLoad(IN_PROCESS, row.id, before, await this.usage(row.backend), token);
      token = undefined;
      // Into this replica's view before the registry says READY: a client that sees READY must
      // not get MCP_NO_HEALTHY_INSTANCE because the view was still being rebuilt.
      await this.ensureInView(h, row.modelId, row.version);
      await this.setStatus(h, 'ready', { runtime: loaded.runtime, device: loaded.device });
      this.logger.info({ instance: row.id, model: row.modelId, version: row.version, runtime: loaded.runtime, device: loaded.device }, 'instance ready');
    } catch (err) {
      this.memory?.abandon(token);
      const e = toMcpError(err);
      const reason = e.code === 'MCP_INTERNAL' ? String((err as Error)?.message ?? err) : e.message;
      await this.setStatus(h, 'failed', { reason });
      this.logger.warn({ instance: row.id, err }, 'instance failed to load');
      throw new McpError(e.code === 'MCP_INTERNAL' ? 'MCP_CONFLICT' : e.code, `instance "${row.id}" failed to load: ${reason}`, {
        details: { instance: row.id },
      });
    } finally {
      if (!forgotten) await this.ensureInView(h, row.modelId, row.version);
    }
  }

  /** The view holds this handle object already unless the instance is new to it. */
  private async ensureInView(h: InstanceHandle, modelId: string, version: string): Promise<void> {
    if (!this.views.get(modelId)?.versions.get(version)?.includes(h)) await this.refresh(modelId);
  }

  private async setStatus(h: InstanceHandle, status: InstanceStatus, extra: { reason?: string; runtime?: string; device?: string } = {}): Promise<void> {
    h.status = status;
    await this.registry.setInstanceStatus(h.id, status, extra);
  }

  /** Stops new requests to the instance and waits up to timeoutMs for in-flight ones. */
  async drain(instanceId: string, timeoutMs: number): Promise<void> {
    const row = await this.registry.requireInstance(instanceId);
    const h = this.upsertHandle(row, row.version);
    h.draining = true;
    await this.setStatus(h, 'draining');
    await this.refresh(row.modelId);
    if (h.outstanding > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        h.idle = () => {
          clearTimeout(t);
          resolve();
        };
      });
      h.idle = undefined;
    }
  }

  /** Counts a request in flight on the instance; returns the function that ends it. */
  begin(h: InstanceHandle): () => void {
    h.outstanding++;
    h.lastUsedAt = Date.now();
    return () => {
      h.outstanding--;
      if (h.outstanding === 0 && h.idle) h.idle();
    };
  }

  /** Unloads the instance's backend handle here and records it `unloaded` (with why, when given). */
  async unload(instanceId: string, reason?: string): Promise<void> {
    const h = this.handles.get(instanceId);
    if (h) {
      h.status = 'unloaded'; // out of routing at once
      h.draining = false; // unloaded, no longer leaving
    }
    const row = await this.registry.requireInstance(instanceId);
    if (h?.loaded) {
      const loaded = h.loaded;
      h.loaded = undefined;
      const token = this.memory?.begin(IN_PROCESS);
      const before = await this.usage(h.backend);
      await loaded.unload().catch((err) => this.logger.warn({ err, instance: instanceId }, 'unload failed'));
      if (this.memory) this.memory.recordUnload(IN_PROCESS, instanceId, before, await this.usage(h.backend), token);
    }
    await this.registry.setInstanceStatus(instanceId, 'unloaded', { reason });
    await this.refresh(row.modelId);
  }

  /**
   * Takes the instance out of routing at once (its worker stopped heartbeating) and records why;
   * the backend handle stays, for when the worker comes back.
   */
  async markFailed(instanceId: string, reason: string): Promise<void> {
    const h = this.handles.get(instanceId);
    if (h) h.status = 'failed';
    await this.registry.setInstanceStatus(instanceId, 'failed', { reason });
  }

  /**
   * Makes the loaded handles of worker instances agree with the shared registry, where another
   * replica may have marked a worker: no routing to instances of an unhealthy or stopped worker,
   * and an instance taken out for a lost heartbeat comes back once its worker is healthy again.
   */
  followWorkers(states: Iterable<{ instanceId: string; status: string; workerHealthy: boolean }>): void {
    for (const s of states) {
      const h = this.handles.get(s.instanceId);
      if (!h?.loaded) continue;
      if (!s.workerHealthy && h.status === 'ready') h.status = s.status === 'unloaded' ? 'unloaded' : 'failed';
      else if (s.workerHealthy && s.status === 'ready' && h.status === 'failed') h.status = 'ready';
    }
  }

  /** The model is gone from the registry: unloads its handles here and drops its view. */
  async forgetModel(modelId: string): Promise<void> {
    // A refresh that started before the deletion must not bring the view back.
    this.appliedRefresh.set(modelId, ++this.refreshSeq);
    this.views.delete(modelId);
    const gone = [...this.handles.values()].filter((h) => h.modelId === modelId);
    for (const h of gone) {
      this.handles.delete(h.id);
      if (h.loaded) await h.loaded.unload().catch(() => {});
    }
  }

  /** The instance is gone from the registry: unloads its handle here (if still loaded) and refreshes its model's view. */
  async forgetInstance(instanceId: string, modelId: string): Promise<void> {
    const h = this.handles.get(instanceId);
    this.handles.delete(instanceId);
    if (h?.loaded) await h.loaded.unload().catch(() => {});
    await this.refresh(modelId);
  }

  /** Unloads everything (shutdown). */
  async close(): Promise<void> {
    this.abort.abort();
    await Promise.all(
      [...this.handles.values()].map(async (h) => {
        const loaded = h.loaded;
        h.loaded = undefined;
        if (loaded) await loaded.unload().catch(() => {});
      }),
    );
  }

  /**
   * Applies to this replica the registry changes other replicas make (the registry has them in
   * memory already when it tells): new models and instances are loaded here too (each replica holds
   * its own backend handles), removed ones unloaded, and a drain seen elsewhere stops routing here as
   * well. After a full re-read (the bus came back, or a change was missed) the same, per model, for
   * what changed. This replica's own changes never come here: whoever made one applied it already.
   *
   * What memory holds after the event decides, not the event's type alone: events are applied one at
   * a time, so one may be read after a later change (the registry reads the model when it applies
   * the event). A model found gone by that read left memory then, and no later event or re-read
   * will name it as removed, so its handles and view go now, whatever the event said.
   */
  watch(signal: AbortSignal): void {
    this.registry.onChange(async (change) => {
      if (signal.aborted) return;
      if (change.kind === 'resync') {
        await this.followResync(change.diff);
        return;
      }
      const e = change.event;
      try {
        if (e.type === 'MODEL_DELETED' || !(await this.registry.get(e.modelId))) await this.forgetModel(e.modelId);
        else if (e.type === 'INSTANCE_REMOVED' && e.instanceId) await this.forgetInstance(e.instanceId, e.modelId);
        else if (e.type === 'INSTANCE_STATUS' && e.instanceId) await this.followStatus(e.instanceId, e.status);
        else if (e.type === 'MODEL_REGISTERED' || e.type === 'VERSION_ADDED' || e.type === 'INSTANCE_ADDED') await this.reconcileModel(e.modelId);
        else await this.refresh(e.modelId);
      } catch (err) {
        this.logger.warn({ err, event: e.type, model: e.modelId }, 'could not apply a registry event');
      }
    });
  }

  /**
   * After a full re-read of the registry: models gone are dropped (handles unloaded), new ones get
   * their view and start loading, and changed ones follow the stored rows (instances removed or
   * drained or unloaded elsewhere, instances new to this replica loaded). Loads run in the background.
   */
  private async followResync(diff: ViewDiff): Promise<void> {
    for (const modelId of diff.removed) await this.forgetModel(modelId).catch((err) => this.logger.warn({ err, model: modelId }, 'could not drop a model'));
    for (const modelId of [...diff.added, ...diff.changed]) {
      try {
        const [rows = []] = await this.registry.instancesByModel([modelId]);
        const stored = new Set(rows.map((r) => r.id));
        for (const h of [...this.handles.values()]) if (h.modelId === modelId && !stored.has(h.id)) await this.forgetInstance(h.id, modelId);
        for (const r of rows) if (r.status === 'draining' || r.status === 'unloaded') await this.followStatus(r.id, r.status);
        const view = await this.refresh(modelId);
        for (const h of view ? [...view.versions.values()].flat() : []) {
          if (shouldLoad(h) && !this.pendingLoads.has(h.id)) void this.load(h.id).catch(() => {});
        }
      } catch (err) {
        this.logger.warn({ err, model: modelId }, 'could not follow a re-read model');
      }
    }
  }

  /** Another replica drained, loaded again or unloaded an instance: do the same here. */
  private async followStatus(instanceId: string, status: string | undefined): Promise<void> {
    const h = this.handles.get(instanceId);
    if (!h) return;
    if (status === 'draining') h.draining = true;
    else if (status === 'ready' && h.draining) {
      // loaded again elsewhere after a drain: routable here too
      h.draining = false;
      if (h.loaded && h.status === 'draining') h.status = 'ready';
    } else if (status === 'unloaded' && h.loaded) {
      const loaded = h.loaded;
      h.loaded = undefined;
      h.status = 'unloaded';
      await loaded.unload().catch(() => {});
    }
  }
}

/** An instance this replica should hold and has not loaded (not unloaded or draining on purpose). */
function shouldLoad(h: InstanceHandle): boolean {
  return !h.loaded && !h.draining && h.status !== 'unloaded' && h.status !== 'draining';
}

/** Runs fn over items with at most `limit` calls in flight. */
async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
}
