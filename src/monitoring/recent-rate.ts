/** Seconds the recent window covers. */
const WINDOW_SECONDS = 60;

/**
 * Requests and errors over the last minute in one-second slots (no allocation per add): what
 * GET /api/v1/metrics reports as throughput and recent error rate.
 */
export class RecentRate {
  private readonly requests = new Float64Array(WINDOW_SECONDS);
  private readonly errors = new Float64Array(WINDOW_SECONDS);
  /** The second (since epoch) the newest slot belongs to. */
  private head = 0;
  private readonly born = Math.floor(Date.now() / 1000);

  add(ok: boolean, now = Date.now()): void {
    const sec = Math.floor(now / 1000);
    this.advance(sec);
    const i = sec % WINDOW_SECONDS;
    this.requests[i]!++;
    if (!ok) this.errors[i]!++;
  }

  /** Totals over the window; `seconds` is the window, shorter while the process is younger than it. */
  totals(now = Date.now()): { requests: number; errors: number; seconds: number } {
    const sec = Math.floor(now / 1000);
    this.advance(sec);
    let requests = 0;
    let errors = 0;
    for (let i = 0; i < WINDOW_SECONDS; i++) {
      requests += this.requests[i]!;
      errors += this.errors[i]!;
    }
    return { requests, errors, seconds: Math.max(1, Math.min(WINDOW_SECONDS, sec - this.born + 1)) };
  }

  /** Clears the slots of the seconds that passed since the newest one. */
  private advance(sec: number): void {
    if (sec <= this.head) return;
    const gap = Math.min(WINDOW_SECONDS, sec - this.head);
    for (let k = 1; k <= gap; k++) {
      const i = (this.head + k) % WINDOW_SECONDS;
      this.requests[i] = 0;
      this.errors[i] = 0;
    }
    this.head = sec;
  }
}
