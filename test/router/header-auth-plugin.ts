/**
 * Test-only auth plugin (loaded by path, like a third-party plugin): the principal is the
 * `x-test-user` header (default `tester`), with the admin role. Lets scenario tests act as many principals.
 */
import { z } from 'zod';
import { definePlugin } from '../../src/plugin/contract.ts';

export default definePlugin({
  name: 'test-header-auth',
  kind: 'auth',
  apiVersion: '^1.0.0',
  options: z.strictObject({}),
  setup: () => ({
    authenticate: (req) => ({ id: req.headers['x-test-user'] ?? 'tester', via: 'test-header-auth', roles: ['admin'] }),
  }),
});
