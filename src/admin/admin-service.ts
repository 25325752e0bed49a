import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { McpError } from '../errors.ts';
import type { WorkerCommand } from '../events/bus.ts';
import type { Fleet } from '../models/fleet.ts';
import type { InstanceRow, ModelRegistry, ModelRow, VersionRow } from '../models/registry.ts';
import type { Router } from '../routing/router.ts';
import { parseInput } from '../validation.ts';
import {
  EMBEDDED_WORKER_ID,
  HEARTBEAT_LOST,
  registerWorkerSchema,
  WORKER_STOPPED,
  workerIdOf,
  workerInstanceId,
  workerLoadCommandSchema,
  type RegisterWorker,
  type WorkerCommandOptions,
  type WorkerRegistry,
  type WorkerView,
} from '../workers/worker-registry.ts';

/** How long unloadFromWorker waits for an instance's in-flight requests before unloading it, ms. */
const UNLOAD_DRAIN_MS = 10_000;

type InstanceWithVersion = InstanceRow & { version: string };

/**
 * The administrative operations, whole: validate, write (through ModelRegistry and
 * WorkerRegistry), apply to this replica (through the Fleet), and answer with the new state.
 * GraphQL mutations and the worker protocol call these; they only translate arguments and
 * results. Other replicas learn of each change from the registry's events (Fleet.watch).
 */
export class AdminService {
  constructor(
    private readonly registry: ModelRegistry,
    private readonly fleet: Fleet,
    private readonly workers: WorkerRegistry,
    private readonly router: Pick<Router, 'resetHealth'>,
    private readonly logger: Logger,
  ) {}

  // ─────────────── models ───────────────

  /** Registers a model with its versions and instances, and loads them here before answering. */
  async registerModel(input: unknown): Promise<ModelRow> {
    const model = await this.registry.register(input);
    await this.fleet.reconcileModel(model.id);
    return model;
  }

  async updateModel(modelId: string, patch: unknown): Promise<ModelRow> {
    const model = await this.registry.update(modelId, patch);
    await this.fleet.refresh(modelId);
    return model;
  }

  /** Deletes the model (its versions and instances with it) and unloads its instances here. */
  async deleteModel(modelId: string): Promise<ModelRow> {
    const model = await this.registry.delete(modelId);
    await this.fleet.forgetModel(modelId);
    return model;
  }

  /** Adds a version with its instances, and loads them here before answering. */
  async addModelVersion(modelId: string, input: unknown): Promise<VersionRow> {
    const version = await this.registry.addVersion(modelId, input);
    await this.fleet.reconcileModel(modelId);
    return version;
  }

  // ─────────────── instances ───────────────

  /** Adds an instance to a version and loads it; answers with its status after the load. */
  async addInstance(modelId: string, version: string, input: unknown): Promise<InstanceRow> {
    const row = await this.registry.addInstance(modelId, version, input);
    await this.fleet.load(row.id);
    return (await this.registry.getInstance(row.id)) ?? row;
  }

  async loadInstance(instanceId: string): Promise<InstanceWithVersion> {
    await this.fleet.load(instanceId);
    return this.registry.requireInstance(instanceId);
  }

  async unloadInstance(instanceId: string): Promise<InstanceWithVersion> {
    await this.fleet.unload(instanceId);
    return this.registry.requireInstance(instanceId);
  }

  /** Stops new requests to the instance and waits up to timeoutMs for in-flight ones. */
  async drainInstance(instanceId: string, timeoutMs: number): Promise<InstanceWithVersion> {
    await this.fleet.drain(instanceId, timeoutMs);
    return this.registry.requireInstance(instanceId);
  }

  /** Operator override: the router forgets the instance's breaker, ejection and throttle state. */
  async resetInstanceHealth(instanceId: string): Promise<InstanceWithVersion> {
    const row = await this.registry.requireInstance(instanceId);
    this.router.resetHealth(row.id);
    return row;
  }

  /** Unloads the instance and deletes it; answers with it as it was last (unloaded). */
  async removeInstance(instanceId: string): Promise<InstanceWithVersion> {
    await this.fleet.unload(instanceId);
    return this.remove(instanceId);
  }

  private async remove(instanceId: string): Promise<InstanceWithVersion> {
    const row = await this.registry.removeInstance(instanceId);
    await this.fleet.forgetInstance(instanceId, row.modelId);
    return row;
  }

