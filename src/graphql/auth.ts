import { PERMISSIONS } from '../auth/permissions.ts';
import type { ApiKeyView, UserView } from '../auth/accounts.ts';
import type { Principal } from '../inference/types.ts';
import type { TokenSet } from '../plugin/contract.ts';
import { builder } from './builder.ts';
import type { GraphQLContext } from './context.ts';

const caller = (ctx: GraphQLContext) => ({ ip: ctx.ip, requestId: ctx.requestId });
/** The principal of a field whose scope already required one. */
const actor = (ctx: GraphQLContext) => ctx.principal as Principal;

const PermissionEnum = builder.enumType('Permission', {
  values: Object.fromEntries(PERMISSIONS.map((p) => [p.replace(':', '_').toUpperCase(), { value: p }])) as Record<string, { value: string }>,
});

const TokensRef = builder.objectRef<TokenSet>('AuthTokens').implement({
  description: 'A short-lived access token (send it as Authorization: Bearer …) and a refresh token (spent by refresh, which returns a new pair).',
  fields: (t) => ({
    accessToken: t.exposeString('accessToken'),
    refreshToken: t.exposeString('refreshToken'),
    tokenType: t.string({ resolve: () => 'Bearer' }),
    expiresIn: t.exposeInt('expiresIn', { description: 'Seconds the access token is valid.' }),
  }),
});

const ViewerRef = builder.objectRef<Principal>('Viewer').implement({
  description: 'Who the request authenticated as, and what it may do.',
  fields: (t) => ({
    id: t.exposeID('id'),
    via: t.exposeString('via', { description: 'The auth strategy (plugin name); none when auth is off.' }),
    roles: t.exposeStringList('roles'),
    permissions: t.field({ type: [PermissionEnum], resolve: (p, _a, ctx) => [...ctx.services.auth.permissionsOf(p)] }),
    models: t.stringList({ nullable: true, description: 'Models it may use; null: every model.', resolve: (p) => (p.models ? [...p.models] : null) }),
    worker: t.string({ nullable: true, resolve: (p) => p.worker ?? null }),
    expiresAt: t.field({ type: 'DateTime', nullable: true, resolve: (p) => (p.expiresAt ? new Date(p.expiresAt) : null) }),
  }),
});

