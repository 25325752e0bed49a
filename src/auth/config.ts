import { z } from 'zod';
import { BUILT_IN_ROLES, PERMISSIONS } from './permissions.ts';

/** `auth`: who may call the gateway. On by default; see docs/security/auth.md. */
export const authConfigSchema = z
  .strictObject({
    /** false: every request is an anonymous admin. Local experiments only: refused on a non-loopback bind, warned at every start. */
    enabled: z.boolean().default(true),
    /**
     * Auth strategy plugins (configured names), tried in this order: each returns a principal, "not mine" or refuses its own
     * invalid credential. First-party strategies named here are set up with default options unless `plugins:` lists them;
     * auth plugins listed in `plugins:` but not here are tried after these.
     */
    strategies: z
      .array(z.string().min(1).max(64))
      .max(16)
      .default(['password', 'api-key'])
      .refine((s) => new Set(s).size === s.length, 'a strategy is named twice'),
    /** Custom roles: name → permissions (the built-in roles admin, operator, developer, viewer, worker are always there). */
    roles: z
      .record(z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/), z.array(z.enum(PERMISSIONS)))
      .superRefine((roles, ctx) => {
        for (const r of Object.keys(roles)) {
          if ((BUILT_IN_ROLES as readonly string[]).includes(r)) {
            ctx.addIssue({ code: 'custom', path: [r], message: 'a built-in role cannot be redefined; give the custom role another name' });
          }
        }
      })
      .default({}),
    /** Serve /metrics without credentials (for a Prometheus that cannot send a token). */
    publicMetrics: z.boolean().default(false),
    /**
     * Brute-force protection of `login` per user name, shared by every replica (the database): after `maxFailuresPerUser`
     * failed attempts the name is locked out, twice as long each time. Per client address: `limits.failedAuth`.
     */
    lockout: z
      .strictObject({
        /** Failures of one user name allowed before it is locked. */
        maxFailuresPerUser: z.number().int().min(1).max(1000).default(5),
        /** Replaced by `limits.failedAuth` (one failed-authentication count per address, shared through the limit store). */
        maxFailuresPerIp: z.never({ error: 'replaced by limits.failedAuth (failed sign-ins per client address, shared by replicas)' }).optional(),
        /** The first lockout, ms; it doubles with every further failure, up to maxMs. */
        baseMs: z.number().int().min(1).max(3_600_000).default(1000),
        maxMs: z
          .number()
          .int()
          .min(1)
          .max(86_400_000)
          .default(15 * 60_000),
        /** A user name without failure for this long starts afresh, ms. */
        forgetAfterMs: z
          .number()
          .int()
          .min(1000)
          .default(60 * 60_000),
      })
      .prefault({}),
  })
  .prefault({});
export type AuthConfig = z.output<typeof authConfigSchema>;