  // ─────────────── workers ───────────────

  /**
   * A worker announces itself and everything it serves: its row is upserted, each instance is
   * registered (with its model and version when missing) and loaded through the Fleet, and the
   * instances it no longer serves are unloaded. Idempotent: a worker re-registers after every
   * restart and after every load/unload command.
   */
  async registerWorker(raw: unknown): Promise<WorkerView> {
    const input = parseInput(registerWorkerSchema, raw);
    this.registry.checkApiEndpoint(input.endpoint, 'input.endpoint');
    const workerId = workerIdOf(input.name);
    if (workerId === EMBEDDED_WORKER_ID) {
      throw new McpError('MCP_VALIDATION_FAILED', `input.name: "${EMBEDDED_WORKER_ID}" is reserved for the gateway's own process`, {
        details: { path: 'input.name' },
      });
    }
    const remoteIds = input.instances.map((i) => i.remoteInstanceId);
    const dup = remoteIds.find((r, i) => remoteIds.indexOf(r) !== i);
    if (dup)
      throw new McpError('MCP_VALIDATION_FAILED', `input.instances: remoteInstanceId "${dup}" is listed twice`, { details: { path: 'input.instances' } });
    return this.workers.inOrder(workerId, async () => {
      const worker = await this.workers.upsert(workerId, input);
      const [previous = []] = await this.registry.instancesByWorker([workerId]);
      const keep = new Set<string>();
      for (const inst of input.instances) {
        const id = workerInstanceId(workerId, inst.remoteInstanceId);
        keep.add(id);
        try {
          await this.serveOnWorker(workerId, input.endpoint, id, inst);
        } catch (err) {
          this.logger.warn({ err, worker: workerId, instance: id }, 'worker instance not registered');
        }
      }
      for (const old of previous) {
        if (keep.has(old.id) || old.status === 'unloaded') continue;
        await this.unloadQuietly(old.id, 'no longer served by the worker');
      }
      this.logger.info({ worker: workerId, endpoint: input.endpoint, instances: input.instances.length }, 'worker registered');
      return worker;
    });
  }

