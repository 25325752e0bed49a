import { seriesKey } from './catalog.ts';

/** One series in the ring: a preallocated value per slot (NaN: no sample that tick). */
export class RingSeries {
  readonly values: Float32Array;
  /** The tick number of the last value written. */
  lastWritten = -1;
  constructor(
    readonly metric: string,
    readonly labels: Readonly<Record<string, string>>,
    readonly key: string,
    capacity: number,
  ) {
    this.values = new Float32Array(capacity).fill(Number.NaN);
  }
}

/**
 * The recent samples of every series at tick resolution: a fixed number of slots shared by all
 * series (one time per slot), each series a preallocated Float32Array. At most `maxSeries`
 * series; a series without a sample for a whole ring is dropped.
 */
export class Ring {
  readonly times: Float64Array;
  private readonly series = new Map<string, RingSeries>();
  /** Ticks written since start; the current slot is (ticks - 1) % capacity. */
  private ticks = 0;
  /** Samples refused because `maxSeries` series exist. */
  dropped = 0;

  constructor(
    readonly capacity: number,
    private readonly maxSeries: number,
  ) {
    this.times = new Float64Array(capacity).fill(Number.NaN);
  }

  get size(): number {
    return this.series.size;
  }

  /** Time of the newest slot (NaN before the first tick). */
  get lastAt(): number {
    return this.ticks === 0 ? Number.NaN : this.times[(this.ticks - 1) % this.capacity]!;
  }

  /** Time of the oldest slot kept (NaN before the first tick). */
  get firstAt(): number {
    return this.ticks === 0 ? Number.NaN : this.times[this.ticks <= this.capacity ? 0 : this.ticks % this.capacity]!;
  }

  /** Opens the slot of a new tick (every series has no sample in it yet). */
  begin(at: number): void {
    const slot = this.ticks % this.capacity;
    this.times[slot] = at;
    for (const [key, s] of this.series) {
      if (this.ticks - s.lastWritten >= this.capacity) this.series.delete(key);
      else s.values[slot] = Number.NaN;
    }
    this.ticks++;
  }

  /** Writes a value of the current tick. */
  set(metric: string, labels: Readonly<Record<string, string>>, value: number): void {
    if (this.ticks === 0 || !Number.isFinite(value)) return;
    const key = seriesKey(metric, labels);
    let s = this.series.get(key);
    if (!s) {
      if (this.series.size >= this.maxSeries) {
        this.dropped++;
        return;
      }
      s = new RingSeries(metric, labels, key, this.capacity);
      this.series.set(key, s);
    }
    s.values[(this.ticks - 1) % this.capacity] = value;
    s.lastWritten = this.ticks - 1;
  }

  all(): IterableIterator<RingSeries> {
    return this.series.values();
  }

  /** Calls fn(slot, at) for the slots with from < at ≤ to, newest first (stops at the first older slot). */
  forSlots(from: number, to: number, fn: (slot: number, at: number) => void): void {
    const n = Math.min(this.ticks, this.capacity);
    for (let i = 1; i <= n; i++) {
      const slot = (this.ticks - i) % this.capacity;
      const at = this.times[slot]!;
      if (at <= from) return;
      if (at <= to) fn(slot, at);
    }
  }
}
