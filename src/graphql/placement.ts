import type { PlacementView } from '../resources/reconciler.ts';
import { reservedBytes, type ResourceRequirements } from '../resources/requirements.ts';
import { builder } from './builder.ts';
import { compact } from './input.ts';

const DeviceKind = builder.enumType('PlacementDeviceKind', { values: ['CPU', 'GPU', 'TPU'] as const });

export const ResourceRequirementsInput = builder.inputType('ResourceRequirementsInput', {
  description: 'What one instance of a model version needs; the placement reconciler keeps `replicas` of them placed on workers.',
  fields: (t) => ({
    deviceKind: t.field({ type: DeviceKind, description: 'Default CPU.' }),
    memoryBytes: t.float({ description: 'Bytes one instance reserves on its device (at most 1 TiB); omitted: measured at the first load.' }),
    replicas: t.int({ description: 'Instances to keep placed, 0–64 (default 1).' }),
    priority: t.int({ description: '0–1000 (default 100): placing may evict idle instances of strictly lower priority.' }),
    evictable: t.boolean({ description: 'Whether idle instances of this version may be evicted (default true).' }),
    drainMs: t.int({ description: 'How long a replica beyond `replicas` drains before it is unloaded, ms, 0–600000 (default 10000).' }),
    backend: t.string({ description: 'Backend plugin on the worker (default tfjs).' }),
    source: t.string({ description: "Where the worker's backend finds the model (folder, model.json, URL)." }),
    options: t.field({ type: 'JSON', description: 'Instance options for the backend.' }),
  }),
});

/** GraphQL input → the domain's raw requirements (enum lower-cased, nulls dropped). */
export function requirementsFromInput(input: Record<string, unknown>): Record<string, unknown> {
  const r = compact(input);
  return typeof r.deviceKind === 'string' ? { ...r, deviceKind: r.deviceKind.toLowerCase() } : r;
}

export const ResourceRequirementsRef = builder.objectRef<ResourceRequirements>('ResourceRequirements').implement({
  fields: (t) => ({
    deviceKind: t.string({ resolve: (r) => r.deviceKind.toUpperCase() }),
    memoryBytes: t.float({ nullable: true, resolve: (r) => r.memoryBytes ?? null }),
    measuredBytes: t.float({ nullable: true, description: 'What the first load took, when no memory was stated.', resolve: (r) => r.measuredBytes ?? null }),
    reservedBytes: t.float({ description: 'What one instance reserves: stated, else measured, else 0.', resolve: (r) => reservedBytes(r) }),
    replicas: t.exposeInt('replicas'),
    priority: t.exposeInt('priority'),
    evictable: t.exposeBoolean('evictable'),
    drainMs: t.exposeInt('drainMs', { description: 'How long a replica beyond `replicas` drains before it is unloaded, ms.' }),
    backend: t.exposeString('backend'),
    source: t.exposeString('source', { nullable: true }),
  }),
});

const PlacementRef = builder.objectRef<PlacementView>('Placement').implement({
  description: 'An instance on a worker and device, with what it reserves there.',
  fields: (t) => ({
    instanceId: t.exposeID('instanceId'),
    modelId: t.exposeString('modelId'),
    version: t.exposeString('version'),
    workerId: t.exposeString('workerId'),
    device: t.exposeString('deviceId'),
    reservedBytes: t.exposeFloat('reservedBytes'),
    priority: t.int({ nullable: true, description: 'Null: no requirements stated (never evicted).', resolve: (p) => (p.priority > 1000 ? null : p.priority) }),
    evictable: t.exposeBoolean('evictable'),
    lastUsedAt: t.field({ type: 'DateTime', description: 'Last request seen by this replica, or the load.', resolve: (p) => new Date(p.lastUsedAt) }),
    inflight: t.exposeInt('inflight'),
    status: t.string({ resolve: (p) => p.status.toUpperCase() }),
    pending: t.exposeBoolean('pending', { description: 'A LOAD was sent and the worker has not registered the instance yet.' }),
  }),
});

interface VersionPlacement {
  modelId: string;
  version: string;
  requirements: ResourceRequirements | null;
}

const VersionPlacementRef = builder.objectRef<VersionPlacement>('VersionPlacement').implement({
  fields: (t) => ({
    modelId: t.exposeString('modelId'),
    version: t.exposeString('version'),
    requirements: t.field({ type: ResourceRequirementsRef, nullable: true, resolve: (v) => v.requirements }),
    placements: t.field({
      type: [PlacementRef],
      resolve: async (v, _a, ctx) => (await ctx.services.placement.placements()).filter((p) => p.modelId === v.modelId && p.version === v.version),
    }),
  }),
});

builder.queryFields((t) => ({
  placements: t.field({
    type: [PlacementRef],
    description: 'Which instance is on which worker and device, what it reserves and when it was last used (models the caller may read).',
    authScopes: { permission: 'models:read' },
    args: { model: t.arg.id(), worker: t.arg.id() },
    resolve: async (_r, args, ctx) =>
      (await ctx.services.placement.placements()).filter(
        (p) =>
          (!args.model || p.modelId === String(args.model)) &&
          (!args.worker || p.workerId === String(args.worker)) &&
          ctx.services.auth.can(ctx.principal, 'models:read', p.modelId),
      ),
  }),
}));

builder.mutationFields((t) => ({
  setResourceRequirements: t.field({
    type: VersionPlacementRef,
    description:
      'Sets what one instance of the version needs (device kind, memory, replicas, priority, evictable, how a worker loads it); the reconciler places ' +
      'or trims its instances to match. MCP_INSUFFICIENT_RESOURCES (nothing stored) when the added replicas fit nowhere, even after allowed evictions.',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: {
      model: t.arg.id({ required: true }),
      version: t.arg.string({ required: true }),
      requirements: t.arg({ type: ResourceRequirementsInput, required: true }),
    },
    resolve: async (_r, args, ctx) => {
      const row = await ctx.services.placement.setRequirements(String(args.model), args.version, requirementsFromInput(args.requirements));
      return { modelId: row.modelId, version: row.version, requirements: row.resources };
    },
  }),
}));
