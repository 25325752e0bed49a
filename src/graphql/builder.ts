import SchemaBuilder from '@pothos/core';
import DataloaderPlugin from '@pothos/plugin-dataloader';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import type { Permission } from '../auth/permissions.ts';
import type { GraphQLContext } from './context.ts';

/** The one Pothos builder; every domain file under src/graphql adds its types to it. */
export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  AuthScopes: {
    authenticated: boolean;
    /** The principal's roles grant this permission (built-in and `auth.roles`). */
    permission: Permission;
    /** The permission, on this model: a principal limited to other models is refused. */
    model: { permission: Permission; id: string };
  };
  DefaultFieldNullability: false;
  Scalars: {
    JSON: { Input: unknown; Output: unknown };
    DateTime: { Input: Date; Output: Date };
  };
}>({
  plugins: [ScopeAuthPlugin, DataloaderPlugin],
  defaultFieldNullability: false,
  scopeAuth: {
    authScopes: (ctx) => ({
      authenticated: ctx.principal !== undefined,
      permission: (permission: Permission) => ctx.services.auth.can(ctx.principal, permission),
      model: ({ permission, id }: { permission: Permission; id: string }) => ctx.services.auth.can(ctx.principal, permission, id),
    }),
    treatErrorsAsUnauthorized: true,
    // Subscriptions are checked before they are set up (not per event).
    authorizeOnSubscribe: true,
    unauthorizedError: (_parent, ctx) => ctx.unauthorized(),
  },
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});

builder.scalarType('JSON', {
  description: 'Any JSON value.',
  serialize: (v) => v,
  parseValue: (v) => v,
});

builder.scalarType('DateTime', {
  description: 'An ISO-8601 timestamp.',
  serialize: (v) => (v instanceof Date ? v.toISOString() : String(v)),
  parseValue: (v) => {
    const d = new Date(String(v));
    if (Number.isNaN(d.getTime())) throw new TypeError('not an ISO-8601 timestamp');
    return d;
  },
});
