import { randomUUID } from 'node:crypto';
import { asc, eq, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { z } from 'zod';
import { TASKS } from '../inference/schema.ts';
import type { Database, Db } from '../db/client.ts';
import { instances, models, modelVersions, registryState, type ModelRouting } from '../db/schema.ts';
import { logBackgroundFailure } from '../db/storage-errors.ts';
import { McpError } from '../errors.ts';
import type { EventBus, ModelEvent } from '../events/bus.ts';
import type { PluginHost } from '../plugin/host.ts';
import { parseInput } from '../validation.ts';
import { appendInTransaction } from '../audit/chain.ts';
import { currentAuditContext } from '../audit/context.ts';
import type { AuditEntry } from '../audit/types.ts';
import { AddressPolicy, checkEndpoint, type EndpointSource } from '../security/address-policy.ts';
import { InstanceSecrets, SecretBox } from '../security/secrets.ts';
import { resourceRequirementsInputSchema, type ResourceRequirements } from '../resources/requirements.ts';
import { isAfter, RegistryView, type ModelEntry, type ViewDiff } from './registry-view.ts';

export type ModelRow = typeof models.$inferSelect;
export type VersionRow = typeof modelVersions.$inferSelect;
export type InstanceRow = typeof instances.$inferSelect;

export const INSTANCE_STATUSES = ['registered', 'loading', 'ready', 'draining', 'failed', 'unloaded'] as const;
export type InstanceStatus = (typeof INSTANCE_STATUSES)[number];
export { TASKS };

const id = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lower-case letters, digits, ".", "_" or "-", starting with a letter or digit, at most 63 characters');
const versionName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'letters, digits, ".", "_" or "-", at most 63 characters');

const instanceInputSchema = z.strictObject({
  id: id.optional(),
  backend: z.string().min(1),
  endpoint: z.string().min(1).optional(),
  device: z.string().optional(),
  weight: z.number().positive().max(1_000_000).default(1),
  options: z.record(z.string(), z.unknown()).default({}),
});
const versionInputSchema = z.strictObject({
  version: versionName,
  description: z.string().max(2000).default(''),
  instances: z.array(instanceInputSchema).max(256).default([]),
  /** What one instance needs; with it, the placement reconciler keeps `replicas` instances placed on workers. */
  resources: resourceRequirementsInputSchema.optional(),
});
const registerModelSchema = z.strictObject({
  id,
  name: z.string().min(1).max(200).optional(),
  description: z.string().max(2000).default(''),
  task: z.enum(TASKS),
  labels: z.record(z.string().max(63), z.string().max(200)).default({}),
  defaultVersion: versionName.optional(),
  versions: z.array(versionInputSchema).max(64).default([]),
});
const updateModelSchema = z.strictObject({
  name: z.string().min(1).max(200).optional(),
  description: z.string().max(2000).optional(),
  labels: z.record(z.string().max(63), z.string().max(200)).optional(),
  defaultVersion: versionName.optional(),
});

/** What a worker's registration records on one of its instances (ModelRegistry.assignToWorker). */
export interface WorkerAssignment {
  workerId: string;
  endpoint: string;
  options: Record<string, unknown>;
  device?: string;
  runtime?: string;
}

export interface ModelFilter {
  task?: string;
  /** Matches id or name, case-insensitive substring. */
  search?: string;
  /** Every label must match. */
  labels?: Record<string, string>;
  /** Only these ids (a principal limited to some models). */
  ids?: readonly string[];
}

export interface ModelPage {
  items: ModelRow[];
  total: number;
  endCursor: string | null;
  hasNextPage: boolean;
}

const encodeCursor = (row: ModelRow) => Buffer.from(JSON.stringify([row.createdAt.toISOString(), row.id])).toString('base64url');
function decodeCursor(cursor: string): [Date, string] {
  try {
    const [at, rid] = JSON.parse(Buffer.from(cursor, 'base64url').toString()) as [string, string];
    const d = new Date(at);
    if (Number.isNaN(d.getTime()) || typeof rid !== 'string') throw new Error('bad');
    return [d, rid];
  } catch {
    throw new McpError('MCP_VALIDATION_FAILED', 'after: not a cursor returned by this API', { details: { path: 'after' } });
  }
}

