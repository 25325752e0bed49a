import { randomUUID } from 'node:crypto';
import { and, asc, eq, isNull, ne, sql } from 'drizzle-orm';
import type { AuditEntry, AuditRecorder } from '../audit/types.ts';
import type { Db } from '../db/client.ts';
import { apiKeys, refreshTokens, users } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import type { Principal } from '../inference/types.ts';
import { generateApiKey } from '../sdk/api-key.ts';
import { hashPassword } from '../sdk/password.ts';
import type { AuthService } from './auth-service.ts';
import type { GatewayCredentialStore } from './credential-store.ts';
import { checkPassword } from './password-policy.ts';

export interface UserView {
  id: string;
  username: string;
  roles: string[];
  models: string[] | null;
  disabled: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export interface ApiKeyView {
  id: string;
  name: string;
  prefix: string;
  roles: string[];
  models: string[] | null;
  worker: string | null;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  createdBy: string | null;
  createdAt: Date;
}

export interface CreateUserInput {
  username: string;
  password: string;
  roles: string[];
  models?: string[] | null;
}

export interface UpdateUserInput {
  roles?: string[];
  models?: string[] | null;
  disabled?: boolean;
  password?: string;
}

export interface CreateApiKeyInput {
  name: string;
  roles: string[];
  models?: string[] | null;
  expiresAt?: Date | null;
  worker?: string | null;
}

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const WORKER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const invalid = (path: string, message: string) => new McpError('MCP_VALIDATION_FAILED', `${path}: ${message}`, { details: { path } });

const userView = (u: typeof users.$inferSelect): UserView => ({
  id: u.id,
  username: u.username,
  roles: u.roles,
  models: u.models ?? null,
  disabled: u.disabled,
  createdAt: u.createdAt,
  updatedAt: u.updatedAt,
});

const keyView = (k: typeof apiKeys.$inferSelect): ApiKeyView => ({
  id: k.id,
  name: k.name,
  prefix: k.prefix,
  roles: k.roles,
  models: k.models ?? null,
  worker: k.worker,
  expiresAt: k.expiresAt,
  lastUsedAt: k.lastUsedAt,
  revokedAt: k.revokedAt,
  createdBy: k.createdBy,
  createdAt: k.createdAt,
});

/**
 * Users (strategy `password`) and API keys created at run time: the operations behind the `users`, `createUser`,
 * `apiKeys`, `createApiKey`, … GraphQL fields. A caller may grant only what it holds itself (permissions and models);
 * every change is audited, and a change that takes rights away is announced to every replica.
 */
export class Accounts {
  constructor(
    private readonly db: Db,
    private readonly auth: AuthService,
    private readonly credentials: GatewayCredentialStore,
    private readonly audit: AuditRecorder,
  ) {}

  async listUsers(): Promise<UserView[]> {
    return (await this.db.select().from(users).orderBy(asc(users.createdAt), asc(users.id))).map(userView);
  }

  async createUser(actor: Principal, input: CreateUserInput, requestId?: string): Promise<UserView> {
    if (!USERNAME.test(input.username)) invalidThrow('username', '1 to 64 letters, digits, ".", "_", "@", "-", starting with a letter or digit');
    checkPassword(input.password);
    this.checkGrant(actor, input.roles, input.models ?? null);
    const [row] = await this.db
      .insert(users)
      .values({
        id: randomUUID(),
        username: input.username,
        passwordHash: await hashPassword(input.password),
        roles: input.roles,
        models: input.models ?? null,
      })
      .onConflictDoNothing()
      .returning();
    if (!row) throw new McpError('MCP_DUPLICATE_ID', `a user named "${input.username}" exists`, { details: { path: 'username' } });
    await this.record(actor, 'user.create', row.id, requestId, { username: row.username, roles: row.roles, models: row.models });
    return userView(row);
  }

  async updateUser(actor: Principal, id: string, input: UpdateUserInput, requestId?: string): Promise<UserView> {
    const current = await this.requireUser(id);
    if (input.password !== undefined) checkPassword(input.password);
    const roles = input.roles ?? current.roles;
    const models = input.models === undefined ? (current.models ?? null) : input.models;
    if (input.roles !== undefined || input.models !== undefined) this.checkGrant(actor, roles, models);
    const disabled = input.disabled ?? current.disabled;
    if (current.roles.includes('admin') && !current.disabled && (disabled || !roles.includes('admin'))) await this.keepOneAdmin(id);
    const [row] = await this.db
      .update(users)
      .set({
        roles,
        models,
        disabled,
        updatedAt: new Date(),
        ...(input.password !== undefined ? { passwordHash: await hashPassword(input.password) } : {}),
      })
      .where(eq(users.id, id))
      .returning();
    if (!row) throw notFound(id);
    if (disabled || input.password !== undefined) {
      await this.db
        .update(refreshTokens)
        .set({ revokedAt: sql`now()` })
        .where(and(eq(refreshTokens.userId, id), isNull(refreshTokens.revokedAt)));
    }
    this.credentials.publish({ kind: 'user', id, at: Date.now() });
    await this.record(actor, 'user.update', id, requestId, {
      changed: Object.keys(input).filter((k) => k !== 'password'),
      passwordChanged: input.password !== undefined,
      roles: row.roles,
      models: row.models,
      disabled: row.disabled,
    });
    return userView(row);
  }

