import { INSTANCE_STATUSES, TASKS, type InstanceRow, type ModelRow, type VersionRow } from '../models/registry.ts';
import { builder } from './builder.ts';
import type { GraphQLContext } from './context.ts';
import { compact } from './input.ts';
import { requirementsFromInput, ResourceRequirementsInput, ResourceRequirementsRef } from './placement.ts';
import { MODEL_EVENT_TYPES, type ModelEvent } from '../events/bus.ts';

const InstanceStatusEnum = builder.enumType('InstanceStatus', {
  values: INSTANCE_STATUSES.map((s) => s.toUpperCase()) as unknown as readonly string[],
});
export const TaskEnum = builder.enumType('Task', { values: TASKS.map((s) => s.toUpperCase()) as unknown as readonly string[] });

const upper = (s: string) => s.toUpperCase();
const lower = (s: string) => s.toLowerCase();

export const InstanceRef = builder.objectRef<InstanceRow>('Instance');
const VersionRef = builder.objectRef<VersionRow>('ModelVersion');
export const ModelRef = builder.objectRef<ModelRow>('Model');

InstanceRef.implement({
  description: 'Where a model version runs: a backend plugin, its endpoint and options, a device.',
  fields: (t) => ({
    id: t.exposeID('id'),
    modelId: t.exposeString('modelId'),
    backend: t.exposeString('backend', { description: 'Backend plugin name.' }),
    endpoint: t.exposeString('endpoint', { nullable: true }),
    device: t.exposeString('device', { nullable: true, description: 'Device it runs on, as reported by the backend once loaded.' }),
    runtime: t.exposeString('runtime', { nullable: true, description: 'Runtime that executes it (tfjs-node-gpu, tfjs-node, tfjs-wasm, tfjs-cpu, remote).' }),
    weight: t.exposeFloat('weight'),
    options: t.field({
      type: 'JSON',
      nullable: true,
      description:
        'Backend options, readable only with models:write (null otherwise); secret values (apiKey, token, authorization headers…) ' +
        'are shown as their env:/file: reference or "[redacted]".',
      authScopes: { permission: 'models:write' },
      unauthorizedResolver: () => null,
      resolve: (i, _a, ctx) => ctx.services.registry.redactedOptions(i),
    }),
    status: t.field({ type: InstanceStatusEnum, resolve: (i) => upper(i.status) }),
    statusReason: t.exposeString('statusReason', { nullable: true }),
    workerId: t.exposeString('workerId', { nullable: true }),
    health: t.string({
      description: 'Router view: healthy, unhealthy, ejected, circuit-open, circuit-half-open, or unknown when not routed yet.',
      resolve: (i, _a, ctx) => ctx.services.router.healthOf(i.id),
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

VersionRef.implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    version: t.exposeString('version'),
    description: t.exposeString('description'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    resources: t.field({
      type: ResourceRequirementsRef,
      nullable: true,
      description: 'What one instance needs (placement); null: placed by hand.',
      resolve: (v) => v.resources,
    }),
    // From the registry's memory, without a promise: a nested read costs no SQL and no await per version.
    instances: t.field({ type: [InstanceRef], resolve: (v, _a, ctx) => ctx.services.registry.instancesOf(v.id) }),
  }),
});

ModelRef.implement({
  description: 'A registered model: versions, the instances that serve them, and routing.',
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    description: t.exposeString('description'),
    task: t.field({ type: TaskEnum, resolve: (m) => upper(m.task) }),
    labels: t.expose('labels', { type: 'JSON' }),
    defaultVersion: t.exposeString('defaultVersion', { nullable: true }),
    routing: t.expose('routing', { type: 'JSON', description: 'Traffic split, sticky key, shadow, fallbacks, balancer.' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    versions: t.field({ type: [VersionRef], resolve: (m, _a, ctx) => ctx.services.registry.versionsOf(m.id) }),
    status: t.field({
      type: InstanceStatusEnum,
      description: 'Derived from the instances: READY when any instance is ready (from the live fleet view, no SQL).',
      resolve: (m, _a, ctx) => {
        const now = ctx.services.instances.statusNow(m.id);
        return now ? upper(now) : ctx.services.instances.statusOf(m.id).then(upper);
      },
    }),
  }),
});

export const PageInfo = builder.objectRef<{ endCursor: string | null; hasNextPage: boolean }>('PageInfo').implement({
  fields: (t) => ({
    endCursor: t.exposeString('endCursor', { nullable: true }),
    hasNextPage: t.exposeBoolean('hasNextPage'),
  }),
});

const ModelConnection = builder.objectRef<{ items: ModelRow[]; total: number; endCursor: string | null; hasNextPage: boolean }>('ModelConnection').implement({
  fields: (t) => ({
    nodes: t.field({ type: [ModelRef], resolve: (c) => c.items }),
    totalCount: t.exposeInt('total'),
    pageInfo: t.field({ type: PageInfo, resolve: (c) => c }),
  }),
});

const LabelInput = builder.inputType('LabelInput', {
  fields: (t) => ({ key: t.string({ required: true }), value: t.string({ required: true }) }),
});

const ModelFilter = builder.inputType('ModelFilter', {
  fields: (t) => ({
    task: t.field({ type: TaskEnum }),
    search: t.string({ description: 'Substring of id or name, case-insensitive.' }),
    labels: t.field({ type: [LabelInput], description: 'Every label must match.' }),
  }),
});

const InstanceInput = builder.inputType('InstanceInput', {
  fields: (t) => ({
    id: t.string(),
    backend: t.string({ required: true, description: 'Backend plugin name (tfjs, openai, kserve-v2, worker, …).' }),
    endpoint: t.string(),
    device: t.string(),
    weight: t.float(),
    options: t.field({ type: 'JSON' }),
  }),
});

const VersionInput = builder.inputType('ModelVersionInput', {
  fields: (t) => ({
    version: t.string({ required: true }),
    description: t.string(),
    instances: t.field({ type: [InstanceInput] }),
    resources: t.field({ type: ResourceRequirementsInput, description: 'What one instance needs; the placement reconciler keeps its replicas placed.' }),
  }),
});

/** A version input with its resource requirements as the domain takes them. */
function versionIn<V extends { resources?: Record<string, unknown> | null }>(v: V): V {
  return v.resources ? { ...v, resources: requirementsFromInput(v.resources) } : v;
}

const RegisterModelInput = builder.inputType('RegisterModelInput', {
  fields: (t) => ({
    id: t.string({ required: true, description: 'Lower-case id: letters, digits, ".", "_", "-".' }),
    name: t.string(),
    description: t.string(),
    task: t.field({ type: TaskEnum, required: true }),
    labels: t.field({ type: 'JSON' }),
    defaultVersion: t.string(),
    versions: t.field({ type: [VersionInput] }),
  }),
});

const UpdateModelInput = builder.inputType('UpdateModelInput', {
  fields: (t) => ({
    name: t.string(),
    description: t.string(),
    labels: t.field({ type: 'JSON' }),
    defaultVersion: t.string(),
  }),
});

builder.queryFields((t) => ({
  models: t.field({
    type: ModelConnection,
    description: 'Registered models, oldest first, with cursor pagination.',
    authScopes: { permission: 'models:read' },
    args: {
      filter: t.arg({ type: ModelFilter }),
      first: t.arg.int({ defaultValue: 50, description: '1 to 500.' }),
      after: t.arg.string({ description: 'endCursor of the previous page.' }),
    },
    resolve: (_r, args, ctx) =>
      ctx.services.registry.list(
        {
          task: args.filter?.task ? lower(args.filter.task) : undefined,
          search: args.filter?.search ?? undefined,
          labels: args.filter?.labels ? Object.fromEntries(args.filter.labels.map((l) => [l.key, l.value])) : undefined,
          // A principal limited to some models sees only those.
          ids: ctx.principal?.models,
        },
        { first: args.first ?? 50, after: args.after ?? undefined },
      ),
  }),
  model: t.field({
    type: ModelRef,
    nullable: true,
    authScopes: (_r, args) => ({ model: { permission: 'models:read', id: String(args.id) } }),
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_r, args, ctx) => (await ctx.services.registry.get(String(args.id))) ?? null,
  }),
  instance: t.field({
    type: InstanceRef,
    nullable: true,
    authScopes: { permission: 'models:read' },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_r, args, ctx) => {
      const instance = await ctx.services.registry.getInstance(String(args.id));
      return instance && ctx.services.auth.can(ctx.principal, 'models:read', instance.modelId) ? instance : null;
    },
  }),
}));

/** For a principal limited to some models: the instance must belong to one of them (MCP_FORBIDDEN otherwise). */
async function checkInstanceModel(ctx: GraphQLContext, id: string): Promise<void> {
  if (!ctx.principal?.models) return;
  const instance = await ctx.services.registry.getInstance(id);
  if (instance) ctx.services.auth.authorize(ctx.principal, 'models:write', instance.modelId);
}

builder.mutationFields((t) => ({
  registerModel: t.field({
    type: ModelRef,
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.input.id) } }),
    args: { input: t.arg({ type: RegisterModelInput, required: true }) },
    resolve: (_r, { input }, ctx) => ctx.services.admin.registerModel(compact({ ...input, task: lower(input.task), versions: input.versions?.map(versionIn) })),
  }),
  updateModel: t.field({
    type: ModelRef,
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.id) } }),
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateModelInput, required: true }) },
    resolve: (_r, { id, input }, ctx) => ctx.services.admin.updateModel(String(id), compact(input)),
  }),
  deleteModel: t.field({
    type: ModelRef,
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.id) } }),
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, { id }, ctx) => ctx.services.admin.deleteModel(String(id)),
  }),
  addModelVersion: t.field({
    type: VersionRef,
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), input: t.arg({ type: VersionInput, required: true }) },
    resolve: (_r, { model, input }, ctx) => ctx.services.admin.addModelVersion(String(model), compact(versionIn(input))),
  }),
  addInstance: t.field({
    type: InstanceRef,
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), version: t.arg.string({ required: true }), input: t.arg({ type: InstanceInput, required: true }) },
    resolve: (_r, { model, version, input }, ctx) => ctx.services.admin.addInstance(String(model), version, compact(input)),
  }),
  loadModel: t.field({
    type: ModelRef,
    description:
      'Loads every instance of the model (of one version when given) that is not loaded, drained ones included (they take traffic again). ' +
      'Fails only when none is ready afterwards. KServe v2 `POST /v2/repository/models/{id}/load` does the same.',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.id) } }),
    args: { id: t.arg.id({ required: true }), version: t.arg.string() },
    resolve: (_r, { id, version }, ctx) => ctx.services.admin.loadModel(String(id), version ?? undefined),
  }),
  unloadModel: t.field({
    type: ModelRef,
    description:
      'Unloads every instance of the model (of one version when given); they stay registered and loadModel brings them back. ' +
      'KServe v2 `POST /v2/repository/models/{id}/unload` does the same.',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.id) } }),
    args: { id: t.arg.id({ required: true }), version: t.arg.string() },
    resolve: (_r, { id, version }, ctx) => ctx.services.admin.unloadModel(String(id), version ?? undefined),
  }),
  loadInstance: t.field({
    type: InstanceRef,
    authScopes: { permission: 'models:write' },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, { id }, ctx) => checkInstanceModel(ctx, String(id)).then(() => ctx.services.admin.loadInstance(String(id))),
  }),
  unloadInstance: t.field({
    type: InstanceRef,
    authScopes: { permission: 'models:write' },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, { id }, ctx) => checkInstanceModel(ctx, String(id)).then(() => ctx.services.admin.unloadInstance(String(id))),
  }),
  drainInstance: t.field({
    type: InstanceRef,
    description: 'Stops new requests to the instance and waits for in-flight ones (up to timeoutMs), then marks it DRAINING; unload or remove it after.',
    authScopes: { permission: 'models:write' },
    args: { id: t.arg.id({ required: true }), timeoutMs: t.arg.int({ defaultValue: 30_000 }) },
    resolve: (_r, { id, timeoutMs }, ctx) => checkInstanceModel(ctx, String(id)).then(() => ctx.services.admin.drainInstance(String(id), timeoutMs ?? 30_000)),
  }),
  resetInstanceHealth: t.field({
    type: InstanceRef,
    description:
      "Operator override: closes the instance's circuit breaker and lifts its outlier ejection and 429 throttle, so it gets traffic again at once. " +
      'Active probes still give their verdict on their next round. Publishes on instanceHealth.',
    authScopes: { permission: 'models:write' },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, { id }, ctx) => checkInstanceModel(ctx, String(id)).then(() => ctx.services.admin.resetInstanceHealth(String(id))),
  }),
  removeInstance: t.field({
    type: InstanceRef,
    authScopes: { permission: 'models:write' },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, { id }, ctx) => checkInstanceModel(ctx, String(id)).then(() => ctx.services.admin.removeInstance(String(id))),
  }),
}));

