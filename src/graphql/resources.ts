import type { DeviceView, InstanceMemory, ResourceSnapshot, ResourceTotals, WorkerDevices } from '../resources/inventory.ts';
import { builder } from './builder.ts';
import type { GraphQLContext } from './context.ts';

const DeviceKindEnum = builder.enumType('DeviceKind', { values: ['CPU', 'GPU', 'TPU', 'REMOTE'] as const });
const kindOf = (k: string) => k.toUpperCase() as 'CPU';

const ResourceDeviceRef = builder.objectRef<DeviceView>('ResourceDevice').implement({
  description: 'A device with its last live figures. free = total − max(used, reserved).',
  fields: (t) => ({
    key: t.exposeString('key', { description: '`<worker>/<device>`: the device across the fleet (the key placement reserves memory under).' }),
    workerId: t.exposeString('workerId'),
    id: t.exposeString('id', { description: 'cpu, gpu:0, tpu:0, tpu:<instance> (declared by a remote engine), …' }),
    kind: t.field({ type: DeviceKindEnum, resolve: (d) => kindOf(d.kind) }),
    name: t.string({ nullable: true, resolve: (d) => d.name ?? null }),
    cores: t.int({ nullable: true, description: 'Cores (cpu) or chips.', resolve: (d) => d.cores ?? null }),
    memoryTotalBytes: t.float({ nullable: true, resolve: (d) => d.memoryTotalBytes ?? null }),
    memoryUsedBytes: t.float({ nullable: true, description: 'In use on the device now (all processes).', resolve: (d) => d.memoryUsedBytes ?? null }),
    memoryReservedBytes: t.exposeFloat('memoryReservedBytes', {
      description: "Reserved for instances (placement's reservations, else the instances' reported memory).",
    }),
    memoryFreeBytes: t.float({
      nullable: true,
      description: 'total − max(used, reserved); null when the total is unknown.',
      resolve: (d) => d.memoryFreeBytes ?? null,
    }),
    utilization: t.float({ nullable: true, description: 'Busy fraction over the last sampling interval, 0 … 1.', resolve: (d) => d.utilization ?? null }),
    source: t.string({ nullable: true, description: 'os, nvidia-smi, tfjs, tpu-env or declared.', resolve: (d) => d.source ?? null }),
    at: t.field({ type: 'DateTime', nullable: true, description: 'When the figures were taken.', resolve: (d) => d.at ?? null }),
  }),
});

const InstanceMemoryRef = builder.objectRef<InstanceMemory>('InstanceMemory').implement({
  description: "Memory an instance holds, as its backend reports it (tfjs: its weights' bytes).",
  fields: (t) => ({
    instanceId: t.exposeString('instanceId'),
    model: t.exposeString('model'),
    version: t.exposeString('version'),
    workerId: t.exposeString('workerId'),
    device: t.string({ nullable: true, resolve: (i) => i.device ?? null }),
    memoryBytes: t.exposeFloat('memoryBytes'),
  }),
});

/** Instances of models the principal may not see are left out. */
const visible = (ctx: GraphQLContext, list: readonly InstanceMemory[]) => {
  const allowed = ctx.principal?.models;
  return allowed === undefined ? list : list.filter((i) => allowed.includes(i.model));
};

const WorkerResourcesRef = builder.objectRef<WorkerDevices>('WorkerResources').implement({
  description: 'One worker (or `@remote`: devices remote serving engines declare) with its devices and the memory its instances hold.',
  fields: (t) => ({
    workerId: t.exposeString('workerId'),
    embedded: t.exposeBoolean('embedded'),
    remote: t.exposeBoolean('remote', {
      description: 'Devices declared by remote engines (e.g. a TPU server through the openai backend), not a process of ours.',
    }),
    status: t.string({ description: 'healthy, unhealthy or stopped.', resolve: (w) => w.status }),
    at: t.field({ type: 'DateTime', nullable: true, description: 'Last heartbeat (or sample) that reported figures.', resolve: (w) => w.at ?? null }),
    devices: t.field({ type: [ResourceDeviceRef], resolve: (w) => w.devices }),
    instances: t.field({ type: [InstanceMemoryRef], resolve: (w, _a, ctx) => visible(ctx, w.instances) }),
  }),
});

const ResourceTotalsRef = builder.objectRef<ResourceTotals>('ResourceTotals').implement({
  description: 'Sums over the devices of healthy workers.',
  fields: (t) => ({
    kind: t.field({ type: DeviceKindEnum, nullable: true, description: 'Null: every kind together.', resolve: (r) => (r.kind ? kindOf(r.kind) : null) }),
    devices: t.exposeInt('devices'),
    cores: t.exposeInt('cores'),
    memoryTotalBytes: t.exposeFloat('memoryTotalBytes'),
    memoryUsedBytes: t.exposeFloat('memoryUsedBytes'),
    memoryReservedBytes: t.exposeFloat('memoryReservedBytes'),
    memoryFreeBytes: t.exposeFloat('memoryFreeBytes'),
    utilization: t.float({ nullable: true, description: 'Mean utilisation of the devices that report one.', resolve: (r) => r.utilization ?? null }),
  }),
});

const ResourcesRef = builder.objectRef<ResourceSnapshot>('Resources').implement({
  description: 'The fleet’s devices: totals, per device kind, and per worker.',
  fields: (t) => ({
    at: t.expose('at', { type: 'DateTime' }),
    totals: t.field({ type: ResourceTotalsRef, resolve: (s) => s.totals }),
    byKind: t.field({ type: [ResourceTotalsRef], resolve: (s) => s.byKind }),
    workers: t.field({ type: [WorkerResourcesRef], resolve: (s) => s.workers }),
  }),
});

builder.queryFields((t) => ({
  devices: t.field({
    type: [WorkerResourcesRef],
    description: 'Devices with live figures per worker (`embedded`, a worker id, `@remote`), or of every worker when workerId is absent.',
    authScopes: { permission: 'resources:read' },
    args: { workerId: t.arg.id() },
    resolve: (_r, args, ctx) =>
      ctx.services.resources.devices(args.workerId === null || args.workerId === undefined ? undefined : String(args.workerId).slice(0, 64)),
  }),
  resources: t.field({
    type: ResourcesRef,
    description: 'Fleet totals (total, used, reserved, free memory, cores, utilisation), per device kind and per worker.',
    authScopes: { permission: 'resources:read' },
    resolve: (_r, _a, ctx) => ctx.services.resources.snapshot(),
  }),
}));

builder.subscriptionFields((t) => ({
  resourceUpdates: t.field({
    type: ResourcesRef,
    description:
      'The resources now, then again after each change (a heartbeat, a sample of the embedded worker), at most one per resources.updatesMinIntervalMs; ' +
      'computed once for all subscribers. A slow client skips updates, it never queues them.',
    authScopes: { permission: 'resources:read' },
    subscribe: (_r, _a, ctx) => ctx.services.resources.updates(ctx.signal),
    resolve: (s) => s,
  }),
}));
