import { WORKER_COMMAND_ACTIONS, type WorkerCommand } from '../events/bus.ts';
import type { WorkerInstanceOutcome, WorkerRegistration } from '../admin/admin-service.ts';
import { auditWorker, requireWorkerAccess } from '../workers/worker-access.ts';
import { workerIdOf, type WorkerCommandOptions, type WorkerView } from '../workers/worker-registry.ts';
import { builder } from './builder.ts';
import { UNKNOWN_FIELDS_IGNORED } from './forward-compatible-inputs.ts';
import { compact } from './input.ts';
import { InstanceRef, TaskEnum } from './models.ts';

const upper = (s: string) => s.toUpperCase();
const lower = (s: string) => s.toLowerCase();

const WorkerStatusEnum = builder.enumType('WorkerStatus', {
  description: 'HEALTHY: heartbeating; UNHEALTHY: heartbeats lapsed, its instances get no traffic; STOPPED: deregistered.',
  values: ['HEALTHY', 'UNHEALTHY', 'STOPPED'] as const,
});

const WorkerCommandActionEnum = builder.enumType('WorkerCommandAction', { values: WORKER_COMMAND_ACTIONS });

type DeviceRow = WorkerView['devices'][number];

const DeviceRef = builder.objectRef<DeviceRow>('WorkerDevice').implement({
  fields: (t) => ({
    id: t.exposeString('id', { description: 'cpu, gpu:0, tpu:0, …' }),
    kind: t.exposeString('kind', { description: 'cpu, gpu, tpu or remote.' }),
    name: t.string({ nullable: true, resolve: (d) => d.name ?? null }),
    memoryTotalBytes: t.float({ nullable: true, resolve: (d) => d.memoryTotalBytes ?? null }),
  }),
});

const WorkerLoadRef = builder.objectRef<NonNullable<WorkerView['load']>>('WorkerLoad').implement({
  fields: (t) => ({
    inflight: t.exposeInt('inflight', { description: 'Requests running on the worker at the last heartbeat.' }),
    requestsTotal: t.exposeFloat('requestsTotal', { description: 'Requests served since the worker started.' }),
    cpuSeconds: t.float({ nullable: true, description: 'CPU time of the worker process since it started, seconds.', resolve: (l) => l.cpuSeconds ?? null }),
    residentMemoryBytes: t.float({
      nullable: true,
      description: 'Resident memory of the worker process, bytes.',
      resolve: (l) => l.residentMemoryBytes ?? null,
    }),
    at: t.expose('at', { type: 'DateTime' }),
  }),
});

const WorkerRef = builder.objectRef<WorkerView>('Worker').implement({
  description: 'A process that serves models for the gateway: a `capibara-mcp worker`, or `embedded` (the gateway process itself).',
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    endpoint: t.exposeString('endpoint', { description: 'Base URL the gateway routes to (`in-process` for the embedded worker).' }),
    embedded: t.exposeBoolean('embedded', { description: 'True for the built-in worker inside the gateway process.' }),
    status: t.field({ type: WorkerStatusEnum, resolve: (w) => upper(w.status) as 'HEALTHY' }),
    devices: t.field({ type: [DeviceRef], resolve: (w) => w.devices }),
    heartbeatIntervalMs: t.exposeInt('heartbeatIntervalMs'),
    lastHeartbeatAt: t.expose('lastHeartbeatAt', { type: 'DateTime' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    load: t.field({ type: WorkerLoadRef, nullable: true, resolve: (w) => w.load ?? null }),
    assignedModels: t.loadableList({
      type: 'String',
      description: 'Models an operator assigned to this worker: the only ones its registration may serve.',
      load: (ids: string[], ctx) => ctx.services.workers.assignedModels(ids),
      resolve: (w) => w.id,
    }),
    instances: t.loadableList({
      type: InstanceRef,
      description: 'The gateway instances this worker serves.',
      load: (ids: string[], ctx) => ctx.services.workers.instancesByWorker(ids),
      resolve: (w) => w.id,
    }),
  }),
});

