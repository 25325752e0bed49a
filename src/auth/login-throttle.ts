import type { AuthConfig } from './config.ts';

interface Record_ {
  failures: number;
  lockedUntil: number;
  lastFailure: number;
}

/** Most user names and addresses tracked at once; the oldest are forgotten first. */
const MAX_TRACKED = 100_000;

/**
 * Brute-force protection of `login`, per user name and per client address (this replica's memory):
 * after `maxFailures` failed attempts the name (or address) is locked for `baseMs`, doubling with each
 * further failure up to `maxMs`. A success clears the user name's record, not the address's.
 */
export class LoginThrottle {
  private readonly users = new Map<string, Record_>();
  private readonly ips = new Map<string, Record_>();

  constructor(private readonly cfg: AuthConfig['lockout']) {}

  /** Ms until the next attempt is allowed for this name and address (0: now). */
  waitMs(username: string, ip: string | undefined, now = Date.now()): number {
    const u = this.live(this.users, username, now);
    const i = ip ? this.live(this.ips, ip, now) : undefined;
    return Math.max(0, (u?.lockedUntil ?? 0) - now, (i?.lockedUntil ?? 0) - now);
  }

  failed(username: string, ip: string | undefined, now = Date.now()): void {
    this.bump(this.users, username, this.cfg.maxFailuresPerUser, now);
    if (ip) this.bump(this.ips, ip, this.cfg.maxFailuresPerIp, now);
  }

  succeeded(username: string): void {
    this.users.delete(username);
  }

  private live(map: Map<string, Record_>, key: string, now: number): Record_ | undefined {
    const r = map.get(key);
    if (r && now - r.lastFailure > this.cfg.forgetAfterMs) {
      map.delete(key);
      return undefined;
    }
    return r;
  }

  private bump(map: Map<string, Record_>, key: string, max: number, now: number): void {
    const r = this.live(map, key, now) ?? { failures: 0, lockedUntil: 0, lastFailure: now };
    r.failures++;
    r.lastFailure = now;
    if (r.failures >= max) r.lockedUntil = now + Math.min(this.cfg.maxMs, this.cfg.baseMs * 2 ** Math.min(r.failures - max, 30));
    map.delete(key);
    map.set(key, r);
    if (map.size > MAX_TRACKED) map.delete(map.keys().next().value!);
  }
}
