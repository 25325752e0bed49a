/**
 * The last `size` latencies of something (a model version, a variant) in a ring, with cheap
 * percentiles: the sorted copy is rebuilt at most every `refreshEvery` new samples, so asking
 * for a percentile on every request (hedging) costs O(1) most of the time.
 */
export class LatencyWindow {
  private readonly ring: Float64Array;
  private count = 0;
  private next = 0;
  private sorted: Float64Array | undefined;
  private sinceSort = 0;

  constructor(
    private readonly size: number,
    private readonly refreshEvery: number,
  ) {
    this.ring = new Float64Array(size);
  }

  add(ms: number): void {
    if (!(ms >= 0)) return;
    this.ring[this.next] = ms;
    this.next = (this.next + 1) % this.size;
    if (this.count < this.size) this.count++;
    this.sinceSort++;
  }

  /** Samples held (at most `size`). */
  get samples(): number {
    return this.count;
  }

  /** The p-th percentile (0–100) of the samples held, or undefined when empty. */
  percentile(p: number): number | undefined {
    if (this.count === 0) return undefined;
    if (!this.sorted || this.sinceSort >= this.refreshEvery || this.sorted.length !== this.count) {
      this.sorted = this.ring.slice(0, this.count).sort();
      this.sinceSort = 0;
    }
    const s = this.sorted;
    const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
    return s[rank];
  }

  clear(): void {
    this.count = 0;
    this.next = 0;
    this.sorted = undefined;
    this.sinceSort = 0;
  }
}