  async deleteUser(actor: Principal, id: string, requestId?: string): Promise<UserView> {
    const current = await this.requireUser(id);
    if (current.roles.includes('admin') && !current.disabled) await this.keepOneAdmin(id);
    const [row] = await this.db.delete(users).where(eq(users.id, id)).returning();
    if (!row) throw notFound(id);
    this.credentials.publish({ kind: 'user', id, at: Date.now() });
    await this.record(actor, 'user.delete', id, requestId, { username: row.username });
    return userView(row);
  }

  async listApiKeys(): Promise<ApiKeyView[]> {
    return (await this.db.select().from(apiKeys).orderBy(asc(apiKeys.createdAt), asc(apiKeys.id))).map(keyView);
  }

  async createApiKey(actor: Principal, input: CreateApiKeyInput, requestId?: string): Promise<{ key: string; apiKey: ApiKeyView }> {
    const name = input.name.trim();
    if (!name || name.length > 200) invalidThrow('name', '1 to 200 characters');
    if (input.worker != null) {
      if (!actor.roles.includes('admin')) throw new McpError('MCP_FORBIDDEN', 'only an admin creates worker credentials', { details: { path: 'worker' } });
      if (!WORKER_NAME.test(input.worker)) invalidThrow('worker', '1 to 63 letters, digits, ".", "_", "-"');
    }
    const roles = input.roles.length === 0 && input.worker != null ? ['worker'] : input.roles;
    if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) invalidThrow('expiresAt', 'must be in the future');
    this.checkGrant(actor, roles, input.models ?? null);
    const { key, sha256 } = generateApiKey();
    const [row] = await this.db
      .insert(apiKeys)
      .values({
        id: randomUUID(),
        name,
        prefix: key.slice(0, 12),
        keyHash: sha256,
        roles,
        models: input.models ?? null,
        worker: input.worker ?? null,
        expiresAt: input.expiresAt ?? null,
        createdBy: actor.id,
      })
      .returning();
    await this.record(actor, 'apikey.create', row!.id, requestId, { name, roles, models: row!.models, worker: row!.worker, expiresAt: row!.expiresAt });
    return { key, apiKey: keyView(row!) };
  }

  async revokeApiKey(actor: Principal, id: string, requestId?: string): Promise<ApiKeyView> {
    const [row] = await this.db
      .update(apiKeys)
      .set({ revokedAt: sql`coalesce(${apiKeys.revokedAt}, now())` })
      .where(eq(apiKeys.id, id))
      .returning();
    if (!row) throw new McpError('MCP_NOT_FOUND', `no API key "${id}"`, { details: { id } });
    this.credentials.publish({ kind: 'apiKey', id });
    await this.record(actor, 'apikey.revoke', id, requestId, { name: row.name });
    return keyView(row);
  }

  /** Roles must exist; the caller must hold every permission they grant, and reach every model they name. */
  private checkGrant(actor: Principal, roles: string[], models: string[] | null): void {
    if (roles.length > 16) invalidThrow('roles', 'at most 16');
    for (const r of roles) if (!this.auth.roles.has(r)) invalidThrow('roles', `unknown role "${String(r).slice(0, 64)}"`);
    if (models !== null) {
      if (models.length > 1000) invalidThrow('models', 'at most 1000');
      for (const m of models) if (typeof m !== 'string' || m.length === 0 || m.length > 128) invalidThrow('models', '1 to 128 characters each');
    }
    const held = this.auth.permissionsOf(actor);
    for (const r of roles) {
      for (const p of this.auth.roles.get(r) ?? []) {
        if (!held.has(p)) throw new McpError('MCP_FORBIDDEN', `role "${r}" grants ${p}, which the caller does not hold`, { details: { path: 'roles' } });
      }
    }
    if (actor.models !== undefined) {
      if (models === null) throw new McpError('MCP_FORBIDDEN', 'a caller limited to some models may grant only those models', { details: { path: 'models' } });
      const outside = models.filter((m) => !actor.models!.includes(m));
      if (outside.length) throw new McpError('MCP_FORBIDDEN', `the caller may not use model "${outside[0]}"`, { details: { path: 'models' } });
    }
  }

  private async requireUser(id: string): Promise<typeof users.$inferSelect> {
    const [u] = await this.db.select().from(users).where(eq(users.id, id));
    if (!u) throw notFound(id);
    return u;
  }

  /** Refuses to disable, demote or delete the last enabled admin. */
  private async keepOneAdmin(id: string): Promise<void> {
    const others = await this.db
      .select({ id: users.id })
      .from(users)
      .where(and(ne(users.id, id), eq(users.disabled, false), sql`${users.roles} @> '["admin"]'::jsonb`))
      .limit(1);
    if (!others.length) throw new McpError('MCP_CONFLICT', 'this is the last enabled admin; create another admin first');
  }

  private async record(actor: Principal, action: string, target: string, requestId: string | undefined, details: AuditEntry['details']): Promise<void> {
    await this.audit.record({ actor: actor.id, actorVia: actor.via, action, target, outcome: 'ok', requestId, details });
  }
}

function invalidThrow(path: string, message: string): never {
  throw invalid(path, message);
}

const notFound = (id: string) => new McpError('MCP_NOT_FOUND', `no user "${id}"`, { details: { id } });