const WorkerInstanceOutcomeRef = builder.objectRef<WorkerInstanceOutcome>('WorkerInstanceOutcome').implement({
  description: 'What became of one instance a worker reported: served (accepted), or refused with a code (e.g. MCP_FORBIDDEN: model not assigned).',
  fields: (t) => ({
    remoteInstanceId: t.exposeString('remoteInstanceId'),
    model: t.exposeString('model'),
    version: t.exposeString('version'),
    accepted: t.exposeBoolean('accepted'),
    instanceId: t.string({ nullable: true, description: 'Gateway instance id (accepted ones).', resolve: (o) => o.instanceId ?? null }),
    code: t.string({ nullable: true, resolve: (o) => o.code ?? null }),
    message: t.string({ nullable: true, resolve: (o) => o.message ?? null }),
  }),
});

const WorkerRegistrationRef = builder.objectRef<WorkerRegistration>('WorkerRegistration').implement({
  fields: (t) => ({
    worker: t.field({ type: WorkerRef, resolve: (r) => r.worker }),
    instances: t.field({ type: [WorkerInstanceOutcomeRef], resolve: (r) => r.instances }),
  }),
});

const WorkerAssignmentRef = builder.objectRef<{ worker: string; models: string[] }>('WorkerAssignment').implement({
  fields: (t) => ({
    worker: t.exposeString('worker', { description: 'Worker id (lower-case name).' }),
    models: t.exposeStringList('models', { description: 'Every model now assigned to the worker.' }),
  }),
});

const WorkerCommandRef = builder.objectRef<WorkerCommand>('WorkerCommand').implement({
  description: 'An order to a worker, delivered through the workerCommands subscription; the worker acts, then re-registers.',
  fields: (t) => {
    const opt = (c: WorkerCommand) => c.options as unknown as Partial<WorkerCommandOptions>;
    return {
      id: t.string({ resolve: (c) => opt(c).commandId ?? '' }),
      workerId: t.exposeString('workerId'),
      action: t.field({ type: WorkerCommandActionEnum, resolve: (c) => c.action }),
      instanceId: t.exposeString('instanceId', { description: 'The instance id on the worker.' }),
      model: t.string({ resolve: (c) => c.modelId }),
      version: t.exposeString('version'),
      source: t.string({ nullable: true, description: 'Where the backend finds the model (LOAD).', resolve: (c) => c.endpoint ?? null }),
      backend: t.string({ nullable: true, description: 'Backend plugin on the worker (LOAD).', resolve: (c) => opt(c).backend ?? null }),
      task: t.field({ type: TaskEnum, nullable: true, resolve: (c) => (opt(c).task ? upper(opt(c).task!) : null) }),
      device: t.string({ nullable: true, resolve: (c) => opt(c).device ?? null }),
      options: t.field({ type: 'JSON', nullable: true, description: 'Backend instance options (LOAD).', resolve: (c) => opt(c).instanceOptions ?? null }),
    };
  },
});

const WorkerDeviceInput = builder.inputType('WorkerDeviceInput', {
  extensions: UNKNOWN_FIELDS_IGNORED,
  fields: (t) => ({
    id: t.string({ required: true }),
    kind: t.string({ required: true, description: 'cpu, gpu, tpu or remote.' }),
    name: t.string(),
    memoryTotalBytes: t.float(),
  }),
});

const WorkerInstanceInput = builder.inputType('WorkerInstanceInput', {
  extensions: UNKNOWN_FIELDS_IGNORED,
  fields: (t) => ({
    model: t.string({ required: true, description: 'Model id: it must be assigned to this worker (assignWorkerModels), else the instance is refused.' }),
    version: t.string({ required: true }),
    remoteInstanceId: t.string({ required: true, description: 'Instance id on the worker (its HTTP routes use it).' }),
    task: t.field({ type: TaskEnum, required: true }),
    runtime: t.string(),
    device: t.string(),
  }),
});

