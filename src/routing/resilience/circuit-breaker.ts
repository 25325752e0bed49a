/**
 * Per-instance circuit breaker.
 *
 *   closed ──(N consecutive failures, or failure rate ≥ threshold over a sliding window
 *             with ≥ minRequests)──▶ open
 *   open ──(cool-down elapsed)──▶ half-open
 *   half-open: at most `halfOpenMaxProbes` trial requests per `halfOpenIntervalMs`;
 *             `successThreshold` successes ─▶ closed (cool-down back to base),
 *             any failure ─▶ open again with cool-down × backoffMultiplier (capped).
 *
 * Nothing here depends on how many instances a model has: a model with a single instance
 * gets circuit breaking too (LiteLLM does not). Time comes from `now` (injectable); the
 * open → half-open transition happens lazily in allow()/state, no timers.
 *
 * The sliding window is a ring of `windowBuckets` counters (no allocation per request).
 */

export type CircuitState = 'closed' | 'open' | 'half-open';

export interface CircuitStateChange {
  from: CircuitState;
  to: CircuitState;
  /** Why: 'consecutive-failures' | 'failure-rate' | 'cool-down-elapsed' | 'probe-succeeded' | 'probe-failed' | 'reset'. */
  reason: string;
  /** When it re-allows a probe (open only), ms on the `now` clock. */
  retryAt?: number;
  /** Consecutive openings without a close in between (1 for the first). */
  openings: number;
  at: number;
}

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit (default 5; 0 disables). */
  consecutiveFailures?: number;
  /** Failure rate (0–1] over the window that opens the circuit (default 0.5; 0 disables). */
  failureRateThreshold?: number;
  /** Sliding window for the failure rate, ms (default 60 000). */
  windowMs?: number;
  /** Buckets in the window (default 10). */
  windowBuckets?: number;
  /** Requests in the window before the failure rate counts (default 10). */
  minRequests?: number;
  /** First open period, ms (default 5 000, LiteLLM's cooldown). */
  coolDownMs?: number;
  /** Growth of the open period on each failed probe (default 2). */
  backoffMultiplier?: number;
  /** Cap of the open period, ms (default 60 000). */
  maxCoolDownMs?: number;
  /** Trial requests allowed per half-open interval (default 1). */
  halfOpenMaxProbes?: number;
  /** After this long without a probe answer another probe is allowed, ms (default = coolDownMs). */
  halfOpenIntervalMs?: number;
  /** Successful probes needed to close (default 1). */
  successThreshold?: number;
  /** Clock, ms (default Date.now). */
  now?: () => number;
  /** Called on every state change (never throws into the caller). */
  onStateChange?: (change: CircuitStateChange) => void;
}

export const CIRCUIT_BREAKER_DEFAULTS = {
  consecutiveFailures: 5,
  failureRateThreshold: 0.5,
  windowMs: 60_000,
  windowBuckets: 10,
  minRequests: 10,
  coolDownMs: 5_000,
  backoffMultiplier: 2,
  maxCoolDownMs: 60_000,
  halfOpenMaxProbes: 1,
  successThreshold: 1,
} as const;

export class CircuitBreaker {
  private readonly o: Required<Omit<CircuitBreakerOptions, 'onStateChange' | 'halfOpenIntervalMs'>> & { halfOpenIntervalMs: number };
  private readonly onStateChange: ((c: CircuitStateChange) => void) | undefined;
  private _state: CircuitState = 'closed';
  private consecutive = 0;
  private openings = 0;
  private openUntil = 0;
  private currentCoolDown: number;
  // half-open bookkeeping
  private probesInInterval = 0;
  private intervalStart = 0;
  private probeSuccesses = 0;
  // sliding window
  private readonly bucketMs: number;
  private readonly reqs: Float64Array;
  private readonly fails: Float64Array;
  private readonly stamps: Float64Array;

  constructor(options: CircuitBreakerOptions = {}) {
    const d = CIRCUIT_BREAKER_DEFAULTS;
    const coolDownMs = options.coolDownMs ?? d.coolDownMs;
    this.o = {
      consecutiveFailures: options.consecutiveFailures ?? d.consecutiveFailures,
      failureRateThreshold: options.failureRateThreshold ?? d.failureRateThreshold,
      windowMs: options.windowMs ?? d.windowMs,
      windowBuckets: Math.max(1, Math.floor(options.windowBuckets ?? d.windowBuckets)),
      minRequests: options.minRequests ?? d.minRequests,
      coolDownMs,
      backoffMultiplier: Math.max(1, options.backoffMultiplier ?? d.backoffMultiplier),
      maxCoolDownMs: Math.max(coolDownMs, options.maxCoolDownMs ?? d.maxCoolDownMs),
      halfOpenMaxProbes: Math.max(1, Math.floor(options.halfOpenMaxProbes ?? d.halfOpenMaxProbes)),
      halfOpenIntervalMs: options.halfOpenIntervalMs ?? coolDownMs,
      successThreshold: Math.max(1, Math.floor(options.successThreshold ?? d.successThreshold)),
      now: options.now ?? Date.now,
    };
    this.onStateChange = options.onStateChange;
    this.currentCoolDown = coolDownMs;
    this.bucketMs = this.o.windowMs / this.o.windowBuckets;
    this.reqs = new Float64Array(this.o.windowBuckets);
    this.fails = new Float64Array(this.o.windowBuckets);
    this.stamps = new Float64Array(this.o.windowBuckets).fill(-1);
  }

  /** Current state (open turns half-open once the cool-down has elapsed). */
  get state(): CircuitState {
    return this.stateAt(this.o.now());
  }

  stateAt(now: number): CircuitState {
    if (this._state === 'open' && now >= this.openUntil) this.transition('half-open', 'cool-down-elapsed', now);
    return this._state;
  }

