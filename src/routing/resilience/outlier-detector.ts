/**
 * Passive health: Envoy-style outlier detection over the answers real requests get.
 *
 * - consecutive failures: `consecutiveFailures` (Envoy `consecutive_5xx`) failures in a row
 *   eject the host at once;
 * - failure rate: every `intervalMs` (Envoy `interval`) a host with at least `minRequests`
 *   requests in the interval and a failure rate ≥ `failureRateThreshold` is ejected;
 * - ejection time = `baseEjectionMs` × times ejected, capped at `maxEjectionMs` (Envoy
 *   `max_ejection_time`); the count goes down by one for each interval the host spends
 *   un-ejected (Envoy), so a host that recovered for good is back to the base time;
 * - un-ejection happens when the time is up (checked lazily, no timers).
 *
 * **Max ejection percent**: at most ⌊percent × hosts⌋ hosts are ejected at once, but — as
 * Envoy — at least one may always be ejected when there are ≥ 2 hosts. We never eject the
 * last un-ejected host (a pool of one is never emptied by passive health: ejecting it would
 * only turn its errors into MCP_NO_HEALTHY_INSTANCE; the circuit breaker covers
 * single-instance models). So: limit = hosts < 2 ? 0 : min(hosts − 1, max(1, ⌊p × hosts⌋)).
 *
 * The settings' defaults live in the config (`router.outlierDetection`).
 * What counts as a failure is the caller's call (5xx, connection errors, timeouts — not 4xx).
 * The clock is injectable; evaluation is driven by the recordX / isEjected / tick calls.
 */

export interface OutlierEvent {
  id: string;
  ejected: boolean;
  /** 'consecutive-failures' | 'failure-rate' | 'time-elapsed' | 'removed'. */
  reason: string;
  /** Times ejected (multiplier of the base ejection time). */
  ejectionCount: number;
  /** Ejected until (ms on the clock), when ejected. */
  until?: number;
  at: number;
}

/** Resolved settings (config `router.outlierDetection` holds the defaults). */
export interface OutlierDetectorSettings {
  /** Failures in a row that eject (0 disables). */
  consecutiveFailures: number;
  /** Failure rate in an interval that ejects (0 disables). */
  failureRateThreshold: number;
  /** Requests a host needs in the interval for the failure rate to count. */
  minRequests: number;
  /** Evaluation interval, ms. */
  intervalMs: number;
  /** Base ejection time, ms. */
  baseEjectionMs: number;
  /** Cap of the ejection time, ms. */
  maxEjectionMs: number;
  /** Max % of hosts ejected at once (at least one with ≥ 2 hosts, never all). */
  maxEjectionPercent: number;
}

export interface OutlierDetectorOptions extends OutlierDetectorSettings {
  /** Clock, ms (Date.now when absent). */
  now?: () => number;
  onChange?: (event: OutlierEvent) => void;
}

interface Host {
  consecutive: number;
  requests: number;
  failures: number;
  ejectionCount: number;
  /** 0 when not ejected. */
  ejectedUntil: number;
}

export class OutlierDetector {
  private readonly o: OutlierDetectorSettings;
  private readonly now: () => number;
  private readonly onChange: ((e: OutlierEvent) => void) | undefined;
  private readonly hosts = new Map<string, Host>();
  private ejectedCount = 0;
  private lastTick: number;

  constructor(options: OutlierDetectorOptions) {
    this.o = {
      consecutiveFailures: options.consecutiveFailures,
      failureRateThreshold: options.failureRateThreshold,
      minRequests: Math.max(1, options.minRequests),
      intervalMs: options.intervalMs,
      baseEjectionMs: options.baseEjectionMs,
      maxEjectionMs: Math.max(options.baseEjectionMs, options.maxEjectionMs),
      maxEjectionPercent: options.maxEjectionPercent,
    };
    this.now = options.now ?? Date.now;
    this.onChange = options.onChange;
    this.lastTick = this.now();
  }

  /** Adds a host (no-op when known). Hosts are also added by recordSuccess/recordFailure. */
  addHost(id: string): void {
    if (!this.hosts.has(id)) this.hosts.set(id, { consecutive: 0, requests: 0, failures: 0, ejectionCount: 0, ejectedUntil: 0 });
  }

  removeHost(id: string): void {
    const h = this.hosts.get(id);
    if (!h) return;
    this.hosts.delete(id);
    if (h.ejectedUntil) {
      this.ejectedCount--;
      this.emit({ id, ejected: false, reason: 'removed', ejectionCount: h.ejectionCount, at: this.now() });
    }
  }

