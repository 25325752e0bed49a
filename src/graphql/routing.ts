import type { InstanceHealthEvent } from '../events/bus.ts';
import type { VariantView } from '../traffic/traffic-manager.ts';
import { builder } from './builder.ts';
import { InstanceRef, ModelRef } from './models.ts';

const StickyBy = builder.enumType('StickyBy', {
  description: 'What keeps a caller on one variant of a traffic split.',
  values: {
    PRINCIPAL: { value: 'principal', description: 'The authenticated principal id.' },
    HEADER: { value: 'header', description: 'A request header (default x-mcp-affinity-key).' },
  } as const,
});

const SplitInput = builder.inputType('TrafficSplitEntry', {
  fields: (t) => ({
    version: t.string({ required: true }),
    weight: t.float({ required: true, description: 'Relative weight (e.g. 90 and 10); renormalised among the ready versions.' }),
  }),
});

const StickyInput = builder.inputType('StickyInput', {
  fields: (t) => ({
    by: t.field({ type: StickyBy, required: true }),
    header: t.string({ description: 'Header name when by: HEADER (default x-mcp-affinity-key).' }),
  }),
});

const AutoRollbackInput = builder.inputType('AutoRollbackInput', {
  description:
    'Take the canary out of the split when, over at least minSamples requests of both it and the baseline, ' +
    'its error rate exceeds the baseline by maxErrorRateDelta or its p95 by maxP95Ratio.',
  fields: (t) => ({
    canary: t.string({ required: true }),
    maxErrorRateDelta: t.float({ required: true, description: 'E.g. 0.05 = 5 percentage points.' }),
    maxP95Ratio: t.float({ required: true, description: 'E.g. 1.5 = 50% slower.' }),
    minSamples: t.int({ required: true }),
  }),
});

const VariantRef = builder.objectRef<VariantView>('ModelVariant').implement({
  description: 'A version receiving traffic, with its stats since the last traffic change on this gateway replica.',
  fields: (t) => ({
    version: t.exposeString('version'),
    weight: t.exposeFloat('weight', { description: 'Configured weight (0 for the shadow).' }),
    shadow: t.exposeBoolean('shadow', { description: 'Mirrored traffic: answers recorded, never returned.' }),
    isDefault: t.exposeBoolean('isDefault'),
    requests: t.exposeInt('requests'),
    errors: t.exposeInt('errors'),
    errorRate: t.exposeFloat('errorRate'),
    diverted: t.exposeInt('diverted', {
      description:
        'Requests the split assigned to this variant that another variant served because every instance of this one was unhealthy, ' +
        'ejected or had an open circuit. Automatic rollback counts them as canary errors.',
    }),
    p50Ms: t.exposeFloat('p50Ms', { nullable: true }),
    p95Ms: t.exposeFloat('p95Ms', { nullable: true }),
    accuracy: t.exposeFloat('accuracy', { nullable: true, description: 'Mean feedback score (0–1) of its recorded inferences; null without feedback.' }),
    feedbackCount: t.exposeInt('feedbackCount'),
  }),
});

builder.objectFields(ModelRef, (t) => ({
  variants: t.field({
    type: [VariantRef],
    description: 'Per-variant traffic and quality: weight, requests, error rate, p50/p95 latency, accuracy from feedback.',
    resolve: (m, _a, ctx) => ctx.services.traffic.variants(m),
  }),
}));

const FeedbackRef = builder.objectRef<{ inferenceId: string; modelId: string; version: string; shadow: boolean }>('Feedback').implement({
  fields: (t) => ({
    inferenceId: t.exposeID('inferenceId'),
    modelId: t.exposeString('modelId'),
    version: t.exposeString('version'),
    shadow: t.exposeBoolean('shadow'),
  }),
});

const InstanceHealthEventRef = builder.objectRef<InstanceHealthEvent>('InstanceHealthEvent').implement({
  fields: (t) => ({
    instanceId: t.exposeID('instanceId'),
    modelId: t.exposeString('modelId'),
    version: t.exposeString('version'),
    state: t.exposeString('state', { description: 'healthy, unhealthy, ejected, circuit-open, circuit-half-open.' }),
    reason: t.exposeString('reason', { nullable: true }),
    at: t.expose('at', { type: 'DateTime' }),
    instance: t.field({
      type: InstanceRef,
      nullable: true,
      resolve: async (e, _a, ctx) => (await ctx.services.registry.getInstance(e.instanceId)) ?? null,
    }),
  }),
});