/**
 * Models, versions and instances: the desired state, stored in PostgreSQL/PGlite. The one writer
 * of the `models`, `model_versions` and `instances` tables; every change is published on
 * `modelEvents`, tagged with this registry's origin.
 */
export class ModelRegistry {
  /** Tags the events this registry publishes, so this replica's Fleet can tell its own changes from other replicas'. */
  readonly origin = randomUUID();
  /** Models, versions and instances in memory: every read is answered from here. */
  private readonly view = new RegistryView();
  private synced = -1;
  private readonly seen = new Set<number>();
  private queuedResync: Promise<void> | undefined;
  private lastResync: Promise<void> = Promise.resolve();
  private readonly listeners: Array<(change: RegistryChange) => Promise<void>> = [];

  constructor(
    private readonly database: Database,
    private readonly plugins: PluginHost,
    private readonly events: EventBus,
    /** Endpoint checks and secret options (security.upstream, security.secrets). */
    private readonly upstream: { policy: AddressPolicy; secrets: InstanceSecrets } = {
      policy: new AddressPolicy(),
      secrets: new InstanceSecrets({ box: SecretBox.fromEnv() }),
    },
  ) {}

  /** Throws MCP_VALIDATION_FAILED naming `path` when an endpoint given through the API is not allowed (scheme, address policy). */
  checkApiEndpoint(endpoint: string, path: string): void {
    checkEndpoint(this.upstream.policy, endpoint, 'api', path);
  }

  /** The option paths the instance's backend declares secret (besides the built-in names). */
  secretOptionsOf(backend: string): readonly string[] {
    return this.plugins.has('backend', backend) ? (this.plugins.get('backend', backend).secretOptions ?? []) : [];
  }

  /** The instance's options as the backend receives them at load: secret references read, literals decrypted. */
  resolveOptions(row: Pick<InstanceRow, 'backend' | 'options'>): Promise<Record<string, unknown>> {
    return this.upstream.secrets.resolve(row.options, this.secretOptionsOf(row.backend));
  }

  /** The instance's options as any API shows them: secret literals as "[redacted]". */
  redactedOptions(row: Pick<InstanceRow, 'backend' | 'options'>): unknown {
    return this.upstream.secrets.redact(row.options, this.secretOptionsOf(row.backend));
  }

  private get db() {
    return this.database.db;
  }

  private publish(event: Omit<ModelEvent, 'at' | 'origin'>): void {
    this.events.publish('modelEvents', { ...event, at: new Date(), origin: this.origin });
  }

  private checkBackend(inst: z.infer<typeof instanceInputSchema>, path: string, source: EndpointSource): Record<string, unknown> {
    if (!this.plugins.has('backend', inst.backend)) {
      throw new McpError(
        'MCP_UNKNOWN_PLUGIN',
        `${path}.backend: no backend plugin named "${inst.backend}" (configured: ${this.plugins.names('backend').join(', ')})`,
        {
          details: { path: `${path}.backend`, available: this.plugins.names('backend') },
        },
      );
    }
    if (inst.endpoint !== undefined) checkEndpoint(this.upstream.policy, inst.endpoint, source, `${path}.endpoint`);
    const schema = this.plugins.get('backend', inst.backend).instanceOptions;
    const options = schema ? parseInput(schema, inst.options, `${path}.options`) : inst.options;
    return this.upstream.secrets.seal(options, this.secretOptionsOf(inst.backend), source, `${path}.options`);
  }

