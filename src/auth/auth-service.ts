import type { Logger } from 'pino';
import type { AuditRecorder } from '../audit/types.ts';
import type { Db } from '../db/client.ts';
import { storageFailureReason } from '../db/storage-errors.ts';
import { McpError, isMcpError } from '../errors.ts';
import type { Principal } from '../inference/types.ts';
import type { LimitsService } from '../limits/limits-service.ts';
import type { AuthRequest, AuthStrategy, SessionStrategy, TokenSet } from '../plugin/contract.ts';
import type { PluginHost } from '../plugin/host.ts';
import type { AuthConfig } from './config.ts';
import { LoginLockouts } from './login-lockouts.ts';
import { can, permissionsOf, roleTable, type Permission, type RoleTable } from './permissions.ts';

/** The principal of every request when `auth.enabled` is false (local experiments on a loopback address only). */
export const ANONYMOUS_ADMIN: Principal = Object.freeze({ id: 'anonymous', via: 'none', roles: ['admin'] }) as Principal;

const NO_CREDENTIALS_MESSAGE = 'send an API key or access token: Authorization: Bearer …';

/** Who is asking, for the audit log and the per-address failed-authentication limit. */
export interface CallerInfo {
  ip?: string;
  requestId?: string;
}

/**
 * Authentication and authorization: runs the configured auth strategies in order (`auth.strategies`, then any other
 * auth plugin listed in `plugins:`), checks permissions against the role table (built-in and `auth.roles`), and signs
 * users in through the first strategy that has sessions (password), with brute-force protection and an audit trail.
 */
export class AuthService {
  readonly enabled: boolean;
  readonly roles: RoleTable;
  private readonly strategies: Array<{ name: string; strategy: AuthStrategy }>;
  private readonly sessions?: SessionStrategy;
  private readonly lockouts: LoginLockouts;

  constructor(
    plugins: PluginHost,
    config: AuthConfig,
    private readonly audit: AuditRecorder,
    private readonly logger: Logger,
    /**
     * Limits (src/limits): refused credentials spend the failed-authentication allowance of their IP, never a
     * user's quota; an authenticated request spends the `on: all` rules (every entry point authenticates here).
     */
    private readonly limits?: Pick<LimitsService, 'assertAuthAllowed' | 'failedAuth' | 'checkRequest' | 'checksRequests'>,
    /** The database the per-user sign-in lockouts live in (shared by replicas). */
    db?: () => Promise<Db> | Db,
  ) {
    this.enabled = config.enabled;
    this.roles = roleTable(config.roles);
    this.lockouts = new LoginLockouts(db ?? (() => Promise.reject(new McpError('MCP_NOT_FOUND', 'no storage for sign-in lockouts'))), config.lockout);
    if (!this.enabled) {
      this.strategies = [];
      return;
    }
    // Strategies that name no auth plugin are refused before the start (src/start-check.ts).
    const names = [...config.strategies, ...plugins.names('auth').filter((n) => !config.strategies.includes(n))];
    this.strategies = names.map((name) => ({ name, strategy: plugins.get('auth', name) }));
    this.sessions = this.strategies.find((s) => s.strategy.sessions)?.strategy.sessions;
  }

  /** True when a strategy signs users in (password): then the first start creates the admin user. */
  get hasSessions(): boolean {
    return this.sessions !== undefined;
  }

  /** The request's principal; undefined without credentials; MCP_UNAUTHENTICATED for a credential a strategy refuses. */
  async authenticate(request: AuthRequest): Promise<Principal | undefined> {
    if (!this.enabled) {
      if (this.limits?.checksRequests) await this.limits.checkRequest({ principal: ANONYMOUS_ADMIN, ip: request.ip, entry: request.entry });
      return ANONYMOUS_ADMIN;
    }
    this.limits?.assertAuthAllowed(request.ip);
    let principal: Principal | undefined;
    try {
      for (const { strategy } of this.strategies) {
        principal = (await strategy.authenticate(request)) ?? undefined;
        if (principal) break;
      }
    } catch (err) {
      if (isMcpError(err) && err.code === 'MCP_UNAUTHENTICATED') await this.limits?.failedAuth(request.ip);
      throw err;
    }
    // Only when `on: all` rules exist: no extra await on every request otherwise.
    if (principal && this.limits?.checksRequests) await this.limits.checkRequest({ principal, ip: request.ip, entry: request.entry });
    return principal;
  }

  /** Like authenticate, but a request without a principal is MCP_UNAUTHENTICATED. */
  async require(request: AuthRequest): Promise<Principal> {
    const p = await this.authenticate(request);
    if (!p) throw unauthenticated();
    return p;
  }