  /** Registers (or re-points) one instance a worker serves and loads it through the Fleet. */
  private async serveOnWorker(workerId: string, endpoint: string, id: string, inst: RegisterWorker['instances'][number]): Promise<void> {
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
      await this.remove(id);
      existing = undefined;
    }
    let reload = false;
    if (!existing) {
      await this.registry.addInstance(inst.model, inst.version, { id, backend: 'worker', endpoint, ...(inst.device ? { device: inst.device } : {}), options });
    } else {
      reload = existing.endpoint !== endpoint || existing.backend !== 'worker';
    }
    await this.registry.assignToWorker(id, {
      workerId,
      endpoint,
      options,
      ...(inst.device ? { device: inst.device } : {}),
      ...(inst.runtime ? { runtime: inst.runtime } : {}),
    });
    if (reload && this.fleet.handle(id)?.loaded) await this.fleet.unload(id);
    await this.fleet.load(id);
  }

  /** Records a heartbeat; a worker coming back from `unhealthy` gets its instances back into routing. */
  async workerHeartbeat(workerId: string, load?: { inflight?: number | null; requestsTotal?: number | null }): Promise<WorkerView> {
    if (workerId === EMBEDDED_WORKER_ID) return this.workers.require(EMBEDDED_WORKER_ID);
    return this.workers.inOrder(workerId, async () => {
      const { worker, was } = await this.workers.recordHeartbeat(workerId, load);
      if (was === 'unhealthy') {
        const [rows = []] = await this.registry.instancesByWorker([workerId]);
        const lost = rows.filter((r) => r.status === 'failed' && r.statusReason === HEARTBEAT_LOST);
        for (const inst of lost) {
          await this.fleet.load(inst.id).catch((err) => this.logger.warn({ err, instance: inst.id }, 'worker instance did not come back'));
        }
        this.logger.info({ worker: workerId, instances: lost.length }, 'worker heartbeats are back');
      }
      return worker;
    });
  }

  /** A worker shutting down (SIGTERM): its instances leave routing at once, the row stays as `stopped`. */
  async deregisterWorker(workerId: string): Promise<WorkerView> {
    if (workerId === EMBEDDED_WORKER_ID) throw new McpError('MCP_CONFLICT', 'the embedded worker stops with the gateway');
    return this.workers.inOrder(workerId, async () => {
      const worker = await this.workers.markStopped(workerId);
      const [rows = []] = await this.registry.instancesByWorker([workerId]);
      for (const inst of rows) if (inst.status !== 'unloaded') await this.unloadQuietly(inst.id, WORKER_STOPPED);
      this.logger.info({ worker: workerId }, 'worker deregistered');
      return worker;
    });
  }

  private async unloadQuietly(instanceId: string, reason: string): Promise<void> {
    await this.fleet.unload(instanceId, reason).catch((err) => this.logger.warn({ err, instance: instanceId }, 'unload failed'));
  }

  /** Asks a worker to load a model (it loads, then re-registers); on `embedded` the gateway loads it itself. */
  async loadModelOnWorker(workerId: string, raw: unknown): Promise<WorkerCommand> {
    const input = parseInput(workerLoadCommandSchema, raw);
    const remoteId =
      input.instanceId ??
      `${input.model}-${input.version}`
        .toLowerCase()
        .replace(/[^a-z0-9._-]/g, '-')
        .slice(0, 63);
    const options: WorkerCommandOptions = { commandId: randomUUID(), backend: input.backend, task: input.task, instanceOptions: input.options };
    if (input.device) options.device = input.device;
    const command: WorkerCommand = {
      workerId,
      action: 'LOAD',
      instanceId: remoteId,
      modelId: input.model,
      version: input.version,
      ...(input.source ? { endpoint: input.source } : {}),
      options: options as unknown as Record<string, unknown>,
    };
    if (workerId === EMBEDDED_WORKER_ID) {
      if (!(await this.workers.isLocalBackend(input.backend))) {
        throw new McpError('MCP_UNKNOWN_PLUGIN', `backend "${input.backend}" does not run in the gateway process`, { details: { path: 'backend' } });
      }
      if (!(await this.registry.get(input.model))) await this.registry.register({ id: input.model, task: input.task, versions: [] });
      await this.registry.requireVersion(input.model, input.version).catch(() => this.registry.addVersion(input.model, { version: input.version }));
      const id = workerInstanceId(EMBEDDED_WORKER_ID, remoteId);
      if (!(await this.registry.getInstance(id))) {
        await this.registry.addInstance(input.model, input.version, {
          id,
          backend: input.backend,
          options: input.options,
          ...(input.source ? { endpoint: input.source } : {}),
          ...(input.device ? { device: input.device } : {}),
        });
      }
      await this.fleet.load(id);
      return { ...command, instanceId: id };
    }
    const w = await this.workers.require(workerId);
    if (w.status === 'stopped') throw new McpError('MCP_CONFLICT', `worker "${workerId}" is stopped`, { details: { worker: workerId } });
    this.workers.send(command);
    return command;
  }

  /**
   * Takes one of a worker's instances (gateway instance id or the worker's own id) out of routing,
   * waits for its in-flight requests, unloads it and tells the worker to release it.
   */
  async unloadFromWorker(workerId: string, instance: string): Promise<WorkerCommand> {
    const w = await this.workers.require(workerId);
    const [rows = []] = await this.workers.instancesByWorker([workerId]);
    const row = rows.find((r) => r.id === instance || (r.options as { remoteInstanceId?: string }).remoteInstanceId === instance);
    if (!row) throw new McpError('MCP_INSTANCE_NOT_FOUND', `worker "${workerId}" has no instance "${instance}"`, { details: { worker: workerId, instance } });
    const version = (await this.registry.requireInstance(row.id)).version;
    if (this.fleet.handle(row.id)) await this.fleet.drain(row.id, UNLOAD_DRAIN_MS);
    await this.fleet.unload(row.id);
    const remoteId = (row.options as { remoteInstanceId?: string }).remoteInstanceId ?? row.id;
    const command: WorkerCommand = {
      workerId,
      action: 'UNLOAD',
      instanceId: w.embedded ? row.id : remoteId,
      modelId: row.modelId,
      version,
      options: { commandId: randomUUID() },
    };
    if (!w.embedded) this.workers.send(command);
    return command;
  }
}