  private instanceRow(
    modelId: string,
    versionId: string,
    inst: z.infer<typeof instanceInputSchema>,
    path: string,
    source: EndpointSource = 'api',
  ): typeof instances.$inferInsert {
    const options = this.checkBackend(inst, path, source);
    return {
      id: inst.id ?? `${modelId}-${randomUUID().slice(0, 8)}`,
      modelId,
      versionId,
      backend: inst.backend,
      endpoint: inst.endpoint ?? null,
      device: inst.device ?? null,
      weight: inst.weight,
      options,
      status: 'registered',
    };
  }

  /** Models that pass the filter, oldest first, one page of them (from memory: no SQL). */
  async list(filter: ModelFilter = {}, page: { first?: number; after?: string } = {}): Promise<ModelPage> {
    const first = Math.min(Math.max(page.first ?? 50, 1), 500);
    const all = this.view.matching(filter);
    let rest = all;
    if (page.after) {
      const [at, rid] = decodeCursor(page.after);
      rest = all.filter((m) => isAfter(m, at, rid));
    }
    const items = rest.slice(0, first);
    return { items, total: all.length, endCursor: items.length ? encodeCursor(items[items.length - 1]!) : null, hasNextPage: rest.length > first };
  }

  async get(modelId: string): Promise<ModelRow | undefined> {
    return this.view.model(modelId);
  }

  /**
   * The model from memory or, when this replica does not know it, from storage (then kept): for
   * the router, so a model whose registration this replica has not heard of yet is found anyway.
   */
  async find(modelId: string): Promise<ModelRow | undefined> {
    return this.view.model(modelId) ?? (await this.refreshModel(modelId));
  }

  async require(modelId: string): Promise<ModelRow> {
    const row = await this.get(modelId);
    if (!row) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${modelId}"`, { details: { model: modelId } });
    return row;
  }

  /** A model's versions, oldest first (from memory, synchronously: GraphQL resolves them without a promise). */
  versionsOf(modelId: string): readonly VersionRow[] {
    return this.view.versionsOf(modelId);
  }

  /** Versions whose resource requirements are set (the placement reconciler keeps them placed), with their model. */
  versionsWithResources(): Array<{ model: ModelRow; version: VersionRow; resources: ResourceRequirements }> {
    return this.view
      .models()
      .flatMap((model) => this.view.versionsOf(model.id).flatMap((version) => (version.resources ? [{ model, version, resources: version.resources }] : [])));
  }

  /** Sets (null: clears) what one instance of the version needs; the reconciler places or trims its instances to match. */
  async setVersionResources(modelId: string, version: string, resources: ResourceRequirements | null): Promise<VersionRow> {
    const v = await this.requireVersion(modelId, version);
    const { result: row, version: registryVersion } = await this.write(modelId, async (tx) => {
      const [r] = await tx.update(modelVersions).set({ resources }).where(eq(modelVersions.id, v.id)).returning();
      if (!r) throw new McpError('MCP_VERSION_NOT_FOUND', `model "${modelId}" has no version "${version}"`, { details: { model: modelId, version } });
      // measured figures are the gateway's own bookkeeping, not an admin change
      if (resources?.measuredBytes === undefined || resources.memoryBytes !== undefined || v.resources?.measuredBytes === resources.measuredBytes) {
        await appendInTransaction(tx, [changeEntry('version.resources', `${modelId}@${version}`, modelId, resources ? { ...resources } : { cleared: true })]);
      }
      return r;
    });
    this.publish({ type: 'MODEL_UPDATED', modelId, version, registryVersion });
    return row;
  }

  /** A version's instances, oldest first (from memory, synchronously). */
  instancesOf(versionId: string): readonly InstanceRow[] {
    return this.view.instancesOf(versionId);
  }

  /** Batch loaders (answered from memory). */
  async versionsByModel(modelIds: readonly string[]): Promise<VersionRow[][]> {
    return modelIds.map((id) => this.view.versionsOf(id));
  }

  async instancesByVersion(versionIds: readonly string[]): Promise<InstanceRow[][]> {
    return versionIds.map((id) => this.view.instancesOf(id));
  }

