/**
 * Retry budget (Linkerd style; Envoy's `retry_budget` is the concurrency-based cousin):
 * a retry is allowed while
 *
 *   retries in the window + 1 ≤ ratio × requests in the window + minRetriesPerSecond × window seconds
 *
 * The config's defaults are Linkerd's (retryRatio 0.2, minRetriesPerSecond 10, ttl 10 s). The
 * floor keeps retries possible at low traffic; the ratio stops retry storms when a whole pool fails.
 *
 * Count original requests with recordRequest() (not the retries). Before a retry call
 * tryAcquire(): it records the retry and returns true, or returns false when the budget is
 * spent. The window is a ring of buckets: O(buckets) per check, no allocation.
 */

/** Resolved settings (config `router.retryBudget` holds the defaults). */
export interface RetryBudgetSettings {
  /** Retries allowed per original request in the window. */
  ratio: number;
  /** Retries per second always allowed. */
  minRetriesPerSecond: number;
  /** Sliding window, ms. */
  windowMs: number;
  /** Buckets in the window. */
  buckets: number;
}

export interface RetryBudgetOptions extends RetryBudgetSettings {
  /** Clock, ms (Date.now when absent). */
  now?: () => number;
}

export class RetryBudget {
  readonly ratio: number;
  readonly minRetriesPerSecond: number;
  readonly windowMs: number;
  private readonly n: number;
  private readonly bucketMs: number;
  private readonly now: () => number;
  private readonly stamps: Float64Array;
  private readonly reqs: Float64Array;
  private readonly retries: Float64Array;

  constructor(options: RetryBudgetOptions) {
    this.ratio = Math.max(0, options.ratio);
    this.minRetriesPerSecond = Math.max(0, options.minRetriesPerSecond);
    this.windowMs = options.windowMs;
    if (!(this.windowMs > 0)) throw new RangeError('RetryBudget: windowMs must be > 0');
    this.n = Math.max(1, Math.floor(options.buckets));
    this.bucketMs = this.windowMs / this.n;
    this.now = options.now ?? Date.now;
    this.stamps = new Float64Array(this.n).fill(-Infinity);
    this.reqs = new Float64Array(this.n);
    this.retries = new Float64Array(this.n);
  }

  /** Counts one original (non-retry) request. */
  recordRequest(now: number = this.now()): void {
    this.reqs[this.slot(now)]! += 1;
  }

  /** Would a retry be allowed now? (Takes nothing.) */
  canRetry(now: number = this.now()): boolean {
    const { requests, retries } = this.counts(now);
    return retries + 1 <= this.ratio * requests + this.minRetriesPerSecond * (this.windowMs / 1000);
  }

  /** Takes one retry from the budget when allowed. */
  tryAcquire(now: number = this.now()): boolean {
    if (!this.canRetry(now)) return false;
    this.retries[this.slot(now)]! += 1;
    return true;
  }

  /** Records a retry made without asking (it still spends budget). */
  recordRetry(now: number = this.now()): void {
    this.retries[this.slot(now)]! += 1;
  }

  /** Requests, retries and the retries still available in the window. */
  stats(now: number = this.now()): { requests: number; retries: number; available: number } {
    const { requests, retries } = this.counts(now);
    const limit = this.ratio * requests + this.minRetriesPerSecond * (this.windowMs / 1000);
    return { requests, retries, available: Math.max(0, Math.floor(limit - retries)) };
  }

  private slot(now: number): number {
    const s = Math.floor(now / this.bucketMs);
    const i = ((s % this.n) + this.n) % this.n;
    if (this.stamps[i] !== s) {
      this.stamps[i] = s;
      this.reqs[i] = 0;
      this.retries[i] = 0;
    }
    return i;
  }

  private counts(now: number): { requests: number; retries: number } {
    const oldest = Math.floor(now / this.bucketMs) - this.n + 1;
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < this.n; i++) {
      if (this.stamps[i]! >= oldest) {
        requests += this.reqs[i]!;
        retries += this.retries[i]!;
      }
    }
    return { requests, retries };
  }
}
