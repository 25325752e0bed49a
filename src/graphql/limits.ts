/**
 * Limits every GraphQL document obeys, on HTTP and WebSocket alike (they share Yoga's envelop
 * pipeline): depth, aliases, directives and cost (graphql-armor's validation rules), no
 * introspection and no field suggestions in production mode (`security.mode: strict`), and ids
 * free of control characters (the one check of src/validation.ts, applied to ID literals and
 * ID-typed variables). The token limit and the parse cache are in ./document-cache.ts.
 * A refusal is MCP_BAD_REQUEST (400) with a stable `graphqlCode`.
 */
import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesRule } from '@escape.tech/graphql-armor-max-directives';
import {
  GraphQLError,
  Kind,
  getNamedType,
  isIntrospectionType,
  type ASTNode,
  type DocumentNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { idProblem } from '../validation.ts';

export interface GraphQLLimits {
  maxDepth: number;
  maxAliases: number;
  maxDirectives: number;
  maxCost: number;
}

/** The stable `graphqlCode` of each refusal. */
export const LIMIT_CODES = {
  depth: 'DEPTH_LIMIT',
  aliases: 'ALIAS_LIMIT',
  directives: 'DIRECTIVE_LIMIT',
  cost: 'COST_LIMIT',
  tokens: 'TOKEN_LIMIT',
  introspection: 'INTROSPECTION_DISABLED',
  id: 'INVALID_ID',
} as const;

function limitError(message: string, graphqlCode: string, nodes?: readonly ASTNode[]): GraphQLError {
  return new GraphQLError(message, { nodes, extensions: { code: 'MCP_BAD_REQUEST', graphqlCode, http: { status: 400 } } });
}

/** graphql-armor reports through onReject (no throw from inside validate): the error gets our code. */
const reporting = (graphqlCode: string) => ({
  propagateOnRejection: false,
  exposeLimits: true,
  onReject: [(ctx: ValidationContext | null, err: GraphQLError) => ctx?.reportError(limitError(err.message.replace(/^Syntax Error: /, ''), graphqlCode))],
});

/** String arguments that name an id although typed String (a version, a model id). */
const ID_ARGUMENTS: ReadonlySet<string> = new Set(['id', 'model', 'modelId', 'version', 'workerId', 'instanceId', 'inferenceId']);

/** Per document: the variables used where an id goes (filled by IdValuesRule, checked at execution). */
const idVariablesOf = new WeakMap<DocumentNode, Set<string>>();

/**
 * Ids in the document: a literal where an ID goes (an ID argument or input field, or a String
 * argument named like an id) must pass idProblem; a variable used there is remembered, and its
 * value checked before execution (checkIdVariables).
 */
const IdValuesRule: ValidationRule = (context) => {
  const variables = new Set<string>();
  idVariablesOf.set(context.getDocument(), variables);
  const isIdPosition = (): boolean => {
    const type = context.getInputType();
    if (!type) return false;
    const named = getNamedType(type).name;
    if (named === 'ID') return true;
    return named === 'String' && ID_ARGUMENTS.has(context.getArgument()?.name ?? '') && context.getParentInputType() === undefined;
  };
  return {
    StringValue(node) {
      if (!isIdPosition()) return;
      const problem = idProblem(node.value);
      if (problem) context.reportError(limitError(`an id ${problem}`, LIMIT_CODES.id, [node]));
    },
    Variable(node) {
      if (isIdPosition()) variables.add(node.name.value);
    },
  };
};

/** Introspection fields (`__schema`, `__type`), refused in production mode; `__typename` stays. */
const NoIntrospectionRule: ValidationRule = (context) => ({
  Field(node) {
    const type = context.getType();
    if (type && isIntrospectionType(getNamedType(type))) {
      context.reportError(limitError('introspection is disabled (security.mode: strict)', LIMIT_CODES.introspection, [node]));
    }
  },
});

/** The error without graphql-js's "Did you mean …?" (which reveals field and type names). */
function withoutSuggestions(e: Error): Error {
  if (!(e instanceof GraphQLError) || !/Did you mean/.test(e.message)) return e;
  return new GraphQLError(e.message.replace(/ ?Did you mean .+\?$/s, '').trim(), {
    nodes: e.nodes,
    source: e.source,
    positions: e.positions,
    path: e.path,
    extensions: e.extensions,
  });
}

/** The first id variable (or list element) whose value is not an acceptable id. */
function badIdVariable(document: DocumentNode, values: Record<string, unknown> | undefined): string | undefined {
  const names = idVariablesOf.get(document);
  if (!names || !values) return undefined;
  for (const name of names) {
    const value = values[name];
    for (const item of Array.isArray(value) ? value.flat(8) : [value]) {
      if (typeof item !== 'string') continue;
      const problem = idProblem(item);
      if (problem) return `variable $${name}: an id ${problem}`;
    }
  }
  return undefined;
}

/**
 * Aliased fields in the whole document (each fragment counted once): a linear walk run before
 * validation, because graphql-js's own rules are quadratic in the number of same-named fields
 * (1,000 aliases cost about a second to validate). Armor's rule then counts precisely.
 */
function aliasCount(document: DocumentNode, stopAt: number): number {
  let n = 0;
  const walk = (set: SelectionSetNode | undefined): void => {
    for (const sel of set?.selections ?? []) {
      if (n > stopAt) return;
      if (sel.kind === Kind.FIELD && sel.alias && sel.alias.value !== '__typename') n++;
      if (sel.kind !== Kind.FRAGMENT_SPREAD) walk(sel.selectionSet);
    }
  };
  for (const def of document.definitions) if (def.kind === Kind.OPERATION_DEFINITION || def.kind === Kind.FRAGMENT_DEFINITION) walk(def.selectionSet);
  return n;
}

/** The envelop plugin with the limits; `strict` also turns introspection and field suggestions off. */
export function useGraphQLLimits(limits: GraphQLLimits, strict: boolean): Plugin {
  const rules: ValidationRule[] = [
    maxDepthRule({ n: limits.maxDepth, ignoreIntrospection: true, ...reporting(LIMIT_CODES.depth) }),
    maxAliasesRule({ n: limits.maxAliases, ...reporting(LIMIT_CODES.aliases) }),
    maxDirectivesRule({ n: limits.maxDirectives, ...reporting(LIMIT_CODES.directives) }),
    costLimitRule({ maxCost: limits.maxCost, ignoreIntrospection: true, ...reporting(LIMIT_CODES.cost) }),
    IdValuesRule,
  ];
  if (strict) rules.push(NoIntrospectionRule);
  const validated = new WeakSet<DocumentNode>();
  const stripSuggestions = strict
    ? ({ valid, result, setResult }: { valid: boolean; result: readonly Error[]; setResult(r: Error[]): void }) => {
        if (!valid) setResult(result.map(withoutSuggestions));
      }
    : undefined;
  const checkVariables = ({
    args,
    setResultAndStopExecution,
  }: {
    args: { document: DocumentNode; operationName?: string | null; variableValues?: Record<string, unknown> | null };
    setResultAndStopExecution(r: { errors: GraphQLError[] }): void;
  }) => {
    const problem = badIdVariable(args.document, args.variableValues ?? undefined);
    if (problem) setResultAndStopExecution({ errors: [limitError(problem, LIMIT_CODES.id)] });
  };
  return {
    onValidate({ addValidationRule, params, setResult }) {
      // A document validated once has its result cached with it (useBoundedDocuments): no rule to add.
      // The suggestions are stripped on every answer (the cache holds the result as validation made it).
      if (validated.has(params.documentAST)) return stripSuggestions;
      validated.add(params.documentAST);
      const aliases = aliasCount(params.documentAST, limits.maxAliases);
      if (aliases > limits.maxAliases) {
        setResult([limitError(`Aliases limit of ${limits.maxAliases} exceeded.`, LIMIT_CODES.aliases)]);
        return;
      }
      for (const rule of rules) addValidationRule(rule);
      return stripSuggestions;
    },
    onExecute: checkVariables as never,
    onSubscribe: checkVariables as never,
  };
}
