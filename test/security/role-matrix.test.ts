/**
 * The role × operation matrix. The operations come from the schema itself (every field of Query,
 * Mutation and Subscription) plus every REST, OpenAI and KServe route: a new field without a
 * permission (`authScopes`) fails this test. Each principal (anonymous, every built-in role, a
 * custom role, a model-limited key) calls each operation; the expectation is computed from the
 * role table: no principal → 401, a missing permission (or model) → 403, otherwise neither.
 */
import {
  getNamedType,
  isEnumType,
  isInputObjectType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputType,
} from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { can, roleTable, type Permission } from '../../src/auth/permissions.ts';
import { buildSchema } from '../../src/graphql/schema.ts';
import type { Principal } from '../../src/inference/types.ts';
import { startStack, type Stack } from '../entrypoints/harness.ts';

/** Fields anyone may call: signing in, and the liveness summary. */
const PUBLIC = new Set(['Query.health', 'Mutation.login', 'Mutation.refresh', 'Mutation.logout']);
const CUSTOM_ROLES = { auditor: ['audit:read', 'models:read'] as Permission[] };
const TABLE = roleTable(CUSTOM_ROLES);

type Requirement = { authenticated: true } | { permission: Permission; model?: string };

interface Caller {
  name: string;
  /** The principal as the role table sees it (undefined: anonymous). */
  principal?: Pick<Principal, 'roles' | 'models'>;
  headers: Record<string, string>;
}

function dummy(type: GraphQLInputType): unknown {
  if (isNonNullType(type)) return dummy(type.ofType);
  if (isListType(type)) return [dummy(type.ofType)];
  if (isEnumType(type)) return type.getValues()[0]!.value;
  if (isInputObjectType(type)) {
    return Object.fromEntries(
      Object.values(type.getFields())
        .filter((f) => isNonNullType(f.type))
        .map((f) => [f.name, dummy(f.type)]),
    );
  }
  if (isScalarType(type)) {
    switch (type.name) {
      case 'Int':
        return 1;
      case 'Float':
        return 0.5;
      case 'Boolean':
        return false;
      case 'DateTime':
        return new Date(Date.now() + 3_600_000).toISOString();
      case 'JSON':
        return {};
      default:
        return 'matrix-x';
    }
  }
  throw new Error(`no dummy value for ${String(type)}`);
}

interface Operation {
  /** Query.x, Mutation.x, Subscription.x */
  id: string;
  kind: 'query' | 'mutation' | 'subscription';
  field: GraphQLField<unknown, unknown>;
  requirement?: Requirement;
  document: string;
  variables: Record<string, unknown>;
}

function operations(): Operation[] {
  const schema = buildSchema();
  const out: Operation[] = [];
  for (const [kind, type] of [
    ['query', schema.getQueryType()],
    ['mutation', schema.getMutationType()],
    ['subscription', schema.getSubscriptionType()],
  ] as const) {
    for (const field of Object.values(type!.getFields())) {
      const args: GraphQLArgument[] = field.args.filter((a) => isNonNullType(a.type));
      const variables = Object.fromEntries(args.map((a) => [a.name, dummy(a.type)]));
      const decl = args.length ? `(${args.map((a) => `$${a.name}: ${String(a.type)}`).join(', ')})` : '';
      const call = args.length ? `(${args.map((a) => `${a.name}: $${a.name}`).join(', ')})` : '';
      const selection = isObjectType(getNamedType(field.type)) ? ' { __typename }' : '';
      const scopes = (field.extensions as { pothosOptions?: { authScopes?: unknown } }).pothosOptions?.authScopes;
      const raw = (typeof scopes === 'function' ? scopes(undefined, variables, {}, undefined) : scopes) as
        { authenticated?: true; permission?: Permission; model?: { permission: Permission; id: string } } | undefined;
      out.push({
        id: `${type!.name}.${field.name}`,
        kind,
        field,
        requirement: raw?.model
          ? { permission: raw.model.permission, model: raw.model.id }
          : raw?.permission
            ? { permission: raw.permission }
            : raw?.authenticated
              ? { authenticated: true }
              : undefined,
        document: `${kind}${decl} { ${field.name}${call}${selection} }`,
        variables,
      });
    }
  }
  return out;
}