  async instancesByModel(modelIds: readonly string[]): Promise<InstanceRow[][]> {
    return modelIds.map((id) => this.view.instancesOfModel(id));
  }

  /** Instances worker processes registered, per worker (DataLoader order). */
  async instancesByWorker(workerIds: readonly string[]): Promise<InstanceRow[][]> {
    return groupBy(workerIds, workerIds.length ? this.view.allInstances() : [], (r) => r.workerId ?? '');
  }

  /** Instances no worker process registered (served by a backend the gateway runs or reaches itself). */
  async instancesWithoutWorker(): Promise<InstanceRow[]> {
    return this.view.allInstances().filter((i) => i.workerId === null);
  }

  /** Each model's status, derived from its stored instances (as every replica sees them). */
  async statusesOf(modelIds: readonly string[]): Promise<InstanceStatus[]> {
    return (await this.instancesByModel(modelIds)).map(modelStatus);
  }

  async getInstance(instanceId: string): Promise<(InstanceRow & { version: string }) | undefined> {
    const found = this.view.instance(instanceId);
    return found ? { ...found.row, version: found.version } : undefined;
  }

  async requireInstance(instanceId: string): Promise<InstanceRow & { version: string }> {
    const r = await this.getInstance(instanceId);
    if (!r) throw new McpError('MCP_INSTANCE_NOT_FOUND', `no instance "${instanceId}"`, { details: { instance: instanceId } });
    return r;
  }

