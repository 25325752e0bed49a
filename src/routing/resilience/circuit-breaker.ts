/**
 * Per-instance circuit breaker.
 *
 *   closed ──(N consecutive failures, or failure rate ≥ threshold over a sliding window
 *             with ≥ minRequests)──▶ open
 *   open ──(open period elapsed: `openMs` at first)──▶ half-open
 *   half-open: at most `halfOpenMaxProbes` trial requests per `halfOpenIntervalMs`;
 *             `successThreshold` successes ─▶ closed (open period back to `openMs`),
 *             any failure ─▶ open again for the open period × backoffMultiplier (capped at `maxOpenMs`).
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

/** Resolved settings (config `router.circuitBreaker` holds the defaults and documents them). */
export interface CircuitBreakerSettings {
  /** Consecutive failures that open the circuit (0 disables). */
  consecutiveFailures: number;
  /** Failure rate (0–1] over the window that opens the circuit (0 disables). */
  failureRateThreshold: number;
  /** Sliding window for the failure rate, ms. */
  windowMs: number;
  /** Buckets in the window. */
  windowBuckets: number;
  /** Requests in the window before the failure rate counts. */
  minRequests: number;
  /** First open period, ms. */
  openMs: number;
  /** Growth of the open period on each failed probe. */
  backoffMultiplier: number;
  /** Cap of the open period, ms. */
  maxOpenMs: number;
  /** Trial requests allowed per half-open interval. */
  halfOpenMaxProbes: number;
  /** After this long without a probe answer another probe is allowed, ms. */
  halfOpenIntervalMs: number;
  /** Successful probes needed to close. */
  successThreshold: number;
}

export interface CircuitBreakerHooks {
  /** Clock, ms (Date.now when absent). */
  now?: () => number;
  /** Called on every state change (never throws into the caller). */
  onStateChange?: (change: CircuitStateChange) => void;
}

export type CircuitBreakerOptions = CircuitBreakerSettings & CircuitBreakerHooks;

export class CircuitBreaker {
  private readonly o: CircuitBreakerSettings;
  private readonly now: () => number;
  private readonly onStateChange: ((c: CircuitStateChange) => void) | undefined;
  private _state: CircuitState = 'closed';
  private consecutive = 0;
  private openings = 0;
  private openUntil = 0;
  private currentOpenMs: number;
  // half-open bookkeeping
  private probesInInterval = 0;
  private intervalStart = 0;
  private probeSuccesses = 0;
  // sliding window
  private readonly bucketMs: number;
  private readonly reqs: Float64Array;
  private readonly fails: Float64Array;
  private readonly stamps: Float64Array;

  constructor(options: CircuitBreakerOptions) {
    this.o = {
      consecutiveFailures: options.consecutiveFailures,
      failureRateThreshold: options.failureRateThreshold,
      windowMs: options.windowMs,
      windowBuckets: Math.max(1, Math.floor(options.windowBuckets)),
      minRequests: options.minRequests,
      openMs: options.openMs,
      backoffMultiplier: Math.max(1, options.backoffMultiplier),
      maxOpenMs: Math.max(options.openMs, options.maxOpenMs),
      halfOpenMaxProbes: Math.max(1, Math.floor(options.halfOpenMaxProbes)),
      halfOpenIntervalMs: options.halfOpenIntervalMs,
      successThreshold: Math.max(1, Math.floor(options.successThreshold)),
    };
    this.now = options.now ?? Date.now;
    this.onStateChange = options.onStateChange;
    this.currentOpenMs = this.o.openMs;
    this.bucketMs = this.o.windowMs / this.o.windowBuckets;
    this.reqs = new Float64Array(this.o.windowBuckets);
    this.fails = new Float64Array(this.o.windowBuckets);
    this.stamps = new Float64Array(this.o.windowBuckets).fill(-1);
  }