  /** When an open circuit lets a probe through (ms on the clock), or undefined when not open. */
  get retryAt(): number | undefined {
    return this._state === 'open' ? this.openUntil : undefined;
  }

  /**
   * May a request go to this instance now? In half-open this *takes* a probe slot:
   * call it only when you will send the request (then report onSuccess/onFailure/onCancel).
   */
  allow(now: number = this.o.now()): boolean {
    const s = this.stateAt(now);
    if (s === 'closed') return true;
    if (s === 'open') return false;
    if (now - this.intervalStart >= this.o.halfOpenIntervalMs) { this.intervalStart = now; this.probesInInterval = 0; }
    if (this.probesInInterval >= this.o.halfOpenMaxProbes) return false;
    this.probesInInterval++;
    return true;
  }

  /** Like allow() but takes nothing: would a request be let through now? */
  canAllow(now: number = this.o.now()): boolean {
    const s = this.stateAt(now);
    if (s !== 'half-open') return s === 'closed';
    return now - this.intervalStart >= this.o.halfOpenIntervalMs || this.probesInInterval < this.o.halfOpenMaxProbes;
  }

  onSuccess(now: number = this.o.now()): void {
    this.record(now, false);
    this.consecutive = 0;
    if (this.stateAt(now) === 'half-open') {
      this.probeSuccesses++;
      if (this.probesInInterval > 0) this.probesInInterval--;
      if (this.probeSuccesses >= this.o.successThreshold) {
        this.openings = 0;
        this.currentCoolDown = this.o.coolDownMs;
        this.clearWindow();
        this.transition('closed', 'probe-succeeded', now);
      }
    }
  }

  onFailure(now: number = this.o.now()): void {
    this.record(now, true);
    this.consecutive++;
    const s = this.stateAt(now);
    if (s === 'half-open') {
      this.currentCoolDown = Math.min(this.o.maxCoolDownMs, this.currentCoolDown * this.o.backoffMultiplier);
      this.open(now, 'probe-failed');
      return;
    }
    if (s !== 'closed') return; // late answers of requests sent before it opened
    if (this.o.consecutiveFailures > 0 && this.consecutive >= this.o.consecutiveFailures) {
      this.open(now, 'consecutive-failures');
      return;
    }
    if (this.o.failureRateThreshold > 0) {
      const { requests, failures } = this.windowCounts(now);
      if (requests >= this.o.minRequests && failures / requests >= this.o.failureRateThreshold) this.open(now, 'failure-rate');
    }
  }

  /** The request was abandoned (client cancelled) without a verdict; frees a half-open probe slot. */
  onCancel(): void {
    if (this._state === 'half-open' && this.probesInInterval > 0) this.probesInInterval--;
  }

  /** Back to closed, counters cleared (admin action). */
  reset(now: number = this.o.now()): void {
    this.consecutive = 0;
    this.openings = 0;
    this.currentCoolDown = this.o.coolDownMs;
    this.clearWindow();
    if (this._state !== 'closed') this.transition('closed', 'reset', now);
  }

  /** Requests and failures in the sliding window (for metrics and explain). */
  windowCounts(now: number = this.o.now()): { requests: number; failures: number } {
    let requests = 0;
    let failures = 0;
    const oldest = Math.floor(now / this.bucketMs) - this.o.windowBuckets + 1;
    for (let i = 0; i < this.o.windowBuckets; i++) {
      const st = this.stamps[i]!;
      if (st >= oldest) { requests += this.reqs[i]!; failures += this.fails[i]!; }
    }
    return { requests, failures };
  }

  private record(now: number, failed: boolean): void {
    const slot = Math.floor(now / this.bucketMs);
    const i = ((slot % this.o.windowBuckets) + this.o.windowBuckets) % this.o.windowBuckets;
    if (this.stamps[i] !== slot) { this.stamps[i] = slot; this.reqs[i] = 0; this.fails[i] = 0; }
    this.reqs[i]! += 1;
    if (failed) this.fails[i]! += 1;
  }

  private clearWindow(): void {
    this.stamps.fill(-1);
    this.reqs.fill(0);
    this.fails.fill(0);
  }

  private open(now: number, reason: string): void {
    this.openings++;
    this.openUntil = now + this.currentCoolDown;
    this.consecutive = 0;
    this.transition('open', reason, now);
  }

  private transition(to: CircuitState, reason: string, now: number): void {
    const from = this._state;
    if (from === to && to !== 'open') return;
    this._state = to;
    if (to === 'half-open') { this.probesInInterval = 0; this.intervalStart = now; this.probeSuccesses = 0; }
    if (this.onStateChange) {
      const change: CircuitStateChange = { from, to, reason, openings: this.openings, at: now };
      if (to === 'open') change.retryAt = this.openUntil;
      try { this.onStateChange(change); } catch { /* a listener must not break routing */ }
    }
  }
}

/** One breaker per instance id, created on first use. */
export class CircuitBreakers {
  private readonly map = new Map<string, CircuitBreaker>();
  constructor(
    private readonly options: Omit<CircuitBreakerOptions, 'onStateChange'> = {},
    private readonly onStateChange?: (id: string, change: CircuitStateChange) => void,
  ) {}

  get(id: string): CircuitBreaker {
    let b = this.map.get(id);
    if (b === undefined) {
      const cb = this.onStateChange;
      b = new CircuitBreaker(cb ? { ...this.options, onStateChange: (c) => cb(id, c) } : this.options);
      this.map.set(id, b);
    }
    return b;
  }

  has(id: string): boolean { return this.map.has(id); }
  forget(id: string): void { this.map.delete(id); }
  ids(): IterableIterator<string> { return this.map.keys(); }
}
