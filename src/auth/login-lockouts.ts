import { eq, lt, sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { loginLockouts } from '../db/schema.ts';
import type { AuthConfig } from './config.ts';

/** One prune of forgotten rows per this many failures (names nobody has, sprayed by a guesser, do not pile up). */
const PRUNE_EVERY = 200;

/**
 * Brute-force protection of `login` per user name, in the database, so every replica sees the same
 * count: after `maxFailuresPerUser` failed attempts the name is locked for `baseMs`, doubling with each
 * further failure up to `maxMs`; a name without failure for `forgetAfterMs` starts afresh; a success
 * clears it. (Per client address, failed sign-ins spend the failed-authentication limit, `limits.failedAuth`.)
 */
export class LoginLockouts {
  private failures = 0;

  constructor(
    private readonly db: () => Promise<Db> | Db,
    private readonly cfg: AuthConfig['lockout'],
  ) {}

  /** Ms until this name may try again (0: now). */
  async waitMs(username: string, now = Date.now()): Promise<number> {
    const db = await this.db();
    const [row] = await db
      .select({ lockedUntil: loginLockouts.lockedUntil, lastFailureAt: loginLockouts.lastFailureAt })
      .from(loginLockouts)
      .where(eq(loginLockouts.username, username));
    if (!row?.lockedUntil || now - row.lastFailureAt.getTime() > this.cfg.forgetAfterMs) return 0;
    return Math.max(0, row.lockedUntil.getTime() - now);
  }

  /** Counts a failure in one statement (concurrent failures on several replicas all count). */
  async failed(username: string, now = Date.now()): Promise<void> {
    const db = await this.db();
    const at = new Date(now);
    const { maxFailuresPerUser: max, baseMs, maxMs, forgetAfterMs } = this.cfg;
    const failures = sql`(case when ${loginLockouts.lastFailureAt} < ${new Date(now - forgetAfterMs).toISOString()}::timestamptz then 1 else ${loginLockouts.failures} + 1 end)`;
    const lockMs = (f: ReturnType<typeof sql>) => sql`least(${maxMs}::float8, ${baseMs}::float8 * power(2::float8, least(${f} - ${max}, 30)))`;
    const lockedUntil = (f: ReturnType<typeof sql>) =>
      sql`(case when ${f} >= ${max} then ${at.toISOString()}::timestamptz + make_interval(secs => ${lockMs(f)} / 1000.0) else null end)`;
    const first = sql`1`;
    await db
      .insert(loginLockouts)
      .values({ username, failures: 1, lastFailureAt: at, lockedUntil: lockedUntil(first) as never })
      .onConflictDoUpdate({ target: loginLockouts.username, set: { failures, lastFailureAt: at, lockedUntil: lockedUntil(failures) as never } });
    if (++this.failures % PRUNE_EVERY === 0) await db.delete(loginLockouts).where(lt(loginLockouts.lastFailureAt, new Date(now - forgetAfterMs)));
  }

  async succeeded(username: string): Promise<void> {
    const db = await this.db();
    await db.delete(loginLockouts).where(eq(loginLockouts.username, username));
  }
}
