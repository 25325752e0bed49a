import { McpError } from '../errors.ts';
import type { Principal } from '../inference/types.ts';
import type { AuthRequest, AuthStrategy } from '../plugin/contract.ts';
import type { PluginHost } from '../plugin/host.ts';

/** The principal of requests when no auth plugin is configured (local development). */
export const ANONYMOUS_ADMIN: Principal = Object.freeze({ id: 'anonymous', via: 'none', roles: ['admin'] }) as Principal;

/**
 * Runs the configured auth strategies in config order. With none configured, every request is
 * the anonymous admin (the embedded default); with some, a request no strategy accepts has no principal.
 */
export class AuthService {
  private readonly strategies: Array<{ name: string; strategy: AuthStrategy }>;

  constructor(plugins: PluginHost) {
    this.strategies = plugins.names('auth').map((name) => ({ name, strategy: plugins.get('auth', name) }));
  }

  get enabled(): boolean {
    return this.strategies.length > 0;
  }

  async authenticate(request: AuthRequest): Promise<Principal | undefined> {
    if (!this.strategies.length) return ANONYMOUS_ADMIN;
    for (const { strategy } of this.strategies) {
      const p = await strategy.authenticate(request);
      if (p) return p;
    }
    return undefined;
  }

  /** Like authenticate, but a request without a principal is MCP_UNAUTHENTICATED. */
  async require(request: AuthRequest): Promise<Principal> {
    const p = await this.authenticate(request);
    if (!p) throw new McpError('MCP_UNAUTHENTICATED', 'send an API key or token: Authorization: Bearer …');
    return p;
  }
}
