/**
 * Test-only auth plugin (loaded by path): the principal is `x-test-user` with the roles listed in
 * `x-test-roles` (comma-separated, default admin). Lets the audit tests act as admins and viewers.
 */
import { z } from 'zod';
import { definePlugin } from '../../src/plugin/contract.ts';

const USER = /^[A-Za-z0-9._@-]{1,128}$/;

export default definePlugin({
  name: 'test-role-header-auth',
  kind: 'auth',
  apiVersion: '^1.0.0',
  options: z.strictObject({}),
  setup: (ctx) => ({
    authenticate: (req) => {
      const user = req.headers['x-test-user'];
      if (user === undefined || !USER.test(user)) return null;
      const roles = (req.headers['x-test-roles'] ?? 'admin').split(',').filter(Boolean);
      return { id: user, via: ctx.name, roles };
    },
  }),
});