  /** Current state (open turns half-open once the open period has elapsed). */
  get state(): CircuitState {
    return this.stateAt(this.now());
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
  allow(now: number = this.now()): boolean {
    const s = this.stateAt(now);
    if (s === 'closed') return true;
    if (s === 'open') return false;
    if (now - this.intervalStart >= this.o.halfOpenIntervalMs) {
      this.intervalStart = now;
      this.probesInInterval = 0;
    }
    if (this.probesInInterval >= this.o.halfOpenMaxProbes) return false;
    this.probesInInterval++;
    return true;
  }

  /** Like allow() but takes nothing: would a request be let through now? */
  canAllow(now: number = this.now()): boolean {
    const s = this.stateAt(now);
    if (s !== 'half-open') return s === 'closed';
    return now - this.intervalStart >= this.o.halfOpenIntervalMs || this.probesInInterval < this.o.halfOpenMaxProbes;
  }

  onSuccess(now: number = this.now()): void {
    this.record(now, false);
    this.consecutive = 0;
    if (this.stateAt(now) === 'half-open') {
      this.probeSuccesses++;
      if (this.probesInInterval > 0) this.probesInInterval--;
      if (this.probeSuccesses >= this.o.successThreshold) {
        this.openings = 0;
        this.currentOpenMs = this.o.openMs;
        this.clearWindow();
        this.transition('closed', 'probe-succeeded', now);
      }
    }
  }

  onFailure(now: number = this.now()): void {
    this.record(now, true);
    this.consecutive++;
    const s = this.stateAt(now);
    if (s === 'half-open') {
      this.currentOpenMs = Math.min(this.o.maxOpenMs, this.currentOpenMs * this.o.backoffMultiplier);
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
  reset(now: number = this.now()): void {
    this.consecutive = 0;
    this.openings = 0;
    this.currentOpenMs = this.o.openMs;
    this.clearWindow();
    if (this._state !== 'closed') this.transition('closed', 'reset', now);
  }

  /** Requests and failures in the sliding window (for metrics and explain). */
  windowCounts(now: number = this.now()): { requests: number; failures: number } {
    let requests = 0;
    let failures = 0;
    const oldest = Math.floor(now / this.bucketMs) - this.o.windowBuckets + 1;
    for (let i = 0; i < this.o.windowBuckets; i++) {
      const st = this.stamps[i]!;
      if (st >= oldest) {
        requests += this.reqs[i]!;
        failures += this.fails[i]!;
      }
    }
    return { requests, failures };
  }

  private record(now: number, failed: boolean): void {
    const slot = Math.floor(now / this.bucketMs);
    const i = ((slot % this.o.windowBuckets) + this.o.windowBuckets) % this.o.windowBuckets;
    if (this.stamps[i] !== slot) {
      this.stamps[i] = slot;
      this.reqs[i] = 0;
      this.fails[i] = 0;
    }
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
    this.openUntil = now + this.currentOpenMs;
    this.consecutive = 0;
    this.transition('open', reason, now);
  }

  private transition(to: CircuitState, reason: string, now: number): void {
    const from = this._state;
    if (from === to && to !== 'open') return;
    this._state = to;
    if (to === 'half-open') {
      this.probesInInterval = 0;
      this.intervalStart = now;
      this.probeSuccesses = 0;
    }
    if (this.onStateChange) {
      const change: CircuitStateChange = { from, to, reason, openings: this.openings, at: now };
      if (to === 'open') change.retryAt = this.openUntil;
      try {
        this.onStateChange(change);
      } catch {
        /* a listener must not break routing */
      }
    }
  }
}

/** One breaker per instance id, created on first use. */
export class CircuitBreakers {
  private readonly map = new Map<string, CircuitBreaker>();
  constructor(
    private readonly options: CircuitBreakerSettings & Pick<CircuitBreakerHooks, 'now'>,
    private readonly onStateChange?: (id: string, change: CircuitStateChange) => void,
  ) {}

  /** The breaker of `id`, created when it has none. */
  get(id: string): CircuitBreaker {
    let b = this.map.get(id);
    if (b === undefined) {
      const cb = this.onStateChange;
      b = new CircuitBreaker(cb ? { ...this.options, onStateChange: (c) => cb(id, c) } : this.options);
      this.map.set(id, b);
    }
    return b;
  }

  /** The breaker of `id` when it has one (creates nothing). */
  peek(id: string): CircuitBreaker | undefined {
    return this.map.get(id);
  }
  has(id: string): boolean {
    return this.map.has(id);
  }
  forget(id: string): void {
    this.map.delete(id);
  }
  ids(): IterableIterator<string> {
    return this.map.keys();
  }
}
