/**
 * Test-only auth plugin (loaded by path, like a third-party plugin): the principal is the `x-test-user`
 * header (default `tester`; `defaultUser: null` leaves requests without it to the next strategy), with the
 * roles listed in `x-test-roles` (comma-separated, default admin) and, when `x-test-expires-at` gives epoch
 * milliseconds, that expiry. Lets scenario tests act as many principals, roles and expiring credentials.
 */
import { z } from 'zod';
import { McpError } from '../../src/errors.ts';
import { definePlugin } from '../../src/plugin/contract.ts';

const USER = /^[A-Za-z0-9._@-]{1,128}$/;

export default definePlugin({
  name: 'test-header-auth',
  kind: 'auth',
  apiVersion: '^1.0.0',
  options: z.strictObject({
    /** Principal of requests without `x-test-user`; null leaves them to the next strategy. */
    defaultUser: z.string().regex(USER).nullable().default('tester'),
  }),
  setup: (ctx, options) => ({
    authenticate: (req) => {
      const user = req.headers['x-test-user'] ?? options.defaultUser;
      if (user === null) return null;
      if (!USER.test(user)) throw new McpError('MCP_UNAUTHENTICATED', 'x-test-user must be 1 to 128 letters, digits, ".", "_", "@" or "-"');
      const roles = (req.headers['x-test-roles'] ?? 'admin').split(',').filter(Boolean);
      const expiresAt = Number(req.headers['x-test-expires-at']);
      return { id: user, via: ctx.name, roles, ...(Number.isFinite(expiresAt) && expiresAt > 0 ? { expiresAt } : {}) };
    },
  }),
});