  /** Makes the host set exactly `ids`. */
  setHosts(ids: Iterable<string>): void {
    const keep = new Set(ids);
    for (const id of [...this.hosts.keys()]) if (!keep.has(id)) this.removeHost(id);
    for (const id of keep) this.addHost(id);
  }

  recordSuccess(id: string, now: number = this.now()): void {
    this.tick(now);
    const h = this.host(id);
    h.consecutive = 0;
    h.requests++;
  }

  recordFailure(id: string, now: number = this.now()): void {
    this.tick(now);
    const h = this.host(id);
    h.consecutive++;
    h.requests++;
    h.failures++;
    if (this.o.consecutiveFailures > 0 && h.consecutive >= this.o.consecutiveFailures && !h.ejectedUntil) {
      this.eject(id, h, now, 'consecutive-failures');
    }
  }

  isEjected(id: string, now: number = this.now()): boolean {
    this.tick(now);
    const h = this.hosts.get(id);
    if (!h || !h.ejectedUntil) return false;
    if (now >= h.ejectedUntil) {
      this.uneject(id, h, now);
      return false;
    }
    return true;
  }

  /** Currently ejected host ids. */
  ejected(now: number = this.now()): string[] {
    this.tick(now);
    const out: string[] = [];
    for (const [id, h] of this.hosts) if (h.ejectedUntil && !this.expire(id, h, now)) out.push(id);
    return out;
  }

  /** Ejection bookkeeping of one host (for explain / admin). */
  info(id: string): { ejected: boolean; ejectionCount: number; until?: number; consecutiveFailures: number } | undefined {
    const h = this.hosts.get(id);
    if (!h) return undefined;
    return h.ejectedUntil
      ? { ejected: true, ejectionCount: h.ejectionCount, until: h.ejectedUntil, consecutiveFailures: h.consecutive }
      : { ejected: false, ejectionCount: h.ejectionCount, consecutiveFailures: h.consecutive };
  }

  /** How many hosts may be ejected at once now. */
  maxEjectable(): number {
    const n = this.hosts.size;
    if (n < 2) return 0;
    return Math.min(n - 1, Math.max(1, Math.floor((this.o.maxEjectionPercent / 100) * n)));
  }

  /** Runs the interval evaluations that are due (called by the other methods; call it from a timer if you like). */
  tick(now: number = this.now()): void {
    const elapsed = now - this.lastTick;
    if (elapsed < this.o.intervalMs) return;
    const intervals = Math.floor(elapsed / this.o.intervalMs);
    this.lastTick += intervals * this.o.intervalMs;
    // 1. expire ejections; decay the multiplier of hosts that stayed in.
    for (const [id, h] of this.hosts) {
      if (h.ejectedUntil) this.expire(id, h, now);
      else if (h.ejectionCount > 0) h.ejectionCount = Math.max(0, h.ejectionCount - intervals);
    }
    // 2. failure-rate ejections over the interval just ended (only when exactly one elapsed:
    //    counters spanning several intervals are stale).
    if (this.o.failureRateThreshold > 0 && intervals === 1) {
      for (const [id, h] of this.hosts) {
        if (h.ejectedUntil || h.requests < this.o.minRequests) continue;
        if (h.failures / h.requests >= this.o.failureRateThreshold) this.eject(id, h, now, 'failure-rate');
      }
    }
    for (const h of this.hosts.values()) {
      h.requests = 0;
      h.failures = 0;
    }
  }

  private host(id: string): Host {
    let h = this.hosts.get(id);
    if (!h) {
      this.addHost(id);
      h = this.hosts.get(id)!;
    }
    return h;
  }

  private expire(id: string, h: Host, now: number): boolean {
    if (now >= h.ejectedUntil) {
      this.uneject(id, h, now);
      return true;
    }
    return false;
  }

  private eject(id: string, h: Host, now: number, reason: string): void {
    if (this.ejectedCount >= this.maxEjectable()) return;
    h.ejectionCount++;
    h.ejectedUntil = now + Math.min(this.o.maxEjectionMs, this.o.baseEjectionMs * h.ejectionCount);
    h.consecutive = 0;
    this.ejectedCount++;
    this.emit({ id, ejected: true, reason, ejectionCount: h.ejectionCount, until: h.ejectedUntil, at: now });
  }

  private uneject(id: string, h: Host, now: number): void {
    h.ejectedUntil = 0;
    h.consecutive = 0;
    this.ejectedCount--;
    this.emit({ id, ejected: false, reason: 'time-elapsed', ejectionCount: h.ejectionCount, at: now });
  }

  private emit(e: OutlierEvent): void {
    if (!this.onChange) return;
    try {
      this.onChange(e);
    } catch {
      /* listeners must not break routing */
    }
  }
}