builder.mutationFields((t) => ({
  setTrafficSplit: t.field({
    type: ModelRef,
    description:
      'A/B test or canary: weights per version (only ready versions get traffic), optionally sticky. ' +
      'An empty split sends everything to the default version. Resets the variant stats.',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: {
      model: t.arg.id({ required: true }),
      split: t.arg({ type: [SplitInput], required: true }),
      sticky: t.arg({ type: StickyInput }),
    },
    resolve: (_r, { model, split, sticky }, ctx) =>
      ctx.services.traffic.setTrafficSplit(String(model), split, sticky ? { by: sticky.by, header: sticky.header ?? null } : null),
  }),
  promoteVersion: t.field({
    type: ModelRef,
    description: 'Makes the version the default with 100% of the traffic; the previous default is kept for rollbackVersion.',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), version: t.arg.string({ required: true }) },
    resolve: (_r, { model, version }, ctx) => ctx.services.traffic.promoteVersion(String(model), version),
  }),
  rollbackVersion: t.field({
    type: ModelRef,
    description: 'Back to the default version before the last promotion (100% of the traffic). MCP_CONFLICT when there is none.',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }) },
    resolve: (_r, { model }, ctx) => ctx.services.traffic.rollbackVersion(String(model)),
  }),
  setShadow: t.field({
    type: ModelRef,
    description:
      'Mirrors a fraction (0–1) of the requests to a version; its answers are recorded (inferences.shadow) and never returned. ' +
      'version null or fraction 0 turns it off.',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), version: t.arg.string(), fraction: t.arg.float({ required: true }) },
    resolve: (_r, { model, version, fraction }, ctx) => ctx.services.traffic.setShadow(String(model), version ?? null, fraction),
  }),
  setFallbacks: t.field({
    type: ModelRef,
    description: 'Models tried in order when every instance of this one fails (at most 5).',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), models: t.arg.idList({ required: true }) },
    resolve: (_r, { model, models }, ctx) => ctx.services.traffic.setFallbacks(String(model), models.map(String)),
  }),
  setBalancer: t.field({
    type: ModelRef,
    description: 'The balancer plugin for this model (null: the configured default, router.balancer).',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), balancer: t.arg.string() },
    resolve: (_r, { model, balancer }, ctx) => ctx.services.traffic.setBalancer(String(model), balancer ?? null, ctx.services.plugins.names('balancer')),
  }),
  setAutoRollback: t.field({
    type: ModelRef,
    description: 'Automatic canary rollback (null turns it off). A rollback removes the canary from the split and emits TRAFFIC_CHANGED.',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), policy: t.arg({ type: AutoRollbackInput }) },
    resolve: (_r, { model, policy }, ctx) => ctx.services.traffic.setAutoRollback(String(model), policy ?? null),
  }),
  setIdempotent: t.field({
    type: ModelRef,
    description:
      'Whether calls to the model are idempotent (default true). ' +
      'When false, a failure after which the model may have run (502, 504, timeouts, resets) is not retried unless router.retryNonIdempotent.',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), idempotent: t.arg.boolean({ required: true }) },
    resolve: (_r, { model, idempotent }, ctx) => ctx.services.traffic.setIdempotent(String(model), idempotent),
  }),
  submitFeedback: t.field({
    type: FeedbackRef,
    description: 'Scores a recorded inference (0–1, e.g. 1 = correct); feeds Model.variants.accuracy.',
    authScopes: { permission: 'inference:invoke' },
    args: { inferenceId: t.arg.id({ required: true }), score: t.arg.float({ required: true }), label: t.arg.string() },
    resolve: (_r, { inferenceId, score, label }, ctx) => ctx.services.traffic.submitFeedback(String(inferenceId), score, label ?? null),
  }),
}));

builder.subscriptionFields((t) => ({
  instanceHealth: t.field({
    type: InstanceHealthEventRef,
    description: 'Router health changes of the instances of a model: probes, outlier ejection, circuit breaker.',
    authScopes: (_r, args) => ({ model: { permission: 'models:read', id: String(args.modelId) } }),
    args: { modelId: t.arg.id({ required: true }) },
    subscribe: async function* (_r, args, ctx) {
      for await (const e of ctx.services.events.subscribe('instanceHealth', ctx.signal)) {
        if (e.modelId === String(args.modelId)) yield e;
      }
    },
    resolve: (e) => e,
  }),
}));