  /** `source: 'config'` for models seeded from the configuration file (file endpoints and file: secrets accepted anywhere). */
  async register(raw: unknown, source: EndpointSource = 'api'): Promise<ModelRow> {
    const input = parseInput(registerModelSchema, raw);
    const names = input.versions.map((v) => v.version);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) throw new McpError('MCP_VALIDATION_FAILED', `input.versions: version "${dup}" is listed twice`, { details: { path: 'input.versions' } });
    const defaultVersion = input.defaultVersion ?? input.versions[0]?.version ?? null;
    if (defaultVersion && input.versions.length && !names.includes(defaultVersion)) {
      throw new McpError('MCP_VERSION_NOT_FOUND', `input.defaultVersion: "${defaultVersion}" is not among the versions`, {
        details: { path: 'input.defaultVersion' },
      });
    }
    const versionRows = input.versions.map((v) => ({
      id: randomUUID(),
      modelId: input.id,
      version: v.version,
      description: v.description,
      resources: v.resources ?? null,
    }));
    const instanceRows = input.versions.flatMap((v, vi) =>
      v.instances.map((inst, ii) => this.instanceRow(input.id, versionRows[vi]!.id, inst, `input.versions.${vi}.instances.${ii}`, source)),
    );
    const { result: row, version } = await this.write(input.id, async (tx) => {
      const [inserted] = await tx
        .insert(models)
        .values({
          id: input.id,
          name: input.name ?? input.id,
          description: input.description,
          task: input.task,
          labels: input.labels,
          defaultVersion,
        })
        .onConflictDoNothing()
        .returning();
      if (!inserted) throw new McpError('MCP_DUPLICATE_ID', `a model with id "${input.id}" already exists`, { details: { path: 'input.id', id: input.id } });
      if (versionRows.length) await tx.insert(modelVersions).values(versionRows);
      if (instanceRows.length) await tx.insert(instances).values(instanceRows);
      await appendInTransaction(tx, [changeEntry('model.register', input.id, input.id, { versions: names, instances: instanceRows.length })]);
      return inserted;
    });
    this.publish({ type: 'MODEL_REGISTERED', modelId: row.id, registryVersion: version });
    return row;
  }

  async update(modelId: string, raw: unknown): Promise<ModelRow> {
    const patch = parseInput(updateModelSchema, raw);
    if (patch.defaultVersion) await this.requireVersion(modelId, patch.defaultVersion);
    const { result: row, version } = await this.write(modelId, async (tx) => {
      const [r] = await tx
        .update(models)
        .set({ ...patch, updatedAt: new Date() })
        .where(eq(models.id, modelId))
        .returning();
      if (!r) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${modelId}"`, { details: { model: modelId } });
      await appendInTransaction(tx, [changeEntry('model.update', modelId, modelId, { fields: Object.keys(patch), ...patch })]);
      return r;
    });
    this.publish({ type: 'MODEL_UPDATED', modelId, registryVersion: version });
    return row;
  }

  async setRouting(modelId: string, routing: ModelRouting): Promise<ModelRow> {
    const { result: row, version } = await this.write(modelId, async (tx) => {
      const [r] = await tx.update(models).set({ routing, updatedAt: new Date() }).where(eq(models.id, modelId)).returning();
      if (!r) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${modelId}"`, { details: { model: modelId } });
      await appendInTransaction(tx, [changeEntry('model.routing', modelId, modelId, { routing })]);
      return r;
    });
    this.publish({ type: 'TRAFFIC_CHANGED', modelId, registryVersion: version });
    return row;
  }

  async delete(modelId: string): Promise<ModelRow> {
    const { result: row, version } = await this.write(modelId, async (tx) => {
      const [r] = await tx.delete(models).where(eq(models.id, modelId)).returning();
      if (!r) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${modelId}"`, { details: { model: modelId } });
      await appendInTransaction(tx, [changeEntry('model.delete', modelId, modelId)]);
      return r;
    });
    this.publish({ type: 'MODEL_DELETED', modelId, registryVersion: version });
    return row;
  }

  async requireVersion(modelId: string, version: string): Promise<VersionRow> {
    const row = this.view.versionsOf(modelId).find((v) => v.version === version);
    if (!row) {
      await this.require(modelId);
      throw new McpError('MCP_VERSION_NOT_FOUND', `model "${modelId}" has no version "${version}"`, { details: { model: modelId, version } });
    }
    return row;
  }

  async addVersion(modelId: string, raw: unknown): Promise<VersionRow> {
    const input = parseInput(versionInputSchema, raw);
    const model = await this.require(modelId);
    const versionId = randomUUID();
    const instanceRows = input.instances.map((inst, i) => this.instanceRow(modelId, versionId, inst, `input.instances.${i}`));
    const { result: row, version } = await this.write(modelId, async (tx) => {
      const [v] = await tx
        .insert(modelVersions)
        .values({ id: versionId, modelId, version: input.version, description: input.description, resources: input.resources ?? null })
        .onConflictDoNothing()
        .returning();
      if (!v) throw new McpError('MCP_DUPLICATE_ID', `model "${modelId}" already has version "${input.version}"`, { details: { path: 'input.version' } });
      if (instanceRows.length) await tx.insert(instances).values(instanceRows);
      if (!model.defaultVersion) await tx.update(models).set({ defaultVersion: input.version }).where(eq(models.id, modelId));
      await appendInTransaction(tx, [changeEntry('version.add', `${modelId}@${input.version}`, modelId, { instances: instanceRows.length })]);
      return v;
    });
    this.publish({ type: 'VERSION_ADDED', modelId, version: input.version, registryVersion: version });
    return row;
  }

  async addInstance(modelId: string, version: string, raw: unknown): Promise<InstanceRow> {
    const input = parseInput(instanceInputSchema, raw);
    const v = await this.requireVersion(modelId, version);
    const values = this.instanceRow(modelId, v.id, input, 'input');
    const { result: row, version: registryVersion } = await this.write(modelId, async (tx) => {
      const [r] = await tx.insert(instances).values(values).onConflictDoNothing().returning();
      if (!r) throw new McpError('MCP_DUPLICATE_ID', `an instance with id "${input.id}" already exists`, { details: { path: 'input.id' } });
      await appendInTransaction(tx, [changeEntry('instance.add', r.id, modelId, { version, backend: r.backend })]);
      return r;
    });
    this.publish({ type: 'INSTANCE_ADDED', modelId, version, instanceId: row.id, registryVersion });
    return row;
  }

  async removeInstance(instanceId: string): Promise<InstanceRow & { version: string }> {
    const inst = await this.requireInstance(instanceId);
    const { version: registryVersion } = await this.write(inst.modelId, async (tx) => {
      await tx.delete(instances).where(eq(instances.id, instanceId));
      await appendInTransaction(tx, [changeEntry('instance.remove', instanceId, inst.modelId, { version: inst.version })]);
    });
    this.publish({ type: 'INSTANCE_REMOVED', modelId: inst.modelId, version: inst.version, instanceId, registryVersion });
    return inst;
  }

  /** Records that a worker serves the instance (backend `worker`, at the worker's endpoint); no event: the caller loads it next. */
  async assignToWorker(instanceId: string, a: WorkerAssignment): Promise<void> {
    this.checkApiEndpoint(a.endpoint, 'input.endpoint');
    await this.writeInstance(instanceId, {
      workerId: a.workerId,
      endpoint: a.endpoint,
      backend: 'worker',
      options: a.options,
      ...(a.device ? { device: a.device } : {}),
      ...(a.runtime ? { runtime: a.runtime } : {}),
    });
  }

  async setInstanceStatus(
    instanceId: string,
    status: InstanceStatus,
    extra: { reason?: string | null; runtime?: string; device?: string } = {},
  ): Promise<void> {
    const changed = await this.writeInstance(instanceId, {
      status,
      statusReason: extra.reason ?? null,
      ...(extra.runtime ? { runtime: extra.runtime } : {}),
      ...(extra.device ? { device: extra.device } : {}),
    });
    if (changed) this.publish({ type: 'INSTANCE_STATUS', modelId: changed.row.modelId, instanceId, status, registryVersion: changed.version });
  }

  // ─────────────── the in-memory view: writes, cold start, catch-up ───────────────

  /**
   * Runs a change to one model in a transaction that also bumps the registry version and reads the
   * model back, then puts it in memory before the caller answers or publishes (so the next read,
   * here, sees it).
   */
  private async write<T>(modelId: string, change: (tx: Db) => Promise<T>): Promise<{ result: T; version: number }> {
    const { result, version, entry } = await this.db.transaction(async (tx) => {
      const result = await change(tx);
      const version = await bumpVersion(tx);
      return { result, version, entry: await readEntry(tx, modelId) };
    });
    // Refused only when memory holds a later state of the model that may lack this change (a status
    // change of another write, patched in first): read the model again, from a snapshot that has both.
    if (!this.view.put(modelId, entry, version)) await this.refreshModel(modelId);
    this.advance(version);
    return { result, version };
  }

  /**
   * One instance's row changes (status, worker): the changed row replaces the one in memory. Short
   * transaction (the version row stays locked only until the commit), as loads at start make many.
   */
  private async writeInstance(instanceId: string, set: Partial<typeof instances.$inferInsert>): Promise<{ row: InstanceRow; version: number } | undefined> {
    const done = await this.db.transaction(async (tx) => {
      const [row] = await tx
        .update(instances)
        .set({ ...set, updatedAt: new Date() })
        .where(eq(instances.id, instanceId))
        .returning();
      return row ? { row, version: await bumpVersion(tx) } : undefined;
    });
    if (!done) return undefined;
    this.view.patchInstance(done.row, done.version);
    this.advance(done.version);
    return done;
  }

  /** The registry version this replica's memory is known to reflect in full (every change up to it applied). */
  get syncedVersion(): number {
    return this.synced;
  }

  /** Notes that the change at registry version v is in memory; the synced version moves up over every gap filled. */
  private advance(v: number): void {
    if (v <= this.synced) return;
    this.seen.add(v);
    while (this.seen.delete(this.synced + 1)) this.synced++;
  }

  /** Cold start: reads the whole registry into memory. */
  async load(): Promise<void> {
    await this.resync();
  }

  /**
   * Reads the whole registry again and makes memory agree with it (the bus reconnected, or the
   * stored version moved past what this replica heard of); listeners learn which models were added,
   * removed or changed. Calls made while one runs share the next run.
   */
  resync(): Promise<void> {
    if (!this.queuedResync) {
      const run = this.lastResync
        .catch(() => {})
        .then(() => {
          this.queuedResync = undefined;
          return this.fullSync();
        });
      this.queuedResync = run;
      this.lastResync = run;
    }
    return this.queuedResync;
  }

  private async fullSync(): Promise<void> {
    const { version, value } = await this.snapshot(readAll);
    const diff = this.view.replaceAll(value, version);
    // Models changed here meanwhile were left as they were; one may have been patched (a status) over
    // an older state: read those again, from a newer snapshot.
    for (const modelId of this.view.newerThan(version)) {
      await this.readModel(modelId);
      if (!diff.changed.includes(modelId)) diff.changed.push(modelId);
    }
    if (diff.added.length || diff.removed.length || diff.changed.length) await this.notify({ kind: 'resync', diff });
    if (version > this.synced) this.synced = version;
    for (const v of this.seen) if (v <= this.synced) this.seen.delete(v);
  }

  /**
   * Reads one model from storage into memory; the model as memory has it then (undefined when it is
   * not stored). A read that memory refuses (it holds a later state of the model, which may lack what
   * this read has) is made again once, from a newer snapshot; `applied` tells whether one was taken.
   */
  private async refreshModel(modelId: string): Promise<ModelRow | undefined> {
    return (await this.readModel(modelId)).model;
  }

  private async readModel(modelId: string): Promise<{ model: ModelRow | undefined; applied: boolean }> {
    let applied = false;
    for (let attempt = 0; attempt < 2 && !applied; attempt++) {
      const { version, value } = await this.snapshot((tx) => readEntry(tx, modelId));
      applied = value || this.view.model(modelId) ? this.view.put(modelId, value, version) : true;
    }
    return { model: this.view.model(modelId), applied };
  }

  /** Reads inside one read-only snapshot, with the registry version that snapshot reflects. */
  private snapshot<T>(read: (tx: Db) => Promise<T>): Promise<{ version: number; value: T }> {
    return this.db.transaction(async (tx) => ({ version: await readVersion(tx), value: await read(tx) }), {
      isolationLevel: 'repeatable read',
      accessMode: 'read only',
    });
  }

  /** Called, in order, with every change another replica made (after memory has it) and with what a resync changed. */
  onChange(listener: (change: RegistryChange) => Promise<void>): void {
    this.listeners.push(listener);
  }

  private async notify(change: RegistryChange): Promise<void> {
    for (const l of this.listeners) await l(change);
  }

  /**
   * Keeps memory current with the other replicas: applies their registry events (reading the model
   * from storage), re-reads everything when the bus reconnects (events sent while it was down are
   * lost), and every `checkEveryMs` compares the stored registry version with its own, re-reading
   * when it is behind, which bounds how stale memory can be whatever happens to the bus.
   */
  follow(opts: { signal: AbortSignal; checkEveryMs: number; logger: Logger }): void {
    const { signal, logger } = opts;
    const resync = (why: string) =>
      this.resync().catch((err: unknown) => logBackgroundFailure(logger, err, { why }, 'could not re-read the registry; will retry at the next check'));
    void (async () => {
      for await (const e of this.events.subscribe('modelEvents', signal)) {
        if (e.origin === this.origin || e.type === 'SCALING_DECISION') continue;
        try {
          // Counted as seen only when memory took the read (else the periodic check re-reads everything).
          const { applied } = await this.readModel(e.modelId);
          if (applied && e.registryVersion !== undefined) this.advance(e.registryVersion);
          await this.notify({ kind: 'event', event: e });
        } catch (err) {
          logBackgroundFailure(logger, err, { event: e.type, model: e.modelId }, 'could not apply a registry event');
        }
      }
    })();
    this.events.onReconnect?.(() => {
      logger.info('event bus reconnected: re-reading the registry');
      void resync('bus reconnected');
    }, signal);
    let checking = false;
    const timer = setInterval(() => {
      if (checking) return;
      checking = true;
      readVersion(this.db)
        .then((stored) => (stored > this.synced ? resync('registry version moved') : undefined))
        .catch((err: unknown) => logBackgroundFailure(logger, err, {}, 'could not read the registry version'))
        .finally(() => {
          checking = false;
        });
    }, opts.checkEveryMs);
    timer.unref();
    signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  }
}