const ModelEventType = builder.enumType('ModelEventType', { values: MODEL_EVENT_TYPES });

const ModelEventRef = builder.objectRef<ModelEvent>('ModelEvent').implement({
  fields: (t) => ({
    type: t.field({ type: ModelEventType, resolve: (e) => e.type }),
    modelId: t.exposeString('modelId'),
    version: t.exposeString('version', { nullable: true }),
    instanceId: t.exposeString('instanceId', { nullable: true }),
    status: t.string({ nullable: true, resolve: (e) => (e.status ? upper(e.status) : null) }),
    workerId: t.exposeString('workerId', { nullable: true, description: 'Placement events: the worker.' }),
    device: t.exposeString('device', { nullable: true, description: 'Placement events: the device on the worker.' }),
    reason: t.exposeString('reason', { nullable: true, description: 'Placement events: what is short, or what an eviction made room for.' }),
    at: t.expose('at', { type: 'DateTime' }),
    scaling: t.field({
      type: 'JSON',
      nullable: true,
      description: 'SCALING_DECISION: { from, to, recommended, reason, outcome, error? }.',
      resolve: (e) => e.scaling ?? null,
    }),
    model: t.field({
      type: ModelRef,
      nullable: true,
      description: 'The model as it is now (null once deleted).',
      resolve: async (e, _a, ctx) => (await ctx.services.registry.get(e.modelId)) ?? null,
    }),
  }),
});

builder.subscriptionFields((t) => ({
  modelEvents: t.field({
    type: ModelEventRef,
    description: 'Registry changes: registrations, updates, deletions, instance status. Optionally for one model.',
    authScopes: (_r, args) => (args.modelId ? { model: { permission: 'models:read', id: String(args.modelId) } } : { permission: 'models:read' }),
    args: { modelId: t.arg.id() },
    subscribe: async function* (_r, args, ctx) {
      for await (const e of ctx.services.events.subscribe('modelEvents', ctx.signal)) {
        if ((!args.modelId || e.modelId === String(args.modelId)) && ctx.services.auth.can(ctx.principal, 'models:read', e.modelId)) yield e;
      }
    },
    resolve: (e) => e,
  }),
}));
