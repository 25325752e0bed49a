import type { AlertEvent, AlertState, InstanceRow } from '../alerts/engine.ts';
import { MAX_DEAD_LETTER_PAGE, type DeadLetterPage, type DeadLetterRow } from '../alerts/dead-letters.ts';
import type { StoredRule } from '../alerts/rule-store.ts';
import { McpError } from '../errors.ts';
import { builder } from './builder.ts';

const STATES = ['INACTIVE', 'PENDING', 'FIRING', 'RESOLVED'] as const;
const AlertStateEnum = builder.enumType('AlertState', { values: STATES });
const toEnum = (s: string) => s.toUpperCase() as (typeof STATES)[number];
const MAX_SILENCE_MS = 30 * 86_400_000;

const AlertRuleRef = builder.objectRef<StoredRule>('AlertRule').implement({
  description: 'An alert rule (docs/monitoring/alerts.md): from the config file (source config, read-only here) or made over GraphQL (source api).',
  fields: (t) => ({
    name: t.string({ resolve: (r) => r.rule.name }),
    kind: t.string({ description: 'threshold | rate | burnRate | anomaly', resolve: (r) => r.rule.kind }),
    source: t.string({ resolve: (r) => r.source }),
    metric: t.string({ resolve: (r) => r.rule.metric }),
    severity: t.string({ resolve: (r) => r.rule.severity }),
    spec: t.field({ type: 'JSON', description: 'The whole rule, defaults filled in.', resolve: (r) => r.rule as unknown as Record<string, unknown> }),
    updatedAt: t.field({ type: 'DateTime', resolve: (r) => r.updatedAt }),
  }),
});

const AlertRef = builder.objectRef<InstanceRow>('Alert').implement({
  description: 'One alert: a rule and one group of labels, with its current state.',
  fields: (t) => ({
    id: t.exposeID('id'),
    rule: t.exposeString('rule'),
    state: t.field({ type: AlertStateEnum, resolve: (a) => toEnum(a.state) }),
    labels: t.field({ type: 'JSON', resolve: (a) => a.labels }),
    value: t.exposeFloat('value', { nullable: true, description: 'The value at the last state change (anomaly rules: the z-score).' }),
    seq: t.exposeInt('seq', { description: 'Number of state changes so far.' }),
    activeSince: t.expose('activeSince', { type: 'DateTime', nullable: true }),
    firedAt: t.expose('firedAt', { type: 'DateTime', nullable: true }),
    resolvedAt: t.expose('resolvedAt', { type: 'DateTime', nullable: true }),
    silencedUntil: t.expose('silencedUntil', { type: 'DateTime', nullable: true }),
    acknowledgedBy: t.exposeString('acknowledgedBy', { nullable: true }),
    acknowledgedAt: t.expose('acknowledgedAt', { type: 'DateTime', nullable: true }),
  }),
});

const AlertTransitionRef = builder
  .objectRef<{ seq: number; fromState: string; toState: string; value: number | null; epoch: number; createdAt: Date }>('AlertTransition')
  .implement({
    fields: (t) => ({
      seq: t.exposeInt('seq'),
      from: t.field({ type: AlertStateEnum, resolve: (h) => toEnum(h.fromState) }),
      to: t.field({ type: AlertStateEnum, resolve: (h) => toEnum(h.toState) }),
      value: t.exposeFloat('value', { nullable: true }),
      epoch: t.exposeInt('epoch', { description: 'The evaluator lease epoch that wrote it.' }),
      at: t.expose('createdAt', { type: 'DateTime' }),
    }),
  });

const AlertEventRef = builder.objectRef<AlertEvent>('AlertEvent').implement({
  fields: (t) => ({
    alertId: t.exposeID('alertId'),
    rule: t.exposeString('rule'),
    from: t.field({ type: AlertStateEnum, resolve: (e) => toEnum(e.from) }),
    to: t.field({ type: AlertStateEnum, resolve: (e) => toEnum(e.to) }),
    seq: t.exposeInt('seq'),
    at: t.field({ type: 'DateTime', resolve: (e) => new Date(e.at) }),
  }),
});