/** What ModelRegistry.onChange listeners hear: another replica's change, or what a full re-read changed. */
export type RegistryChange = { kind: 'event'; event: ModelEvent } | { kind: 'resync'; diff: ViewDiff };

/** Bumps the registry version inside the caller's write transaction (the row lock orders writers); the new version. */
async function bumpVersion(tx: Db): Promise<number> {
  const [row] = await tx
    .insert(registryState)
    .values({ id: 1, version: 1 })
    .onConflictDoUpdate({ target: registryState.id, set: { version: sql`${registryState.version} + 1` } })
    .returning({ version: registryState.version });
  return Number(row!.version);
}

async function readVersion(db: Db): Promise<number> {
  const [row] = await db.select({ version: registryState.version }).from(registryState).where(eq(registryState.id, 1));
  return Number(row?.version ?? 0);
}

/** One model with its versions and instances; null when there is no such model. */
async function readEntry(db: Db, modelId: string): Promise<ModelEntry | null> {
  const [model] = await db.select().from(models).where(eq(models.id, modelId));
  if (!model) return null;
  // One after the other: inside a transaction the statements share one connection.
  const versions = await db.select().from(modelVersions).where(eq(modelVersions.modelId, modelId));
  const rows = await db.select().from(instances).where(eq(instances.modelId, modelId));
  return { model, versions, instances: rows };
}

