import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import { McpError } from '../errors.ts';

/** True for `localhost` and loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (!ipaddr.isValid(h)) return false;
  const a = ipaddr.process(h);
  return a.range() === 'loopback';
}

/**
 * `auth.enabled: false` is for local experiments: refused (MCP_CONFIG_INVALID) unless the server binds a loopback
 * address, and a warning at every start.
 */
export function guardAuthDisabled(enabled: boolean, host: string, logger: Logger): void {
  if (enabled) return;
  if (!isLoopbackHost(host)) {
    throw new McpError(
      'MCP_CONFIG_INVALID',
      `auth.enabled: false makes every caller an admin; it is allowed only on a loopback address, not server.host "${host}"`,
      { details: { paths: ['auth.enabled', 'server.host'] } },
    );
  }
  logger.warn({ host }, 'auth is DISABLED (auth.enabled: false): every request is an anonymous admin; for local experiments only');
}
