import { z } from 'zod';
import { PERMISSIONS } from './permissions.ts';

/** `auth`: who may call the gateway. On by default; see README "Security". */
export const authConfigSchema = z
  .strictObject({
    /** false: every request is an anonymous admin. Local experiments only: refused on a non-loopback bind, warned at every start. */
    enabled: z.boolean().default(true),
    /** Custom roles: name → permissions (the built-in roles admin, operator, developer, viewer, worker are always there). */
    roles: z.record(z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/), z.array(z.enum(PERMISSIONS))).default({}),
    /** Serve /metrics without credentials (for a Prometheus that cannot send a token). */
    publicMetrics: z.boolean().default(false),
  })
  .prefault({});
export type AuthConfig = z.output<typeof authConfigSchema>;