const UserRef = builder.objectRef<UserView>('User').implement({
  description: 'A user of the password strategy (the password is stored only as a scrypt hash and never returned).',
  fields: (t) => ({
    id: t.exposeID('id'),
    username: t.exposeString('username'),
    roles: t.exposeStringList('roles'),
    models: t.exposeStringList('models', { nullable: true }),
    disabled: t.exposeBoolean('disabled'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

const ApiKeyRef = builder.objectRef<ApiKeyView>('ApiKey').implement({
  description: 'An API key created at run time (stored only as SHA-256; `prefix` helps recognise it).',
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    prefix: t.exposeString('prefix'),
    roles: t.exposeStringList('roles'),
    models: t.exposeStringList('models', { nullable: true }),
    worker: t.exposeString('worker', { nullable: true, description: 'The worker this credential acts as.' }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true }),
    lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true, description: 'Updated lazily (within about 10 s).' }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
    createdBy: t.exposeString('createdBy', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

const CreatedApiKeyRef = builder.objectRef<{ key: string; apiKey: ApiKeyView }>('CreatedApiKey').implement({
  fields: (t) => ({
    key: t.exposeString('key', { description: 'The key itself: shown this once, never stored.' }),
    apiKey: t.field({ type: ApiKeyRef, resolve: (c) => c.apiKey }),
  }),
});

const CreateUserInput = builder.inputType('CreateUserInput', {
  fields: (t) => ({
    username: t.string({ required: true }),
    password: t.string({ required: true, description: '12 to 1024 characters.' }),
    roles: t.stringList({ required: true }),
    models: t.stringList({ description: 'Models the user may use; omitted or null: every model.' }),
  }),
});

const UpdateUserInput = builder.inputType('UpdateUserInput', {
  fields: (t) => ({
    roles: t.stringList(),
    models: t.stringList({ description: 'null: every model.' }),
    disabled: t.boolean(),
    password: t.string(),
  }),
});

const CreateApiKeyInput = builder.inputType('CreateApiKeyInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    roles: t.stringList({ required: true, description: 'Roles the caller holds itself (it cannot grant more than it has).' }),
    models: t.stringList({ description: 'Models the key may use; omitted or null: every model the caller may use.' }),
    expiresAt: t.field({ type: 'DateTime' }),
    worker: t.string({ description: 'A worker credential: the one worker it acts as (admins only).' }),
  }),
});

builder.queryFields((t) => ({
  me: t.field({
    type: ViewerRef,
    authScopes: { authenticated: true },
    resolve: (_r, _a, ctx) => actor(ctx),
  }),
  users: t.field({
    type: [UserRef],
    authScopes: { permission: 'users:manage' },
    resolve: (_r, _a, ctx) => ctx.services.accounts.listUsers(),
  }),
  apiKeys: t.field({
    type: [ApiKeyRef],
    authScopes: { permission: 'keys:manage' },
    resolve: (_r, _a, ctx) => ctx.services.accounts.listApiKeys(),
  }),
}));

builder.mutationFields((t) => ({
  login: t.field({
    type: TokensRef,
    description: 'Signs in (strategy password). Wrong name or password: MCP_UNAUTHENTICATED; too many failures: MCP_RATE_LIMITED with retryAfterMs.',
    args: { username: t.arg.string({ required: true }), password: t.arg.string({ required: true }) },
    resolve: (_r, { username, password }, ctx) => ctx.services.auth.login(username, password, caller(ctx)),
  }),
  refresh: t.field({
    type: TokensRef,
    description: 'Spends a refresh token for a new pair. Reusing a spent token ends the whole session.',
    args: { refreshToken: t.arg.string({ required: true }) },
    resolve: (_r, { refreshToken }, ctx) => ctx.services.auth.refresh(refreshToken, caller(ctx)),
  }),
  logout: t.boolean({
    description: 'Ends the session of the refresh token (its access tokens are refused on every replica).',
    args: { refreshToken: t.arg.string({ required: true }) },
    resolve: async (_r, { refreshToken }, ctx) => (await ctx.services.auth.logout(refreshToken, caller(ctx)), true),
  }),
  createUser: t.field({
    type: UserRef,
    authScopes: { permission: 'users:manage' },
    args: { input: t.arg({ type: CreateUserInput, required: true }) },
    resolve: (_r, { input }, ctx) => ctx.services.accounts.createUser(actor(ctx), { ...input, models: input.models ?? null }, ctx.requestId),
  }),
  updateUser: t.field({
    type: UserRef,
    description: 'Changes roles, models, disabled or the password; the user’s access tokens are refused from then on (it signs in again).',
    authScopes: { permission: 'users:manage' },
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateUserInput, required: true }) },
    resolve: (_r, { id, input }, ctx) =>
      ctx.services.accounts.updateUser(
        actor(ctx),
        String(id),
        {
          ...(input.roles != null ? { roles: input.roles } : {}),
          ...('models' in input ? { models: input.models ?? null } : {}),
          ...(input.disabled != null ? { disabled: input.disabled } : {}),
          ...(input.password != null ? { password: input.password } : {}),
        },
        ctx.requestId,
      ),
  }),
  deleteUser: t.field({
    type: UserRef,
    authScopes: { permission: 'users:manage' },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, { id }, ctx) => ctx.services.accounts.deleteUser(actor(ctx), String(id), ctx.requestId),
  }),
  createApiKey: t.field({
    type: CreatedApiKeyRef,
    description: 'Creates an API key; `key` is shown once. Refused on every replica within 5 s of revokeApiKey.',
    authScopes: { permission: 'keys:manage' },
    args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
    resolve: (_r, { input }, ctx) => {
      const p = actor(ctx);
      return ctx.services.accounts.createApiKey(
        p,
        {
          name: input.name,
          roles: input.roles,
          models: input.models ?? (p.models ? [...p.models] : null),
          expiresAt: input.expiresAt ?? null,
          worker: input.worker ?? null,
        },
        ctx.requestId,
      );
    },
  }),
  revokeApiKey: t.field({
    type: ApiKeyRef,
    authScopes: { permission: 'keys:manage' },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_r, { id }, ctx) => ctx.services.accounts.revokeApiKey(actor(ctx), String(id), ctx.requestId),
  }),
}));