/** 401, 403, or 'allowed', as the role table says. */
function expected(caller: Caller, req: Requirement | undefined): 401 | 403 | 'allowed' {
  if (!req) return 'allowed';
  if (!caller.principal) return 401;
  if ('authenticated' in req) return 'allowed';
  return can(caller.principal as Principal, req.permission, req.model, TABLE) ? 'allowed' : 403;
}

describe('role × operation matrix', () => {
  let s: Stack;
  const callers: Caller[] = [{ name: 'anonymous', headers: {} }];
  const OPS = operations();

  beforeAll(async () => {
    s = await startStack({ auth: { roles: CUSTOM_ROLES } });
    const admin = await s.gw.login();
    callers.push({ name: 'admin (password login)', principal: { roles: ['admin'] }, headers: admin });
    // The worker key is bound to the worker the operations name (matrix-x): an unbound worker credential may act as no worker.
    const keys: Array<[string, string[], string[] | undefined, string?]> = [
      ['operator', ['operator'], undefined],
      ['developer', ['developer'], undefined],
      ['viewer', ['viewer'], undefined],
      ['worker', ['worker'], undefined, 'matrix-x'],
      ['auditor (custom role)', ['auditor'], undefined],
      ['developer limited to chat-model', ['developer'], ['chat-model']],
    ];
    for (const [name, roles, models, worker] of keys) {
      const r = await s.gw.gql<{ createApiKey: { key: string } }>(
        'mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key } }',
        { input: { name, roles, ...(models ? { models } : {}), ...(worker ? { worker } : {}) } },
        admin,
      );
      expect(r.errors, name).toBeUndefined();
      callers.push({ name, principal: { roles, ...(models ? { models } : {}) }, headers: { authorization: `Bearer ${r.data!.createApiKey.key}` } });
    }
  });
  afterAll(async () => s?.close());

  it('every root field declares its permission (or is one of the public ones)', () => {
    const undeclared = OPS.filter((o) => !o.requirement && !PUBLIC.has(o.id));
    expect(undeclared.map((o) => o.field.name)).toEqual([]);
    expect(OPS.length).toBeGreaterThan(40);
  });

  it('the public fields answer anonymous callers', async () => {
    const r = await s.gw.gql<{ health: { live: boolean } }>('{ health { live } }');
    expect(r.data?.health.live).toBe(true);
    expect((await s.gw.gql('mutation { logout(refreshToken: "mcp_rt_x") }')).data).toEqual({ logout: true });
  });

  it('GraphQL queries and mutations: every caller × every field', async () => {
    const mismatches: string[] = [];
    // The public fields answer 401 only for a wrong credential in their arguments (login, refresh): checked in password.test.ts.
    for (const op of OPS.filter((o) => o.kind !== 'subscription' && !PUBLIC.has(o.id))) {
      for (const caller of callers) {
        const r = await s.gw.gql(op.document, op.variables, caller.headers);
        const codes = (r.errors ?? []).filter((e) => (e as { path?: string[] }).path?.[0] === op.field.name || !('path' in e)).map((e) => e.extensions?.code);
        const want = expected(caller, op.requirement);
        const got = codes.includes('MCP_UNAUTHENTICATED') ? 401 : codes.includes('MCP_FORBIDDEN') ? 403 : 'allowed';
        if (got !== want)
          mismatches.push(`${caller.name} ${op.kind} ${op.field.name}: expected ${want}, got ${got} ${JSON.stringify(r.errors?.[0]?.message ?? '')}`);
      }
    }
    expect(mismatches).toEqual([]);
  }, 240_000);

  it('GraphQL subscriptions: checked before they are set up', async () => {
    const mismatches: string[] = [];
    for (const op of OPS.filter((o) => o.kind === 'subscription')) {
      for (const caller of callers) {
        const ctl = new AbortController();
        const r = await fetch(`${s.gw.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...caller.headers },
          body: JSON.stringify({ query: op.document, variables: op.variables }),
          signal: ctl.signal,
        });
        const reader = r.body!.getReader();
        let text = '';
        const deadline = setTimeout(() => ctl.abort(), 800);
        try {
          while (!/MCP_|"data"/.test(text)) {
            const { value, done } = await reader.read();
            if (done) break;
            text += new TextDecoder().decode(value);
          }
        } catch {
          /* aborted: the subscription stayed open without an error */
        } finally {
          clearTimeout(deadline);
          ctl.abort();
        }
        const want = expected(caller, op.requirement);
        const got = text.includes('MCP_UNAUTHENTICATED') ? 401 : text.includes('MCP_FORBIDDEN') ? 403 : 'allowed';
        if (got !== want) mismatches.push(`${caller.name} subscription ${op.field.name}: expected ${want}, got ${got}`);
      }
    }
    expect(mismatches).toEqual([]);
  }, 240_000);

  const chat = { messages: [{ role: 'user', content: 'hi' }] };
  const ROUTES: Array<{ method: string; path: string; body?: unknown; req: Requirement }> = [
    { method: 'GET', path: '/api/v1/models', req: { permission: 'models:read' } },
    { method: 'GET', path: '/api/v1/models/chat-model', req: { permission: 'models:read', model: 'chat-model' } },
    { method: 'POST', path: '/api/v1/models/gen-model/inference', body: { prompt: 'hi' }, req: { permission: 'inference:invoke', model: 'gen-model' } },
    { method: 'POST', path: '/api/v1/models/chat-model/inference', body: chat, req: { permission: 'inference:invoke', model: 'chat-model' } },
    { method: 'GET', path: '/api/v1/metrics', req: { permission: 'metrics:read' } },
    { method: 'GET', path: '/metrics', req: { permission: 'metrics:read' } },
    { method: 'GET', path: '/v1/models', req: { permission: 'models:read' } },
    { method: 'GET', path: '/v1/models/gen-model', req: { permission: 'models:read', model: 'gen-model' } },
    { method: 'POST', path: '/v1/chat/completions', body: { model: 'chat-model', ...chat }, req: { permission: 'inference:invoke', model: 'chat-model' } },
    { method: 'POST', path: '/v1/completions', body: { model: 'gen-model', prompt: 'hi' }, req: { permission: 'inference:invoke', model: 'gen-model' } },
    { method: 'POST', path: '/v1/embeddings', body: { model: 'embed-model', input: 'hi' }, req: { permission: 'inference:invoke', model: 'embed-model' } },
    { method: 'GET', path: '/v2', req: { authenticated: true } },
    { method: 'GET', path: '/v2/models/doubler', req: { permission: 'models:read', model: 'doubler' } },
    { method: 'GET', path: '/v2/models/doubler/ready', req: { permission: 'models:read', model: 'doubler' } },
    {
      method: 'POST',
      path: '/v2/models/doubler/infer',
      body: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] },
      req: { permission: 'inference:invoke', model: 'doubler' },
    },
    { method: 'POST', path: '/v2/repository/index', req: { permission: 'models:read' } },
    // unload, then load again: the model ends loaded whoever was allowed to
    { method: 'POST', path: '/v2/repository/models/doubler/unload', req: { permission: 'models:write', model: 'doubler' } },
    { method: 'POST', path: '/v2/repository/models/doubler/load', req: { permission: 'models:write', model: 'doubler' } },
  ];

  it('REST, OpenAI, KServe and /metrics routes: every caller × every route', async () => {
    const mismatches: string[] = [];
    for (const route of ROUTES) {
      for (const caller of callers) {
        const r = await fetch(`${s.gw.url}${route.path}`, {
          method: route.method,
          headers: { ...(route.body ? { 'content-type': 'application/json' } : {}), ...caller.headers },
          body: route.body ? JSON.stringify(route.body) : undefined,
        });
        await r.arrayBuffer();
        const want = expected(caller, route.req);
        const got = r.status === 401 || r.status === 403 ? r.status : 'allowed';
        if (got !== want) mismatches.push(`${caller.name} ${route.method} ${route.path}: expected ${want}, got ${r.status}`);
      }
    }
    expect(mismatches).toEqual([]);
  }, 120_000);
});
