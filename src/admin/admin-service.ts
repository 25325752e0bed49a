import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import { McpError, toMcpError, type ErrorCode } from '../errors.ts';
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
  workerCallTokenSchema,
  workerIdOf,
  workerInstanceId,
  workerLoadCommandSchema,
  workerNameSchema,
  type HeartbeatLoad,
  type RegisterWorker,
  type WorkerInstanceOptions,
  type WorkerCommandOptions,
  type WorkerRegistry,
  type WorkerView,
} from '../workers/worker-registry.ts';

/** How long an operator's unload (unloadModel, unloadInstance, removeInstance, a worker's UNLOAD) waits for an instance's in-flight requests, ms. */
const UNLOAD_DRAIN_MS = 10_000;

type InstanceWithVersion = InstanceRow & { version: string };

/** What became of one instance a worker reported: attached (served; `code` set when its load failed) or refused, with why. */
export interface WorkerInstanceOutcome {
  remoteInstanceId: string;
  model: string;
  version: string;
  accepted: boolean;
  /** Gateway instance id (accepted ones). */
  instanceId?: string;
  code?: ErrorCode;
  message?: string;
}

/** The answer to a worker's registration: its row and, per reported instance, whether it is served. */
export interface WorkerRegistration {
  worker: WorkerView;
  instances: WorkerInstanceOutcome[];
}

const assignedModelsSchema = z.array(z.string().min(1).max(128)).min(1).max(256);

