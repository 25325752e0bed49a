/**
 * Test-only auth plugin (loaded by path): `Authorization: Bearer <token>` → the principal configured
 * for that token (id, roles, and the worker a worker credential is bound to). Stands in for the
 * api-key plugin's worker keys in the worker identity tests. An unknown bearer token is refused.
 */
import { z } from 'zod';
import { McpError } from '../../src/errors.ts';
import { definePlugin } from '../../src/plugin/contract.ts';

export default definePlugin({
  name: 'test-token-auth',
  kind: 'auth',
  apiVersion: '^1.0.0',
  options: z.strictObject({
    principals: z.record(z.string().min(8), z.strictObject({ id: z.string().min(1), roles: z.array(z.string()).default([]), worker: z.string().optional() })),
  }),
  setup: (ctx, options) => ({
    authenticate: (req) => {
      const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
      if (!m) return null;
      const p = options.principals[m[1]!];
      if (!p) throw new McpError('MCP_UNAUTHENTICATED', 'unknown token');
      return { id: p.id, via: ctx.name, roles: p.roles, ...(p.worker ? { worker: p.worker } : {}) };
    },
  }),
});
