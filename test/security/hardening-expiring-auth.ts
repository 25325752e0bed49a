/**
 * Test-only auth plugin (loaded by path) for the WebSocket expiry test: the principal is the
 * `x-test-user` header with the admin role, expiring at the epoch milliseconds in `x-test-expires-at`.
 * Requests without `x-test-user` carry no credentials of this kind.
 */
import { z } from 'zod';
import { McpError } from '../../src/errors.ts';
import { definePlugin } from '../../src/plugin/contract.ts';

export default definePlugin({
  name: 'test-expiring-auth',
  kind: 'auth',
  apiVersion: '^1.0.0',
  options: z.strictObject({}),
  setup: (ctx) => ({
    authenticate: (req) => {
      const user = req.headers['x-test-user'];
      if (user === undefined) return null;
      if (!/^[a-z0-9-]{1,64}$/.test(user)) throw new McpError('MCP_UNAUTHENTICATED', 'x-test-user: 1 to 64 lower-case letters, digits or "-"');
      const expiresAt = Number(req.headers['x-test-expires-at']);
      return { id: user, via: ctx.name, roles: ['admin'], ...(Number.isFinite(expiresAt) && expiresAt > 0 ? { expiresAt } : {}) };
    },
  }),
});