/** statusReason of a worker's instances whose model an operator unassigned from it. */
export const MODEL_UNASSIGNED = 'model unassigned from the worker';

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

  /**
   * Loads every instance of the model (of one version when given) that is not loaded here, as
   * loadInstance does one by one. Answers once each has been tried; refuses (with the first load
   * failure) only when none of them is ready after that, or when the model has no instance to load.
   */
  async loadModel(modelId: string, version?: string): Promise<ModelRow> {
    const { model, instances } = await this.instancesOf(modelId, version);
    const results = await Promise.allSettled(instances.map((i) => this.fleet.load(i.id)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed && !instances.some((i) => this.fleet.handle(i.id)?.status === 'ready')) throw toMcpError(failed.reason);
    return model;
  }

  /** Unloads every instance of the model (of one version when given), draining them together first; they stay registered. */
  async unloadModel(modelId: string, version?: string): Promise<ModelRow> {
    const { model, instances } = await this.instancesOf(modelId, version);
    await this.drainAndUnload(instances.map((i) => i.id));
    return model;
  }

  /**
   * Takes the instances out of routing, lets the requests in flight on them finish (up to UNLOAD_DRAIN_MS,
   * as Triton's unload does), then unloads them: an operator's unload never cuts an answer short.
   */
  private async drainAndUnload(instanceIds: readonly string[]): Promise<void> {
    await Promise.all(instanceIds.filter((id) => this.fleet.handle(id)).map((id) => this.fleet.drain(id, UNLOAD_DRAIN_MS)));
    for (const id of instanceIds) await this.fleet.unload(id);
  }

  /** The model and its instances (of one version when given); MCP_CONFLICT when there are none. */
  private async instancesOf(modelId: string, version?: string): Promise<{ model: ModelRow; instances: InstanceRow[] }> {
    const model = await this.registry.require(modelId);
    const versionId = version === undefined ? undefined : (await this.registry.requireVersion(modelId, version)).id;
    const [rows = []] = await this.registry.instancesByModel([modelId]);
    const instances = rows.filter((r) => versionId === undefined || r.versionId === versionId);
    if (instances.length === 0) {
      const what = version === undefined ? `model "${modelId}"` : `version "${version}" of model "${modelId}"`;
      throw new McpError('MCP_CONFLICT', `${what} has no instance: add one first (addInstance)`, {
        details: { model: modelId, ...(version ? { version } : {}) },
      });
    }
    return { model, instances };
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
    await this.drainAndUnload([instanceId]);
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

  /** Unloads the instance (after its requests in flight) and deletes it; answers with it as it was last (unloaded). */
  async removeInstance(instanceId: string): Promise<InstanceWithVersion> {
    await this.drainAndUnload([instanceId]);
    return this.remove(instanceId);
  }

  private async remove(instanceId: string): Promise<InstanceWithVersion> {
    const row = await this.registry.removeInstance(instanceId);
    await this.fleet.forgetInstance(instanceId, row.modelId);
    return row;
  }

  // ─────────────── workers ───────────────

  /**
   * A worker announces itself and everything it serves: its row is upserted; each instance of a
   * model an operator assigned to it is registered (its version added when missing, never the
   * model) and loaded through the Fleet; instances of other models are refused (outcome per
   * instance), and the instances it no longer serves are unloaded. Who may act as this worker is
   * checked by the caller. Idempotent: a worker re-registers after every restart and every command.
   */
  async registerWorker(raw: unknown): Promise<WorkerRegistration> {
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
      const [assigned = []] = await this.workers.assignedModels([workerId]);
      const [previous = []] = await this.registry.instancesByWorker([workerId]);
      const keep = new Set<string>();
      const outcomes: WorkerInstanceOutcome[] = [];
      for (const inst of input.instances) {
        const id = workerInstanceId(workerId, inst.remoteInstanceId);
        const outcome: WorkerInstanceOutcome = { remoteInstanceId: inst.remoteInstanceId, model: inst.model, version: inst.version, accepted: false };
        try {
          if (!assigned.includes(inst.model)) {
            throw new McpError('MCP_FORBIDDEN', `model "${inst.model}" is not assigned to worker "${workerId}" (an operator assigns it: assignWorkerModels)`, {
              details: { worker: workerId, model: inst.model },
            });
          }
          const loadError = await this.serveOnWorker(workerId, input, id, inst);
          keep.add(id);
          Object.assign(outcome, { accepted: true, instanceId: id }, loadError ? { code: loadError.code, message: loadError.message } : {});
        } catch (err) {
          const e = toMcpError(err);
          Object.assign(outcome, { code: e.code, message: e.message });
          this.logger.warn({ worker: workerId, instance: id, model: inst.model, code: e.code }, `worker instance refused: ${e.message}`);
        }
        outcomes.push(outcome);
      }
      for (const old of previous) {
        if (keep.has(old.id) || old.status === 'unloaded') continue;
        await this.unloadQuietly(old.id, 'no longer served by the worker');
      }
      const served = outcomes.filter((o) => o.accepted).length;
      this.logger.info({ worker: workerId, endpoint: input.endpoint, instances: served, refused: outcomes.length - served }, 'worker registered');
      return { worker, instances: outcomes };
    });
  }

  /**
   * Registers (or re-points) one instance a worker serves and loads it through the Fleet; the model
   * must exist (it is assigned). Answers with the load's failure, if any: the instance stays attached (FAILED).
   */
  private async serveOnWorker(workerId: string, input: RegisterWorker, id: string, inst: RegisterWorker['instances'][number]): Promise<McpError | undefined> {
    const { endpoint } = input;
    let existing = await this.registry.getInstance(id);
    if (existing && existing.workerId !== workerId) {
      // never take over an instance an operator created or another worker registered under the same id
      throw new McpError('MCP_CONFLICT', `instance id "${id}" belongs to ${existing.workerId ? `worker "${existing.workerId}"` : 'an operator'}`, {
        details: { instance: id },
      });
    }
    const version = await this.registry.requireVersion(inst.model, inst.version).catch(async (err: unknown) => {
      if (!(err instanceof McpError && err.code === 'MCP_VERSION_NOT_FOUND')) throw err;
      return this.registry.addVersion(inst.model, { version: inst.version }).catch(async (e: unknown) => {
        if (e instanceof McpError && e.code === 'MCP_DUPLICATE_ID') return this.registry.requireVersion(inst.model, inst.version);
        throw e;
      });
    });
    const options: WorkerInstanceOptions = { remoteInstanceId: inst.remoteInstanceId, worker: workerId, session: input.session };
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
      // a new endpoint or a new worker process (session): the call token changed, the instance reconnects
      const was = existing.options as Partial<WorkerInstanceOptions>;
      reload = existing.endpoint !== endpoint || existing.backend !== 'worker' || was.session !== input.session;
    }
    await this.registry.assignToWorker(id, {
      workerId,
      endpoint,
      options: { ...options },
      ...(inst.device ? { device: inst.device } : {}),
      ...(inst.runtime ? { runtime: inst.runtime } : {}),
    });
    if (reload && this.fleet.handle(id)?.loaded) await this.fleet.unload(id);
    try {
      await this.fleet.load(id);
      return undefined;
    } catch (err) {
      const e = toMcpError(err);
      this.logger.warn({ worker: workerId, instance: id, code: e.code }, `worker instance failed to load: ${e.message}`);
      return e;
    }
  }

  /** The token the gateway presents to this worker process (the worker asks for it before registering). */
  async workerCallToken(raw: unknown): Promise<string> {
    const input = parseInput(workerCallTokenSchema, raw);
    return this.workers.callToken(workerIdOf(input.name), input.session, input.endpoint);
  }

  /**
   * Operator: lets a worker serve these models (they must exist). The worker need not be running
   * yet: assign, then start it with its own credential. Answers with everything now assigned.
   */
  async assignWorkerModels(worker: string, modelIds: readonly string[]): Promise<string[]> {
    const workerId = this.assignableWorker(worker);
    const models = [...new Set(parseInput(assignedModelsSchema, modelIds, 'models'))];
    const found = await Promise.all(models.map((m) => this.registry.get(m)));
    const missing = models.filter((_, i) => !found[i]);
    if (missing.length) {
      throw new McpError('MCP_MODEL_NOT_FOUND', `no model ${missing.map((m) => `"${m}"`).join(', ')}: register it first`, {
        details: { models: missing },
      });
    }
    await this.workers.assign(workerId, models);
    this.logger.info({ worker: workerId, models }, 'models assigned to worker');
    const [now = []] = await this.workers.assignedModels([workerId]);
    return now;
  }

  /** Operator: takes models away from a worker; its instances of them leave routing at once. Answers with what stays assigned. */
  async unassignWorkerModels(worker: string, modelIds: readonly string[]): Promise<string[]> {
    const workerId = this.assignableWorker(worker);
    const models = [...new Set(parseInput(assignedModelsSchema, modelIds, 'models'))];
    await this.workers.inOrder(workerId, async () => {
      await this.workers.unassign(workerId, models);
      const [rows = []] = await this.registry.instancesByWorker([workerId]);
      for (const inst of rows) if (models.includes(inst.modelId) && inst.status !== 'unloaded') await this.unloadQuietly(inst.id, MODEL_UNASSIGNED);
    });
    this.logger.info({ worker: workerId, models }, 'models unassigned from worker');
    const [now = []] = await this.workers.assignedModels([workerId]);
    return now;
  }

  private assignableWorker(worker: string): string {
    const name = parseInput(workerNameSchema, worker, 'worker');
    const workerId = workerIdOf(name);
    if (workerId === EMBEDDED_WORKER_ID) {
      throw new McpError('MCP_VALIDATION_FAILED', `worker: the embedded worker serves every model with an in-process backend`, { details: { path: 'worker' } });
    }
    return workerId;
  }

  /** Records a heartbeat; a worker coming back from `unhealthy` gets its instances back into routing. */
  async workerHeartbeat(workerId: string, load?: HeartbeatLoad): Promise<WorkerView> {
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

  /**
   * Operator (or the retention sweep): forgets a worker that is gone, i.e. stopped (deregistered) or
   * not heartbeating: its instances are removed from the registry (unloaded here first), its model
   * assignments dropped and its row deleted. A worker still heartbeating is refused with
   * MCP_CONFLICT: stop it first (it deregisters on SIGTERM). Should it start again under that
   * name, it registers as a new worker and serves only what is assigned to it again.
   */
  async removeWorker(worker: string): Promise<WorkerView> {
    const workerId = workerIdOf(parseInput(workerNameSchema, worker, 'worker'));
    if (workerId === EMBEDDED_WORKER_ID) throw new McpError('MCP_CONFLICT', 'the embedded worker is the gateway process itself: it cannot be removed');
    return this.workers.inOrder(workerId, async () => {
      const w = await this.workers.require(workerId);
      const live = () =>
        new McpError('MCP_CONFLICT', `worker "${workerId}" is still heartbeating: stop it first (it deregisters on SIGTERM)`, {
          details: { worker: workerId, status: 'HEALTHY' },
        });
      if (w.status === 'healthy') throw live();
      // read before the row goes (instances.worker_id is set to null on delete)
      const [rows = []] = await this.registry.instancesByWorker([workerId]);
      const removed = await this.workers.deleteGone(workerId);
      if (!removed) throw live();
      for (const inst of rows) {
        await this.remove(inst.id).catch((err: unknown) => {
          // another replica's sweep may have removed it already
          if (!(err instanceof McpError && err.code === 'MCP_INSTANCE_NOT_FOUND')) throw err;
        });
      }
      this.logger.info({ worker: workerId, was: w.status, instances: rows.length }, 'worker removed');
      return removed;
    });
  }

  private async unloadQuietly(instanceId: string, reason: string): Promise<void> {
    await this.fleet.unload(instanceId, reason).catch((err) => this.logger.warn({ err, instance: instanceId }, 'unload failed'));
  }

  /**
   * Operator: asks a worker to load a model (it loads, then re-registers); the model is registered
   * when missing and assigned to the worker. On `embedded` the gateway loads it itself.
   */
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
    // an operator's order: the model exists (made here when missing) and is assigned, so the worker's re-registration is accepted
    if (!(await this.registry.get(input.model))) await this.registry.register({ id: input.model, task: input.task, versions: [] });
    await this.workers.assign(workerId, [input.model]);
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
    await this.drainAndUnload([row.id]);
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
