import type { AuditItem, ChainVerdict } from '../audit/chain.ts';
import { McpError } from '../errors.ts';
import { builder } from './builder.ts';
import { PageInfo } from './models.ts';

const AuditOutcome = builder.enumType('AuditOutcome', { values: ['OK', 'DENIED', 'FAILED'] as const });

const AuditEntryRef = builder.objectRef<AuditItem>('AuditEntry').implement({
  description: 'One entry of the append-only, hash-chained audit log: an event row, or one inference call of a batch row.',
  fields: (t) => ({
    id: t.id({ resolve: (r) => String(r.id) }),
    chainRowId: t.id({
      description: 'The chain row holding this entry: its own id, or (inference calls) the id of the batch row carrying it, whose prevHash and hash these are.',
      resolve: (r) => String(r.chainRowId),
    }),
    at: t.expose('at', { type: 'DateTime' }),
    actor: t.exposeString('actor', { nullable: true, description: 'Principal id (the username tried, for a failed login); null when anonymous.' }),
    actorVia: t.exposeString('actorVia', { nullable: true }),
    action: t.exposeString('action', { description: 'Dotted verb: model.register, mutation.drainInstance, auth.login, authz.denied, inference, …' }),
    target: t.exposeString('target', { nullable: true }),
    model: t.exposeString('model', { nullable: true }),
    outcome: t.field({ type: AuditOutcome, resolve: (r) => r.outcome.toUpperCase() as 'OK' | 'DENIED' | 'FAILED' }),
    ip: t.exposeString('ip', { nullable: true }),
    requestId: t.exposeString('requestId', { nullable: true }),
    latencyMs: t.exposeFloat('latencyMs', { nullable: true }),
    details: t.expose('details', { type: 'JSON' }),
    prevHash: t.exposeString('prevHash'),
    hash: t.exposeString('hash', { description: 'hex SHA-256 over prevHash, "\\n" and the canonical form of the row (docs/security/audit.md).' }),
  }),
});

const AuditConnection = builder.objectRef<{ items: AuditItem[]; endCursor: string | null; hasNextPage: boolean }>('AuditConnection').implement({
  fields: (t) => ({
    nodes: t.field({ type: [AuditEntryRef], resolve: (c) => c.items }),
    pageInfo: t.field({ type: PageInfo, resolve: (c) => c }),
  }),
});

const AuditFilter = builder.inputType('AuditFilter', {
  fields: (t) => ({
    actor: t.string(),
    action: t.string({ description: 'An action, or a prefix ending in * (model.*).' }),
    model: t.string(),
    outcome: t.field({ type: AuditOutcome }),
    since: t.field({ type: 'DateTime', description: 'Rows at or after this time.' }),
    until: t.field({ type: 'DateTime', description: 'Rows before this time.' }),
  }),
});

const ChainVerdictRef = builder.objectRef<ChainVerdict>('AuditChainVerdict').implement({
  fields: (t) => ({
    ok: t.exposeBoolean('ok'),
    checked: t.exposeInt('checked'),
    firstBrokenId: t.id({ nullable: true, resolve: (v) => (v.firstBrokenId === null ? null : String(v.firstBrokenId)) }),
    lastId: t.id({ nullable: true, description: 'The last row checked.', resolve: (v) => (v.lastId === null ? null : String(v.lastId)) }),
    lastHash: t.exposeString('lastHash', {
      nullable: true,
      description: 'Its hash: keep it outside the database (an anchor) to detect later removal of the newest rows.',
    }),
  }),
});

/** A row id argument: a positive integer. */
function rowId(v: string | number | null | undefined, path: string): number | undefined {
  if (v === null || v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new McpError('MCP_VALIDATION_FAILED', `${path}: a row id (a positive integer)`, { details: { path } });
  return n;
}

builder.queryFields((t) => ({
  auditLog: t.field({
    type: AuditConnection,
    description: 'The audit log, newest first, with cursor pagination. Needs audit:read.',
    authScopes: { permission: 'audit:read' },
    args: {
      filter: t.arg({ type: AuditFilter }),
      first: t.arg.int({ defaultValue: 50, description: '1 to 500.' }),
      after: t.arg.string({ description: 'endCursor of the previous page.' }),
    },
    resolve: (_r, args, ctx) =>
      ctx.services.audit.list(
        {
          actor: args.filter?.actor ?? undefined,
          action: args.filter?.action ?? undefined,
          model: args.filter?.model ?? undefined,
          outcome: args.filter?.outcome?.toLowerCase(),
          since: args.filter?.since ?? undefined,
          until: args.filter?.until ?? undefined,
        },
        { first: args.first ?? 50, after: args.after ?? undefined },
      ),
  }),
  verifyAuditChain: t.field({
    type: ChainVerdictRef,
    description: 'Recomputes the hash chain from fromId (default: the first row), at most limit rows (default: all), a page at a time. Needs audit:read.',
    authScopes: { permission: 'audit:read' },
    args: { fromId: t.arg.id(), limit: t.arg.int() },
    resolve: (_r, args, ctx) => {
      if (args.limit !== null && args.limit !== undefined && args.limit < 1) {
        throw new McpError('MCP_VALIDATION_FAILED', 'limit: at least 1', { details: { path: 'limit' } });
      }
      return ctx.services.audit.verify({ fromId: rowId(args.fromId, 'fromId'), limit: args.limit ?? undefined });
    },
  }),
}));
