/** Snapshots kept: one a second, so the window is a minute. */
const SLOTS = 60;

/**
 * Requests and errors over the last minute, from once-a-second snapshots of a model's running
 * totals (taken by a timer, so the request path only increments the totals): what
 * GET /api/v1/metrics reports as throughput and recent error rate.
 */
export class RecentRate {
  private readonly at = new Float64Array(SLOTS);
  private readonly requests = new Float64Array(SLOTS);
  private readonly errors = new Float64Array(SLOTS);
  private taken = 0;

  /** Records the running totals now. */
  snapshot(requests: number, errors: number, now = Date.now()): void {
    const i = this.taken++ % SLOTS;
    this.at[i] = now;
    this.requests[i] = requests;
    this.errors[i] = errors;
  }

  /** Requests and errors since the oldest snapshot kept (at most a minute ago), and the seconds that covers. */
  since(requests: number, errors: number, now = Date.now()): { requests: number; errors: number; seconds: number } {
    if (this.taken === 0) return { requests: 0, errors: 0, seconds: 0 };
    const oldest = this.taken <= SLOTS ? 0 : this.taken % SLOTS;
    return { requests: requests - this.requests[oldest]!, errors: errors - this.errors[oldest]!, seconds: (now - this.at[oldest]!) / 1000 };
  }
}
