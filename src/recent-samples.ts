/**
 * The newest `capacity` timed samples (a time and a value each) in fixed storage: adding one past
 * the capacity overwrites the oldest — O(1), no array shifted, nothing allocated per sample. For
 * "the p95 of what happened in the last minute" over a bounded number of samples.
 */
export class RecentSamples {
  private readonly times: Float64Array;
  private readonly values: Float64Array;
  /** The slot the next sample goes to. */
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.times = new Float64Array(capacity);
    this.values = new Float64Array(capacity);
  }

  /** Samples held (at most the capacity). */
  get size(): number {
    return this.count;
  }

  add(at: number, value: number): void {
    this.times[this.next] = at;
    this.values[this.next] = value;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  /** The values of the samples taken after `after` (exclusive), oldest first. */
  valuesAfter(after: number): number[] {
    const out: number[] = [];
    const first = (this.next - this.count + this.capacity) % this.capacity;
    for (let i = 0; i < this.count; i++) {
      const slot = (first + i) % this.capacity;
      if (this.times[slot]! > after) out.push(this.values[slot]!);
    }
    return out;
  }
}