const AlertDeadLetterRef = builder.objectRef<DeadLetterRow>('AlertDeadLetter').implement({
  description: 'An alert notification a sink did not take: every attempt failed, its queue was full, or the gateway shut down first.',
  fields: (t) => ({
    id: t.id({ resolve: (d) => String(d.id) }),
    sink: t.exposeString('sink', { description: 'Configured name of the alert sink.' }),
    alertId: t.exposeID('alertId'),
    rule: t.exposeString('rule'),
    state: t.field({ type: AlertStateEnum, resolve: (d) => toEnum(d.state) }),
    reason: t.exposeString('reason', { description: 'failed | queue_full | shutdown' }),
    attempts: t.exposeInt('attempts', { description: 'Attempts made (0: never tried).' }),
    lastError: t.exposeString('lastError', { nullable: true, description: "The last attempt's error." }),
    alert: t.field({ type: 'JSON', description: 'The notification as the sink would have got it.', resolve: (d) => d.alert }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

const AlertDeadLetterPageRef = builder.objectRef<DeadLetterPage>('AlertDeadLetterPage').implement({
  fields: (t) => ({
    nodes: t.field({ type: [AlertDeadLetterRef], resolve: (p) => p.nodes }),
    nextCursor: t.string({
      nullable: true,
      description: 'Pass as `after` for the next (older) page; null on the last page.',
      resolve: (p) => p.nextCursor ?? null,
    }),
  }),
});

function notFound(id: string): never {
  throw new McpError('MCP_NOT_FOUND', `no alert with id "${id}"`, { details: { path: 'id' } });
}

builder.queryFields((t) => ({
  alertRules: t.field({
    type: [AlertRuleRef],
    description: 'Every alert rule. Needs alerts:read.',
    authScopes: { permission: 'alerts:read' },
    resolve: (_r, _a, ctx) => ctx.services.alertEngine.rules.list(),
  }),
  alerts: t.field({
    type: [AlertRef],
    description: 'Alerts, optionally only those in the given states, by rule. Needs alerts:read.',
    authScopes: { permission: 'alerts:read' },
    args: { state: t.arg({ type: [AlertStateEnum] }), first: t.arg.int({ defaultValue: 1000, description: '1 to 5000.' }) },
    resolve: (_r, args, ctx) => {
      const first = args.first ?? 1000;
      if (first < 1 || first > 5000) throw new McpError('MCP_VALIDATION_FAILED', 'first: 1 to 5000', { details: { path: 'first' } });
      return ctx.services.alertEngine.alerts(
        args.state?.map((s) => s.toLowerCase() as AlertState),
        first,
      );
    },
  }),
  alertDeadLetters: t.field({
    type: AlertDeadLetterPageRef,
    description: `Alert dead letters, newest first, a page at a time (first: 1 to ${MAX_DEAD_LETTER_PAGE}), optionally of one sink or rule. Needs alerts:read.`,
    authScopes: { permission: 'alerts:read' },
    args: {
      first: t.arg.int({ defaultValue: 50 }),
      after: t.arg.string({ description: 'nextCursor of the previous page.' }),
      sink: t.arg.string(),
      rule: t.arg.string(),
    },
    resolve: (_r, args, ctx) =>
      ctx.services.alertDeadLetters.list({
        first: args.first ?? 50,
        ...(args.after != null ? { after: args.after } : {}),
        ...(args.sink != null ? { sink: args.sink } : {}),
        ...(args.rule != null ? { rule: args.rule } : {}),
      }),
  }),
  alertHistory: t.field({
    type: [AlertTransitionRef],
    description: "An alert's state changes, oldest first. Needs alerts:read.",
    authScopes: { permission: 'alerts:read' },
    args: { id: t.arg.id({ required: true }), first: t.arg.int({ defaultValue: 100, description: '1 to 1000.' }) },
    resolve: (_r, args, ctx) => {
      const first = args.first ?? 100;
      if (first < 1 || first > 1000) throw new McpError('MCP_VALIDATION_FAILED', 'first: 1 to 1000', { details: { path: 'first' } });
      return ctx.services.alertEngine.history(String(args.id), first);
    },
  }),
}));

builder.mutationFields((t) => ({
  createAlertRule: t.field({
    type: AlertRuleRef,
    description: 'Adds an alert rule (JSON as in the config file, docs/monitoring/alerts.md). Needs alerts:write.',
    authScopes: { permission: 'alerts:write' },
    args: { rule: t.arg({ type: 'JSON', required: true }) },
    resolve: (_r, args, ctx) => ctx.services.alertEngine.rules.create(args.rule),
  }),
  updateAlertRule: t.field({
    type: AlertRuleRef,
    description: 'Replaces an alert rule made over GraphQL (config rules change in the config file). Needs alerts:write.',
    authScopes: { permission: 'alerts:write' },
    args: { name: t.arg.string({ required: true }), rule: t.arg({ type: 'JSON', required: true }) },
    resolve: (_r, args, ctx) => ctx.services.alertEngine.rules.update(args.name, args.rule),
  }),
  deleteAlertRule: t.boolean({
    description: 'Deletes an alert rule made over GraphQL. Needs alerts:write.',
    authScopes: { permission: 'alerts:write' },
    args: { name: t.arg.string({ required: true }) },
    resolve: (_r, args, ctx) => ctx.services.alertEngine.rules.delete(args.name),
  }),
  silenceAlert: t.field({
    type: AlertRef,
    description: 'Mutes an alert for a while (1 minute to 30 days): no notification while silenced. Needs alerts:write.',
    authScopes: { permission: 'alerts:write' },
    args: { id: t.arg.id({ required: true }), durationMs: t.arg.int({ required: true }) },
    resolve: async (_r, args, ctx) => {
      if (args.durationMs < 60_000 || args.durationMs > MAX_SILENCE_MS) {
        throw new McpError('MCP_VALIDATION_FAILED', 'durationMs: 60000 (1 minute) to 2592000000 (30 days)', { details: { path: 'durationMs' } });
      }
      return (await ctx.services.alertEngine.silence(String(args.id), Date.now() + args.durationMs)) ?? notFound(String(args.id));
    },
  }),
  redeliverAlertDeadLetter: t.field({
    type: AlertDeadLetterRef,
    description:
      'Takes a dead letter out of the table and queues its alert to its sink again (retried as any notification; a new dead letter if it fails again). Returns the record taken. Needs alerts:write.',
    authScopes: { permission: 'alerts:write' },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, args, ctx) => ctx.services.alertDeadLetters.redeliver(String(args.id)),
  }),
  acknowledgeAlert: t.field({
    type: AlertRef,
    description: 'Records that someone is on a firing alert (cleared when it fires again). Needs alerts:write.',
    authScopes: { permission: 'alerts:write' },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (_r, args, ctx) =>
      (await ctx.services.alertEngine.acknowledge(String(args.id), ctx.principal?.id ?? 'anonymous')) ??
      (() => {
        throw new McpError('MCP_CONFLICT', `alert "${String(args.id)}" is not firing (or does not exist)`, { details: { path: 'id' } });
      })(),
  }),
}));

builder.subscriptionFields((t) => ({
  alertEvents: t.field({
    type: AlertEventRef,
    description: 'Alert state changes as they are written (pending, firing, resolved, …), from whichever replica evaluates. Needs alerts:read.',
    authScopes: { permission: 'alerts:read' },
    subscribe: (_r, _a, ctx) => ctx.services.events.subscribe('alertEvents', ctx.signal),
    resolve: (e) => e,
  }),
}));