const RegisterWorkerInput = builder.inputType('RegisterWorkerInput', {
  extensions: UNKNOWN_FIELDS_IGNORED,
  description: 'Fields this gateway does not know (sent by a newer worker, as variables) are ignored here and in its entries.',
  fields: (t) => ({
    name: t.string({ required: true, description: 'Unique per gateway; the worker id is its lower-case form.' }),
    endpoint: t.string({ required: true, description: 'Base URL the gateway reaches the worker at.' }),
    session: t.string({ required: true, description: 'Random per worker process (16–64 URL-safe characters); selects the call token (workerCallToken).' }),
    devices: t.field({ type: [WorkerDeviceInput] }),
    heartbeatIntervalMs: t.int({ required: true }),
    instances: t.field({ type: [WorkerInstanceInput], description: 'Everything the worker serves now (instances not listed are unloaded).' }),
  }),
});

const WorkerCallTokenInput = builder.inputType('WorkerCallTokenInput', {
  extensions: UNKNOWN_FIELDS_IGNORED,
  description: 'Fields this gateway does not know (sent by a newer worker, as variables) are ignored here and in its entries.',
  fields: (t) => ({
    name: t.string({ required: true }),
    endpoint: t.string({ required: true, description: 'The endpoint the worker will register.' }),
    session: t.string({ required: true }),
  }),
});

const WorkerDeviceUsageInput = builder.inputType('WorkerDeviceUsageInput', {
  extensions: UNKNOWN_FIELDS_IGNORED,
  description: 'Live figures of one registered device; figures that are not finite and non-negative (utilization above 1) are dropped.',
  fields: (t) => ({
    id: t.string({ required: true }),
    memoryUsedBytes: t.float({ description: 'Memory in use on the device now (all processes), bytes.' }),
    memoryTotalBytes: t.float({ description: 'Memory of the device, bytes (when it differs from the registration, e.g. a resized container).' }),
    utilization: t.float({ description: 'Busy fraction over the last interval, 0 … 1.' }),
    cores: t.int({ description: 'Cores (cpu) or chips the device stands for.' }),
  }),
});

const WorkerInstanceUsageInput = builder.inputType('WorkerInstanceUsageInput', {
  extensions: UNKNOWN_FIELDS_IGNORED,
  description: "Memory one of the worker's instances holds, as its backend reports it.",
  fields: (t) => ({
    remoteInstanceId: t.string({ required: true }),
    memoryBytes: t.float({ required: true }),
    device: t.string({ description: 'Device id it holds the memory on (gpu:0, cpu, …).' }),
  }),
});

const WorkerLoadInput = builder.inputType('WorkerLoadInput', {
  extensions: UNKNOWN_FIELDS_IGNORED,
  description: 'Fields this gateway does not know (sent by a newer worker, as variables) are ignored here and in its entries.',
  fields: (t) => ({
    inflight: t.int(),
    requestsTotal: t.float(),
    cpuSeconds: t.float({ description: 'CPU time the worker process used since it started (user + system), seconds.' }),
    residentMemoryBytes: t.float({ description: 'Resident memory of the worker process, bytes.' }),
    devices: t.field({
      type: [WorkerDeviceUsageInput],
      description: 'Live figures of devices the worker registered (others are ignored); at most 64.',
    }),
    instances: t.field({
      type: [WorkerInstanceUsageInput],
      description: 'Memory held per instance of this worker; at most 256.',
    }),
  }),
});

builder.queryFields((t) => ({
  workers: t.field({
    type: [WorkerRef],
    description: 'The embedded worker (the gateway process) and every registered worker process.',
    authScopes: { permission: 'models:read' },
    resolve: (_r, _a, ctx) => ctx.services.workers.list(),
  }),
  worker: t.field({
    type: WorkerRef,
    nullable: true,
    authScopes: { permission: 'models:read' },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_r, args, ctx) => (await ctx.services.workers.get(String(args.id))) ?? null,
  }),
}));