  /** Authenticates and checks a permission (and a model, when the operation names one): 401 or 403 otherwise. */
  async requirePermission(request: AuthRequest, permission: Permission, model?: string): Promise<Principal> {
    const p = await this.require(request);
    this.authorize(p, permission, model);
    return p;
  }

  can(principal: Principal | undefined, permission: Permission, model?: string): boolean {
    return can(principal, permission, model, this.roles);
  }

  permissionsOf(principal: Principal): ReadonlySet<Permission> {
    return permissionsOf(principal, this.roles);
  }

  /** Throws MCP_UNAUTHENTICATED without a principal, MCP_FORBIDDEN when it lacks the permission or may not use the model. */
  authorize(principal: Principal | undefined, permission: Permission, model?: string): void {
    if (!principal) throw unauthenticated();
    if (!this.can(principal, permission)) throw new McpError('MCP_FORBIDDEN', `this operation needs the permission ${permission}`, { details: { permission } });
    if (model !== undefined && !this.can(principal, permission, model)) {
      throw new McpError('MCP_FORBIDDEN', `the credential may not use model "${model}"`, { details: { permission, model } });
    }
  }

  private requireSessions(): SessionStrategy {
    if (!this.sessions) throw new McpError('MCP_NOT_FOUND', 'no auth strategy with logins (password) is configured');
    return this.sessions;
  }

  /**
   * Signs a user in: 429 MCP_RATE_LIMITED while the name is locked out (every replica sees the same lockout) or the
   * address has spent its failed-authentication allowance (limits.failedAuth); every attempt is audited.
   */
  async login(username: string, password: string, caller: CallerInfo): Promise<TokenSet> {
    const sessions = this.requireSessions();
    const actor = username.slice(0, 128);
    const base = { actor, action: 'auth.login', ip: caller.ip, requestId: caller.requestId };
    try {
      this.limits?.assertAuthAllowed(caller.ip);
    } catch (err) {
      await this.record({ ...base, outcome: 'denied', details: { reason: 'address limited' } });
      throw err;
    }
    const waitMs = await this.lockouts.waitMs(actor);
    if (waitMs > 0) {
      await this.record({ ...base, outcome: 'denied', details: { reason: 'locked out', retryAfterMs: waitMs } });
      throw new McpError('MCP_RATE_LIMITED', 'too many failed sign-ins; wait before trying again', { details: { retryAfterMs: waitMs } });
    }
    try {
      const tokens = await sessions.login(username, password);
      await this.lockouts.succeeded(actor);
      await this.record({ ...base, actor: tokens.principal.id, actorVia: tokens.principal.via, outcome: 'ok', details: { username: actor } });
      return tokens;
    } catch (err) {
      if (isMcpError(err) && err.code === 'MCP_UNAUTHENTICATED') {
        // The attempt failed either way: a count that cannot be stored is logged, and the answer stays 401.
        const counted = this.lockouts
          .failed(actor)
          .catch((e: unknown) => this.logger.warn({ err: storageFailureReason(e) }, 'could not count a failed sign-in'));
        await Promise.all([counted, this.limits?.failedAuth(caller.ip)]);
        await this.record({ ...base, outcome: 'failed', details: { code: err.code } });
      }
      throw err;
    }
  }

  async refresh(refreshToken: string, caller: CallerInfo): Promise<TokenSet> {
    const base = { action: 'auth.refresh', ip: caller.ip, requestId: caller.requestId };
    try {
      const tokens = await this.requireSessions().refresh(refreshToken);
      await this.record({ ...base, actor: tokens.principal.id, actorVia: tokens.principal.via, outcome: 'ok' });
      return tokens;
    } catch (err) {
      if (isMcpError(err) && err.code === 'MCP_UNAUTHENTICATED') await this.record({ ...base, outcome: 'failed', details: { reason: err.message } });
      throw err;
    }
  }

  async logout(refreshToken: string, caller: CallerInfo): Promise<void> {
    await this.requireSessions().logout(refreshToken);
    await this.record({ action: 'auth.logout', ip: caller.ip, requestId: caller.requestId, outcome: 'ok' });
  }

  private async record(entry: Parameters<AuditRecorder['record']>[0]): Promise<void> {
    try {
      await this.audit.record(entry);
    } catch (err) {
      this.logger.error({ err, action: entry.action }, 'audit record failed');
    }
  }
}

export function unauthenticated(): McpError {
  return new McpError('MCP_UNAUTHENTICATED', NO_CREDENTIALS_MESSAGE);
}
