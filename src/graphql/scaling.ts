/** GraphQL adapter of auto-scaling: policies per model version and the decision history (src/scaling). */
import { McpError } from '../errors.ts';
import { builder } from './builder.ts';
import type { ScalingDecision, StoredPolicy } from '../scaling/store.ts';

const ScalingPolicyRef = builder.objectRef<StoredPolicy>('ScalingPolicy').implement({
  description: 'How a model version scales: scaler, bounds, scale to zero, stabilisation, actuator.',
  fields: (t) => ({
    model: t.exposeString('model'),
    version: t.exposeString('version'),
    scaler: t.string({ description: 'Configured scaler plugin.', resolve: (p) => p.policy.scaler }),
    minInstances: t.int({ resolve: (p) => p.policy.minInstances }),
    maxInstances: t.int({ resolve: (p) => p.policy.maxInstances }),
    scaleToZero: t.boolean({ resolve: (p) => p.policy.scaleToZero }),
    holdMs: t.int({ description: 'How long a request waits for the first instance at zero.', resolve: (p) => p.policy.holdMs }),
    scaleUpStabilizationMs: t.int({ resolve: (p) => p.policy.scaleUpStabilizationMs }),
    scaleDownStabilizationMs: t.int({ resolve: (p) => p.policy.scaleDownStabilizationMs }),
    reverseCooldownMs: t.int({ resolve: (p) => p.policy.reverseCooldownMs }),
    historyMs: t.int({ resolve: (p) => p.policy.historyMs }),
    drainMs: t.int({ resolve: (p) => p.policy.drainMs }),
    actuator: t.string({ resolve: (p) => p.policy.actuator.name }),
    actuatorOptions: t.field({ type: 'JSON', resolve: (p) => p.policy.actuator.options }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

const ScalingDecisionRef = builder.objectRef<ScalingDecision>('ScalingDecision').implement({
  description: 'One change the scaling controller made (or tried), with its reason.',
  fields: (t) => ({
    id: t.exposeInt('id'),
    model: t.exposeString('model'),
    version: t.exposeString('version'),
    at: t.expose('at', { type: 'DateTime' }),
    fromInstances: t.exposeInt('fromInstances'),
    toInstances: t.exposeInt('toInstances'),
    recommended: t.exposeInt('recommended', { description: 'What the scaler asked for, before bounds and stabilisation.' }),
    scaler: t.exposeString('scaler'),
    actuator: t.exposeString('actuator'),
    reason: t.exposeString('reason'),
    outcome: t.string({ description: 'APPLIED or FAILED.', resolve: (d) => d.outcome.toUpperCase() }),
    error: t.exposeString('error', { nullable: true }),
  }),
});

const ActuatorInput = builder.inputType('ScalingActuatorInput', {
  fields: (t) => ({
    name: t.string({ description: 'instances (default) or a scaling.actuators entry.' }),
    options: t.field({ type: 'JSON', description: "The actuator's options for this version." }),
  }),
});

const ScalingPolicyInput = builder.inputType('ScalingPolicyInput', {
  description: 'Omitted fields take their defaults (README "Auto-scaling").',
  fields: (t) => ({
    scaler: t.string({ required: true }),
    minInstances: t.int(),
    maxInstances: t.int(),
    scaleToZero: t.boolean(),
    holdMs: t.int(),
    scaleUpStabilizationMs: t.int(),
    scaleDownStabilizationMs: t.int(),
    reverseCooldownMs: t.int(),
    historyMs: t.int(),
    drainMs: t.int(),
    actuator: t.field({ type: ActuatorInput }),
  }),
});

/** GraphQL input without the nulls (absent fields take the policy defaults). */
function defined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(o)
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => [k, v && typeof v === 'object' && !Array.isArray(v) && k === 'actuator' ? defined(v as Record<string, unknown>) : v]),
  );
}

builder.queryFields((t) => ({
  scalingPolicies: t.field({
    type: [ScalingPolicyRef],
    description: 'Scaling policies, of one model when given.',
    authScopes: (_r, args) => (args.model ? { model: { permission: 'models:read', id: String(args.model) } } : { permission: 'models:read' }),
    args: { model: t.arg.id() },
    resolve: async (_r, args, ctx) =>
      (await ctx.services.scaling.policies(args.model ? String(args.model) : undefined)).filter((p) =>
        ctx.services.auth.can(ctx.principal, 'models:read', p.model),
      ),
  }),
  scalingDecisions: t.field({
    type: [ScalingDecisionRef],
    description: "The scaling controller's decisions for a model (one version when given), newest first, with their reasons.",
    authScopes: (_r, args) => ({ model: { permission: 'models:read', id: String(args.model) } }),
    args: {
      model: t.arg.id({ required: true }),
      version: t.arg.string(),
      last: t.arg.int({ defaultValue: 50, description: '1 to 500.' }),
    },
    resolve: (_r, args, ctx) => {
      const last = args.last ?? 50;
      if (!(last >= 1 && last <= 500)) throw new McpError('MCP_VALIDATION_FAILED', 'last: 1 to 500', { details: { path: 'last' } });
      return ctx.services.scaling.decisions(String(args.model), args.version ?? undefined, last);
    },
  }),
}));

builder.mutationFields((t) => ({
  setScalingPolicy: t.field({
    type: ScalingPolicyRef,
    description: "Sets a model version's scaling policy (the default version when none is named); the controller follows it from its next tick.",
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), version: t.arg.string(), policy: t.arg({ type: ScalingPolicyInput, required: true }) },
    resolve: (_r, args, ctx) => ctx.services.scaling.setPolicy(String(args.model), args.version ?? undefined, defined(args.policy as Record<string, unknown>)),
  }),
  removeScalingPolicy: t.boolean({
    description: "Removes a version's scaling policy; its instances stay as they are. Whether there was one.",
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), version: t.arg.string({ required: true }) },
    resolve: (_r, args, ctx) => ctx.services.scaling.removePolicy(String(args.model), args.version),
  }),
}));