builder.mutationFields((t) => ({
  workerCallToken: t.string({
    description:
      'The token the gateway presents on every call to this worker process (Authorization: Bearer). A worker asks for it before it registers; ' +
      'only its own credential (or an operator) gets it.',
    authScopes: { permission: 'workers:register' },
    args: { input: t.arg({ type: WorkerCallTokenInput, required: true }) },
    resolve: async (_r, { input }, ctx) => {
      await requireWorkerAccess(ctx, input.name, 'call-token');
      const token = await ctx.services.admin.workerCallToken(input);
      await auditWorker(ctx, { action: 'worker.call_token', target: `worker:${workerIdOf(input.name)}`, details: { endpoint: input.endpoint } });
      return token;
    },
  }),
  registerWorker: t.field({
    type: WorkerRegistrationRef,
    description:
      'A worker announces itself and what it serves. Instances of models assigned to it are registered (backend `worker`) and loaded; ' +
      'others are refused (see `instances`). Never creates a model. A worker credential registers only its own worker.',
    authScopes: { permission: 'workers:register' },
    args: { input: t.arg({ type: RegisterWorkerInput, required: true }) },
    resolve: async (_r, { input }, ctx) => {
      await requireWorkerAccess(ctx, input.name, 'register');
      const result = await ctx.services.admin.registerWorker(
        compact({
          ...input,
          instances: (input.instances ?? []).map((i) => ({ ...i, task: lower(i.task) })),
        }),
      );
      const target = `worker:${result.worker.id}`;
      const refused = result.instances.filter((i) => !i.accepted);
      await auditWorker(ctx, {
        action: 'worker.register',
        target,
        details: { endpoint: result.worker.endpoint, served: result.instances.length - refused.length, refused: refused.length },
      });
      for (const r of refused) {
        await auditWorker(ctx, {
          action: 'worker.model_refused',
          target,
          outcome: 'denied',
          model: r.model,
          details: { version: r.version, remoteInstanceId: r.remoteInstanceId, code: r.code },
        });
      }
      return result;
    },
  }),
  workerHeartbeat: t.field({
    type: WorkerRef,
    description: 'Keeps a worker healthy; MCP_WORKER_NOT_FOUND tells the worker to register again. Only the worker itself (or an operator).',
    authScopes: { permission: 'workers:register' },
    args: { id: t.arg.id({ required: true }), load: t.arg({ type: WorkerLoadInput }) },
    resolve: async (_r, args, ctx) => {
      await requireWorkerAccess(ctx, String(args.id), 'heartbeat');
      return ctx.services.admin.workerHeartbeat(workerIdOf(String(args.id)), args.load ?? undefined);
    },
  }),
  deregisterWorker: t.field({
    type: WorkerRef,
    description: 'A worker shutting down: its instances leave routing at once. Only the worker itself (or an operator).',
    authScopes: { permission: 'workers:register' },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_r, args, ctx) => {
      await requireWorkerAccess(ctx, String(args.id), 'deregister');
      const worker = await ctx.services.admin.deregisterWorker(workerIdOf(String(args.id)));
      await auditWorker(ctx, { action: 'worker.deregister', target: `worker:${worker.id}` });
      return worker;
    },
  }),
  removeWorker: t.field({
    type: WorkerRef,
    description:
      'Operator: forgets a worker that is gone (STOPPED, or UNHEALTHY: not heartbeating). Its instances are removed, its model assignments ' +
      'dropped and it leaves `workers`; answers with it as it was last. A HEALTHY worker is refused (MCP_CONFLICT): stop it first. ' +
      'Workers gone longer than `workers.retentionMs` (default 7 days) are removed the same way.',
    authScopes: { permission: 'workers:manage' },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_r, args, ctx) => {
      const worker = await ctx.services.admin.removeWorker(String(args.id));
      await auditWorker(ctx, { action: 'worker.remove', target: `worker:${worker.id}`, details: { status: worker.status } });
      return worker;
    },
  }),
  assignWorkerModels: t.field({
    type: WorkerAssignmentRef,
    description: 'Operator: lets a worker serve these (existing) models. The worker need not run yet: create the model, assign, then start the worker.',
    authScopes: { permission: 'workers:manage' },
    args: { worker: t.arg.string({ required: true }), models: t.arg.stringList({ required: true }) },
    resolve: async (_r, args, ctx) => {
      const models = await ctx.services.admin.assignWorkerModels(args.worker, args.models);
      const worker = workerIdOf(args.worker);
      await auditWorker(ctx, { action: 'worker.assign', target: `worker:${worker}`, details: { models: args.models } });
      return { worker, models };
    },
  }),
  unassignWorkerModels: t.field({
    type: WorkerAssignmentRef,
    description: "Operator: takes models away from a worker; the worker's instances of them leave routing at once.",
    authScopes: { permission: 'workers:manage' },
    args: { worker: t.arg.string({ required: true }), models: t.arg.stringList({ required: true }) },
    resolve: async (_r, args, ctx) => {
      const models = await ctx.services.admin.unassignWorkerModels(args.worker, args.models);
      const worker = workerIdOf(args.worker);
      await auditWorker(ctx, { action: 'worker.unassign', target: `worker:${worker}`, details: { models: args.models } });
      return { worker, models };
    },
  }),
  loadModelOnWorker: t.field({
    type: WorkerCommandRef,
    description:
      'Operator: asks a worker to load a model version (registered when missing and assigned to the worker; the worker registers the new instance ' +
      'when loaded). On `embedded` the gateway loads it itself.',
    authScopes: { permission: 'workers:manage' },
    args: {
      workerId: t.arg.id({ required: true }),
      model: t.arg.string({ required: true }),
      version: t.arg.string({ required: true }),
      source: t.arg.string({ description: 'Where the worker’s backend finds the model (folder, model.json, URL).' }),
      backend: t.arg.string({ description: 'Backend plugin on the worker (default tfjs).' }),
      task: t.arg({ type: TaskEnum }),
      device: t.arg.string(),
      options: t.arg({ type: 'JSON' }),
      instanceId: t.arg.string({ description: 'Instance id on the worker (default <model>-<version>).' }),
    },
    resolve: (_r, args, ctx) => {
      const { workerId, task, ...rest } = args;
      return ctx.services.admin.loadModelOnWorker(String(workerId), compact({ ...rest, ...(task ? { task: lower(task) } : {}) }));
    },
  }),
  unloadFromWorker: t.field({
    type: WorkerCommandRef,
    description: 'Drains one of a worker’s instances (gateway or worker instance id), unloads it and tells the worker to release it.',
    authScopes: { permission: 'workers:manage' },
    args: { workerId: t.arg.id({ required: true }), instanceId: t.arg.string({ required: true }) },
    resolve: (_r, args, ctx) => ctx.services.admin.unloadFromWorker(String(args.workerId), args.instanceId),
  }),
}));

builder.subscriptionFields((t) => ({
  workerCommands: t.field({
    type: WorkerCommandRef,
    description: 'Load/unload commands for one worker, as they are issued. Only the worker itself (or an operator).',
    authScopes: { permission: 'workers:register' },
    args: { workerId: t.arg.id({ required: true }) },
    subscribe: async (_r, args, ctx) => {
      await requireWorkerAccess(ctx, String(args.workerId), 'commands');
      return ctx.services.workers.commands(workerIdOf(String(args.workerId)), ctx.signal);
    },
    resolve: (c) => c,
  }),
}));
