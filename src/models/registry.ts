import { randomUUID } from 'node:crypto';
import { and, asc, count, eq, gt, ilike, inArray, isNull, or, sql, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { TASKS } from '../inference/schema.ts';
import type { Database } from '../db/client.ts';
import { instances, models, modelVersions, type ModelRouting } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import type { EventBus, ModelEvent } from '../events/bus.ts';
import type { PluginHost } from '../plugin/host.ts';
import { parseInput } from '../validation.ts';
import { appendInTransaction } from '../audit/chain.ts';
import { currentAuditContext } from '../audit/context.ts';
import type { AuditEntry } from '../audit/types.ts';
import { AddressPolicy, checkEndpoint, type EndpointSource } from '../security/address-policy.ts';
import { InstanceSecrets, SecretBox } from '../security/secrets.ts';

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

  async list(filter: ModelFilter = {}, page: { first?: number; after?: string } = {}): Promise<ModelPage> {
    const first = Math.min(Math.max(page.first ?? 50, 1), 500);
    const where: SQL[] = [];
    if (filter.task) where.push(eq(models.task, filter.task));
    if (filter.search) {
      const like = `%${filter.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      where.push(or(ilike(models.id, like), ilike(models.name, like))!);
    }
    if (filter.ids) where.push(filter.ids.length ? inArray(models.id, [...filter.ids]) : sql`false`);
    if (filter.labels && Object.keys(filter.labels).length) where.push(sql`${models.labels} @> ${JSON.stringify(filter.labels)}::jsonb`);
    const base = where.length ? and(...where) : undefined;
    const pageWhere = [...where];
    if (page.after) {
      const [at, rid] = decodeCursor(page.after);
      pageWhere.push(or(gt(models.createdAt, at), and(eq(models.createdAt, at), gt(models.id, rid)))!);
    }
    const [rows, totals] = await Promise.all([
      this.db
        .select()
        .from(models)
        .where(pageWhere.length ? and(...pageWhere) : undefined)
        .orderBy(asc(models.createdAt), asc(models.id))
        .limit(first + 1),
      this.db.select({ n: count() }).from(models).where(base),
    ]);
    const items = rows.slice(0, first);
    return { items, total: totals[0]?.n ?? 0, endCursor: items.length ? encodeCursor(items[items.length - 1]!) : null, hasNextPage: rows.length > first };
  }

  async get(modelId: string): Promise<ModelRow | undefined> {
    const [row] = await this.db.select().from(models).where(eq(models.id, modelId));
    return row;
  }

  async require(modelId: string): Promise<ModelRow> {
    const row = await this.get(modelId);
    if (!row) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${modelId}"`, { details: { model: modelId } });
    return row;
  }

  /** Batch loaders for DataLoader: one statement for many keys. */
  async versionsByModel(modelIds: readonly string[]): Promise<VersionRow[][]> {
    const rows = await this.db
      .select()
      .from(modelVersions)
      .where(inArray(modelVersions.modelId, [...modelIds]))
      .orderBy(asc(modelVersions.createdAt), asc(modelVersions.version));
    return groupBy(modelIds, rows, (r) => r.modelId);
  }

  async instancesByVersion(versionIds: readonly string[]): Promise<InstanceRow[][]> {
    const rows = await this.db
      .select()
      .from(instances)
      .where(inArray(instances.versionId, [...versionIds]))
      .orderBy(asc(instances.createdAt), asc(instances.id));
    return groupBy(versionIds, rows, (r) => r.versionId);
  }

  async instancesByModel(modelIds: readonly string[]): Promise<InstanceRow[][]> {
    const rows = await this.db
      .select()
      .from(instances)
      .where(inArray(instances.modelId, [...modelIds]))
      .orderBy(asc(instances.createdAt), asc(instances.id));
    return groupBy(modelIds, rows, (r) => r.modelId);
  }

  /** Instances worker processes registered, per worker (DataLoader order). */
  async instancesByWorker(workerIds: readonly string[]): Promise<InstanceRow[][]> {
    const rows = workerIds.length
      ? await this.db
          .select()
          .from(instances)
          .where(inArray(instances.workerId, [...workerIds]))
          .orderBy(asc(instances.createdAt), asc(instances.id))
      : [];
    return groupBy(workerIds, rows, (r) => r.workerId ?? '');
  }

  /** Instances no worker process registered (served by a backend the gateway runs or reaches itself). */
  async instancesWithoutWorker(): Promise<InstanceRow[]> {
    return this.db.select().from(instances).where(isNull(instances.workerId)).orderBy(asc(instances.createdAt), asc(instances.id));
  }

  /** Each model's status, derived from its stored instances (as every replica sees them). */
  async statusesOf(modelIds: readonly string[]): Promise<InstanceStatus[]> {
    return (await this.instancesByModel(modelIds)).map(modelStatus);
  }

  async getInstance(instanceId: string): Promise<(InstanceRow & { version: string }) | undefined> {
    const [r] = await this.db
      .select({ i: instances, version: modelVersions.version })
      .from(instances)
      .innerJoin(modelVersions, eq(instances.versionId, modelVersions.id))
      .where(eq(instances.id, instanceId));
    return r ? { ...r.i, version: r.version } : undefined;
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
    const versionRows = input.versions.map((v) => ({ id: randomUUID(), modelId: input.id, version: v.version, description: v.description }));
    const instanceRows = input.versions.flatMap((v, vi) =>
      v.instances.map((inst, ii) => this.instanceRow(input.id, versionRows[vi]!.id, inst, `input.versions.${vi}.instances.${ii}`, source)),
    );
    const row = await this.db.transaction(async (tx) => {
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
    this.publish({ type: 'MODEL_REGISTERED', modelId: row.id });
    return row;
  }

  async update(modelId: string, raw: unknown): Promise<ModelRow> {
    const patch = parseInput(updateModelSchema, raw);
    if (patch.defaultVersion) await this.requireVersion(modelId, patch.defaultVersion);
    const row = await this.db.transaction(async (tx) => {
      const [r] = await tx
        .update(models)
        .set({ ...patch, updatedAt: new Date() })
        .where(eq(models.id, modelId))
        .returning();
      if (!r) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${modelId}"`, { details: { model: modelId } });
      await appendInTransaction(tx, [changeEntry('model.update', modelId, modelId, { fields: Object.keys(patch), ...patch })]);
      return r;
    });
    this.publish({ type: 'MODEL_UPDATED', modelId });
    return row;
  }

  async setRouting(modelId: string, routing: ModelRouting): Promise<ModelRow> {
    const row = await this.db.transaction(async (tx) => {
      const [r] = await tx.update(models).set({ routing, updatedAt: new Date() }).where(eq(models.id, modelId)).returning();
      if (!r) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${modelId}"`, { details: { model: modelId } });
      await appendInTransaction(tx, [changeEntry('model.routing', modelId, modelId, { routing })]);
      return r;
    });
    this.publish({ type: 'TRAFFIC_CHANGED', modelId });
    return row;
  }

  async delete(modelId: string): Promise<ModelRow> {
    const row = await this.db.transaction(async (tx) => {
      const [r] = await tx.delete(models).where(eq(models.id, modelId)).returning();
      if (!r) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${modelId}"`, { details: { model: modelId } });
      await appendInTransaction(tx, [changeEntry('model.delete', modelId, modelId)]);
      return r;
    });
    this.publish({ type: 'MODEL_DELETED', modelId });
    return row;
  }

  async requireVersion(modelId: string, version: string): Promise<VersionRow> {
    const [row] = await this.db
      .select()
      .from(modelVersions)
      .where(and(eq(modelVersions.modelId, modelId), eq(modelVersions.version, version)));
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
    const row = await this.db.transaction(async (tx) => {
      const [v] = await tx
        .insert(modelVersions)
        .values({ id: versionId, modelId, version: input.version, description: input.description })
        .onConflictDoNothing()
        .returning();
      if (!v) throw new McpError('MCP_DUPLICATE_ID', `model "${modelId}" already has version "${input.version}"`, { details: { path: 'input.version' } });
      if (instanceRows.length) await tx.insert(instances).values(instanceRows);
      if (!model.defaultVersion) await tx.update(models).set({ defaultVersion: input.version }).where(eq(models.id, modelId));
      await appendInTransaction(tx, [changeEntry('version.add', `${modelId}@${input.version}`, modelId, { instances: instanceRows.length })]);
      return v;
    });
    this.publish({ type: 'VERSION_ADDED', modelId, version: input.version });
    return row;
  }

  async addInstance(modelId: string, version: string, raw: unknown): Promise<InstanceRow> {
    const input = parseInput(instanceInputSchema, raw);
    const v = await this.requireVersion(modelId, version);
    const values = this.instanceRow(modelId, v.id, input, 'input');
    const row = await this.db.transaction(async (tx) => {
      const [r] = await tx.insert(instances).values(values).onConflictDoNothing().returning();
      if (!r) throw new McpError('MCP_DUPLICATE_ID', `an instance with id "${input.id}" already exists`, { details: { path: 'input.id' } });
      await appendInTransaction(tx, [changeEntry('instance.add', r.id, modelId, { version, backend: r.backend })]);
      return r;
    });
    this.publish({ type: 'INSTANCE_ADDED', modelId, version, instanceId: row.id });
    return row;
  }

  async removeInstance(instanceId: string): Promise<InstanceRow & { version: string }> {
    const inst = await this.requireInstance(instanceId);
    await this.db.transaction(async (tx) => {
      await tx.delete(instances).where(eq(instances.id, instanceId));
      await appendInTransaction(tx, [changeEntry('instance.remove', instanceId, inst.modelId, { version: inst.version })]);
    });
    this.publish({ type: 'INSTANCE_REMOVED', modelId: inst.modelId, version: inst.version, instanceId });
    return inst;
  }

  /** Records that a worker serves the instance (backend `worker`, at the worker's endpoint); no event: the caller loads it next. */
  async assignToWorker(instanceId: string, a: WorkerAssignment): Promise<void> {
    this.checkApiEndpoint(a.endpoint, 'input.endpoint');
    await this.db
      .update(instances)
      .set({
        workerId: a.workerId,
        endpoint: a.endpoint,
        backend: 'worker',
        options: a.options,
        updatedAt: new Date(),
        ...(a.device ? { device: a.device } : {}),
        ...(a.runtime ? { runtime: a.runtime } : {}),
      })
      .where(eq(instances.id, instanceId));
  }

  async setInstanceStatus(
    instanceId: string,
    status: InstanceStatus,
    extra: { reason?: string | null; runtime?: string; device?: string } = {},
  ): Promise<void> {
    const [row] = await this.db
      .update(instances)
      .set({
        status,
        statusReason: extra.reason ?? null,
        updatedAt: new Date(),
        ...(extra.runtime ? { runtime: extra.runtime } : {}),
        ...(extra.device ? { device: extra.device } : {}),
      })
      .where(eq(instances.id, instanceId))
      .returning({ modelId: instances.modelId, versionId: instances.versionId });
    if (row) this.publish({ type: 'INSTANCE_STATUS', modelId: row.modelId, instanceId, status });
  }
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