/** Every model with its versions and instances. */
async function readAll(db: Db): Promise<ModelEntry[]> {
  const modelRows = await db.select().from(models).orderBy(asc(models.createdAt), asc(models.id));
  const versionRows = await db.select().from(modelVersions);
  const instanceRows = await db.select().from(instances);
  const entries = new Map<string, ModelEntry>(modelRows.map((m) => [m.id, { model: m, versions: [], instances: [] }]));
  for (const v of versionRows) entries.get(v.modelId)?.versions.push(v);
  for (const i of instanceRows) entries.get(i.modelId)?.instances.push(i);
  return [...entries.values()];
}

/**
 * The audit row of an admin change, written in the change's own transaction (so one never commits
 * without the other). The actor is the request's (GraphQL mutations run in an audit context), or
 * `system` for changes the gateway makes itself (seeding, automatic canary rollback).
 */
function changeEntry(action: string, target: string, model: string, details?: Record<string, unknown>): AuditEntry {
  return { ...(currentAuditContext() ?? { actor: 'system' }), action, target, model, outcome: 'ok', ...(details ? { details } : {}) };
}

/** Rows grouped under each key, in key order (DataLoader batch results). */
function groupBy<R>(keys: readonly string[], rows: R[], keyOf: (r: R) => string): R[][] {
  const groups = new Map<string, R[]>(keys.map((k) => [k, []]));
  for (const r of rows) groups.get(keyOf(r))?.push(r);
  return keys.map((k) => groups.get(k)!);
}

/** A model's status, derived from its instances. */
export function modelStatus(rows: ReadonlyArray<{ status: string }>): InstanceStatus {
  if (rows.some((r) => r.status === 'ready')) return 'ready';
  if (rows.some((r) => r.status === 'loading')) return 'loading';
  if (rows.some((r) => r.status === 'draining')) return 'draining';
  if (rows.length && rows.every((r) => r.status === 'failed')) return 'failed';
  if (rows.length && rows.every((r) => r.status === 'unloaded')) return 'unloaded';
  return 'registered';
}
