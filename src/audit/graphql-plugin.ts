import { getOperationAST, GraphQLError, Kind, valueFromASTUntyped, type ExecutionArgs, type ExecutionResult, type FieldNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { storageFailure } from '../db/storage-errors.ts';
import { isMcpError } from '../errors.ts';
import type { GraphQLContext } from '../graphql/context.ts';
import { auditContextOf, runWithAuditContext, type AuditContext } from './context.ts';
import type { AuditEntry, AuditRecorder } from './types.ts';

function originalOf(e: GraphQLError): unknown {
  let original: unknown = e;
  while (original instanceof GraphQLError && original.originalError) original = original.originalError;
  return original;
}

/** The stable code of a GraphQL error (its McpError's code when it wraps one). */
function codeOf(e: GraphQLError): string | undefined {
  const original = originalOf(e);
  if (isMcpError(original)) return original.code;
  if (storageFailure(original)) return 'MCP_STORAGE_UNAVAILABLE';
  return typeof e.extensions?.code === 'string' ? e.extensions.code : undefined;
}

const DENIED = new Set(['MCP_FORBIDDEN', 'MCP_UNAUTHENTICATED']);

/** Mutation fields that are inference calls, audited by the inference audit instead of as `mutation.<field>`. */
const INFERENCE_MUTATIONS = ['infer'];

/** Arguments that name what a mutation acts on (values only for these; other arguments are never stored). */
function targetOf(field: FieldNode, variables: ExecutionArgs['variableValues']): { target?: string; model?: string } {
  const args: Record<string, unknown> = {};
  for (const a of field.arguments ?? []) args[a.name.value] = valueFromASTUntyped(a.value, variables ?? undefined);
  const str = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? String(v) : undefined);
  const input = (args.input && typeof args.input === 'object' ? args.input : {}) as Record<string, unknown>;
  const model = str(args.model) ?? str(args.modelId);
  const target = str(args.id) ?? str(args.instanceId) ?? str(args.workerId) ?? str(args.inferenceId) ?? str(input.id) ?? str(input.name) ?? model;
  return { target, model: model ?? (field.name.value.endsWith('Model') ? (str(args.id) ?? str(input.id)) : undefined) };
}

function isResult(r: unknown): r is ExecutionResult {
  return typeof r === 'object' && r !== null && !(Symbol.asyncIterator in r);
}

/**
 * The audit trail of the GraphQL surface (HTTP and WebSocket alike):
 * - every mutation field → one row `mutation.<field>` (who, target, outcome, ip, request id,
 *   latency), committed before the answer is sent (durable); when it cannot be recorded the
 *   answer carries MCP_STORAGE_UNAVAILABLE (at once when the mutation itself failed for want of storage: its row is
 *   buffered). `audit.skipMutations` (the worker heartbeat) are not recorded,
 *   nor `infer`, whose calls are `inference` rows (audit.inference) like those of every other entry point.
 * - every authorization denial (MCP_UNAUTHENTICATED / MCP_FORBIDDEN on a field) → `authz.denied`.
 * - mutations run inside an audit context, so the admin changes they make (ModelRegistry) write
 *   their own rows, in their own transaction, with the same actor, ip and request id.
 */
export function useAuditLog(audit: AuditRecorder, skipMutations: readonly string[]): Plugin {
  // `infer` is the data plane, not a change: the inference audit records it (`inference` rows, audit.inference),
  // group-committed with its `inferences` record like every other entry point's calls.
  const skip = new Set([...skipMutations, ...INFERENCE_MUTATIONS]);
  return {
    onExecute({ args, executeFn, setExecuteFn }) {
      const op = getOperationAST(args.document, args.operationName);
      if (!op) return;
      const ctx = args.contextValue as unknown as GraphQLContext;
      const actx = auditContextOf(ctx.principal, ctx.ip, ctx.requestId);
      const fields = op.selectionSet.selections.filter((s): s is FieldNode => s.kind === Kind.FIELD);
      const mutation = op.operation === 'mutation' && fields.some((f) => !skip.has(f.name.value));
      const started = performance.now();
      setExecuteFn(async (a) => {
        const result = mutation ? await runWithAuditContext(actx, () => executeFn(a)) : await executeFn(a);
        if (!isResult(result)) return result;
        const entries = auditEntries(
          op.operation,
          op.name?.value,
          fields,
          a.variableValues,
          result,
          actx,
          performance.now() - started,
          mutation ? skip : undefined,
        );
        if (entries.length === 0) return result;
        // A mutation that failed because the database is unreachable changed nothing, and its row cannot be
        // committed now: it is buffered (written once the database is back) instead of holding the answer.
        const durable = mutation && !result.errors?.some((e) => storageFailure(originalOf(e)));
        const waits = entries.map((e) => audit.record(e, { durable }));
        if (!durable) {
          for (const w of waits) void w.catch(() => {}); // a full buffer is counted and logged by the log itself
          return result;
        }
        try {
          await Promise.all(waits);
          return result;
        } catch (err) {
          const code = isMcpError(err) ? err.code : 'MCP_STORAGE_UNAVAILABLE';
          const e = new GraphQLError('the audit log could not record this mutation; retry later', { extensions: { code }, originalError: err as Error });
          return { ...result, errors: [...(result.errors ?? []), e] };
        }
      });
    },
  };
}

function auditEntries(
  operation: string,
  operationName: string | undefined,
  fields: FieldNode[],
  variables: ExecutionArgs['variableValues'],
  result: ExecutionResult,
  actx: AuditContext,
  latencyMs: number,
  mutationsExcept: Set<string> | undefined,
): AuditEntry[] {
  const out: AuditEntry[] = [];
  const errors = result.errors ?? [];
  const base = { ...actx, latencyMs };
  for (const e of errors) {
    const code = codeOf(e);
    if (!code || !DENIED.has(code)) continue;
    out.push({
      ...base,
      action: 'authz.denied',
      target: `graphql:${(e.path ?? []).join('.') || operation}`,
      outcome: 'denied',
      details: { entry: 'graphql', operation, operationName, code },
    });
  }
  if (!mutationsExcept) return out;
  for (const f of fields) {
    if (mutationsExcept.has(f.name.value)) continue;
    const key = f.alias?.value ?? f.name.value;
    const own = errors.filter((e) => e.path?.[0] === key);
    const codes = own.map(codeOf);
    if (codes.some((c) => c && DENIED.has(c))) continue; // recorded as authz.denied above
    out.push({
      ...base,
      ...targetOf(f, variables),
      action: `mutation.${f.name.value}`,
      outcome: own.length ? 'failed' : 'ok',
      details: { operationName, ...(own.length ? { errorCode: codes[0] ?? 'MCP_INTERNAL' } : {}) },
    });
  }
  return out;
}
