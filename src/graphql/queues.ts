/** GraphQL `queues`: the admission queues per model version (src/admission), read-only. */
import type { QueueSnapshot } from '../admission/model-queue.ts';
import { PRIORITY_NAMES } from '../admission/priority.ts';
import { builder } from './builder.ts';

type TenantRow = QueueSnapshot['tenants'][number];

const QueueTenantRef = builder.objectRef<TenantRow>('AdmissionQueueTenant').implement({
  description: 'One tenant on a queue (at most admission.metricsMaxTenants per queue; the rest are summed as `other`).',
  fields: (t) => ({
    tenant: t.exposeString('tenant'),
    queued: t.exposeInt('queued', { description: 'Requests waiting now.' }),
    inFlight: t.exposeInt('inFlight', { description: 'Requests holding a slot now.' }),
    admitted: t.exposeFloat('admitted', { description: 'Requests admitted since the start.' }),
    refused: t.exposeFloat('refused', { description: 'Requests refused or timed out since the start.' }),
    meanWaitMs: t.exposeFloat('meanWaitMs', { description: 'Moving average of the queue wait of its admitted requests, ms.' }),
  }),
});

const QueuePriorityRef = builder.objectRef<{ priority: string; queued: number }>('AdmissionQueuePriority').implement({
  fields: (t) => ({ priority: t.exposeString('priority', { description: 'critical, high, normal or low.' }), queued: t.exposeInt('queued') }),
});

const QueueRef = builder.objectRef<QueueSnapshot>('AdmissionQueue').implement({
  description:
    "The admission queue of one model version on this gateway replica: the fleet's capacity and this replica's share, what runs, what waits, per priority and tenant.",
  fields: (t) => ({
    model: t.exposeString('model'),
    version: t.exposeString('version'),
    capacity: t.int({
      nullable: true,
      description: 'Requests that may run at once across the gateway replicas (ready instances × maxConcurrentPerInstance); null without a limit.',
      resolve: (q) => q.capacity,
    }),
    replicaCapacity: t.int({
      nullable: true,
      description:
        "This gateway replica's share of `capacity`: what it admits at once (⌊capacity ÷ replicas⌋, plus one on capacity mod replicas of them, at least 1). " +
        'Equal to `capacity` on a single replica; null without a limit.',
      resolve: (q) => q.replicaCapacity,
    }),
    replicas: t.exposeInt('replicas', { description: 'Live gateway replicas sharing the capacity, this one included.' }),
    maxConcurrentPerInstance: t.exposeInt('maxConcurrentPerInstance'),
    maxQueueSize: t.exposeInt('maxQueueSize'),
    inFlight: t.exposeInt('inFlight', { description: 'Requests holding a slot on this replica.' }),
    queued: t.exposeInt('queued', { description: 'Requests waiting on this replica.' }),
    priorities: t.field({
      type: [QueuePriorityRef],
      resolve: (q) => q.queuedByPriority.map((queued, i) => ({ priority: PRIORITY_NAMES[i]!, queued })),
    }),
    serviceMs: t.float({ nullable: true, description: 'Moving average of how long a request holds its slot, ms.', resolve: (q) => q.serviceMs ?? null }),
    estimatedWaitMs: t.exposeInt('estimatedWaitMs', { description: 'What a normal-priority request arriving now would wait, ms.' }),
    tenants: t.field({ type: [QueueTenantRef], resolve: (q) => q.tenants }),
  }),
});

builder.queryFields((t) => ({
  queues: t.field({
    type: [QueueRef],
    description: 'Admission queues per model version (those used since the start), of the models the principal may see.',
    authScopes: { permission: 'metrics:read' },
    args: { model: t.arg.id({ description: 'Only this model.' }) },
    resolve: (_r, args, ctx) =>
      ctx.services.admission.snapshot(
        (m) => (args.model === undefined || args.model === null || m === String(args.model)) && ctx.services.auth.can(ctx.principal, 'metrics:read', m),
      ),
  }),
}));
