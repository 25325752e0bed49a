/**
 * Input types a newer client may send more fields of than this gateway knows: the worker protocol's
 * registration and heartbeat inputs (a rolling upgrade that updates workers first must not break
 * them). GraphQL refuses unknown input fields; for input objects marked
 * `extensions: { unknownFieldsIgnored: true }` this plugin drops the unknown keys from the variables
 * before they are coerced, at every depth of a marked type (its device and instance entries too).
 * Known fields are coerced and validated as ever; literals in the document stay strict (the worker
 * sends variables). The variables were parsed from a body the HTTP server bounds, and the walk
 * follows the schema's types only, so it is as bounded as the body.
 */
import type { Plugin } from '@envelop/core';
import { getOperationAST, isInputObjectType, isListType, isNonNullType, typeFromAST, type GraphQLInputType, type GraphQLSchema, type TypeNode } from 'graphql';
import type { Logger } from 'pino';

/** The extension that marks an input object type as tolerant of unknown fields. */
export const UNKNOWN_FIELDS_IGNORED = { unknownFieldsIgnored: true } as const;
/** Ignored field names kept for the debug log line (per request). */
const MAX_NAMED = 10;

function marked(type: GraphQLInputType): boolean {
  return isInputObjectType(type) && (type.extensions as { unknownFieldsIgnored?: boolean }).unknownFieldsIgnored === true;
}

const reaches = new WeakMap<GraphQLInputType, boolean>();

/** Whether `type` (through lists and non-null) is or holds a marked input object; remembered per type (hot path: every operation with variables). */
function reachesMarked(type: GraphQLInputType, seen = new Set<GraphQLInputType>()): boolean {
  if (isNonNullType(type) || isListType(type)) return reachesMarked(type.ofType as GraphQLInputType, seen);
  if (!isInputObjectType(type) || seen.has(type)) return false;
  const known = reaches.get(type);
  if (known !== undefined) return known;
  seen.add(type);
  const answer = marked(type) || Object.values(type.getFields()).some((f) => reachesMarked(f.type, seen));
  // a cycle answered false for a type under evaluation: remember only the outermost answer
  if (seen.size === 1 || answer) reaches.set(type, answer);
  return answer;
}

/** `value` with the keys its marked input objects do not define dropped; other values as they are. */
function prune(type: GraphQLInputType, value: unknown, dropped: string[]): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (isNonNullType(type)) return prune(type.ofType as GraphQLInputType, value, dropped);
  if (isListType(type)) {
    const item = type.ofType as GraphQLInputType;
    return Array.isArray(value) ? value.map((v) => prune(item, v, dropped)) : prune(item, value, dropped);
  }
  if (!isInputObjectType(type) || Array.isArray(value)) return value;
  const fields = type.getFields();
  const ignore = marked(type);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const field = Object.hasOwn(fields, k) ? fields[k] : undefined;
    if (field) out[k] = prune(field.type, v, dropped);
    else if (ignore) {
      if (dropped.length < MAX_NAMED) dropped.push(`${type.name}.${k.slice(0, 64)}`);
    } else out[k] = v;
  }
  return out;
}

/** Per schema and variable type node: whether the variable's type reaches a marked input object. */
function variableType(schema: GraphQLSchema, node: TypeNode): GraphQLInputType | undefined {
  const t = typeFromAST(schema, node as never) as GraphQLInputType | undefined;
  return t && reachesMarked(t) ? t : undefined;
}

export function useForwardCompatibleInputs(): Plugin {
  return {
    onExecute({ args }) {
      const vars = args.variableValues as Record<string, unknown> | null | undefined;
      if (!vars || typeof vars !== 'object') return;
      const operation = getOperationAST(args.document, args.operationName);
      const defs = operation?.variableDefinitions;
      if (!defs?.length) return;
      let pruned: Record<string, unknown> | undefined;
      const dropped: string[] = [];
      for (const def of defs) {
        const name = def.variable.name.value;
        if (!Object.hasOwn(vars, name)) continue;
        const type = variableType(args.schema, def.type);
        if (!type) continue;
        pruned ??= { ...vars };
        pruned[name] = prune(type, vars[name], dropped);
      }
      if (!pruned) return;
      // The executor (graphql-js or the compiled one, set by a later plugin) gets the same args object.
      (args as { variableValues?: Record<string, unknown> }).variableValues = pruned;
      if (dropped.length) {
        const logger = (args.contextValue as { logger?: Logger } | undefined)?.logger;
        logger?.debug({ ignoredFields: dropped }, 'input fields this gateway does not know were ignored (a newer client)');
      }
    },
  };
}
