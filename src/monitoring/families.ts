import type { Metric, Registry } from 'prom-client';

/** One sample as prom-client's Registry formats it. */
interface Sample {
  metricName?: string;
  labels: Readonly<Record<string, string>>;
  value: number;
}

/** What prom-client's Registry reads from a metric at scrape time. */
export interface Collected {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: Sample[];
  aggregator: 'sum';
}

/**
 * Counter and histogram families for the per-request hot path, registered in a prom-client
 * Registry (which formats them, text or OpenMetrics). prom-client's own children re-hash their
 * label object on every inc/observe (a string built per call); here a series is looked up once,
 * kept by the caller, and recording is a few number updates: no allocation per request.
 */
abstract class Family<L extends string, S extends { readonly labels: Readonly<Record<L, string>> }> {
  private readonly series = new Map<string, S>();
  abstract readonly type: 'counter' | 'histogram';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly L[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  protected abstract create(labels: Readonly<Record<L, string>>): S;

  /** The series of these label values (created on first use): keep it, and record on it directly. */
  of(labels: Readonly<Record<L, string>>): S {
    let key = '';
    for (const n of this.labelNames) key += `${labels[n]}\u0000`;
    let s = this.series.get(key);
    if (!s) {
      const copy = {} as Record<L, string>;
      for (const n of this.labelNames) copy[n] = labels[n];
      s = this.create(Object.freeze(copy));
      this.series.set(key, s);
    }
    return s;
  }

  /** Drops the series whose labels match (e.g. a deleted model's). */
  remove(match: (labels: Readonly<Record<L, string>>) => boolean): void {
    for (const [k, s] of this.series) if (match(s.labels)) this.series.delete(k);
  }

  /** Number of series (label combinations). */
  get size(): number {
    return this.series.size;
  }

  protected all(): IterableIterator<S> {
    return this.series.values();
  }

  /** The series whose labels match. */
  *seriesWhere(match: (labels: Readonly<Record<L, string>>) => boolean): IterableIterator<S> {
    for (const s of this.series.values()) if (match(s.labels)) yield s;
  }

  reset(): void {
    this.series.clear();
  }

  abstract get(): Collected;
}

export class CounterSeries<L extends string> {
  value = 0;
  constructor(readonly labels: Readonly<Record<L, string>>) {}
  inc(n = 1): void {
    this.value += n;
  }
}

/** A monotonically increasing count per label combination (name ends in `_total`). */
export class CounterFamily<L extends string> extends Family<L, CounterSeries<L>> {
  readonly type = 'counter';
  protected create(labels: Readonly<Record<L, string>>): CounterSeries<L> {
    return new CounterSeries(labels);
  }
  get(): Collected {
    const values: Sample[] = [];
    for (const s of this.all()) values.push({ value: s.value, labels: s.labels });
    return { name: this.name, help: this.help, type: 'counter', values, aggregator: 'sum' };
  }
}

export class HistogramSeries<L extends string> {
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Readonly<Record<L, string>>,
    private readonly bounds: Float64Array,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(v: number): void {
    const b = this.bounds;
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (v <= b[mid]!) hi = mid;
      else lo = mid + 1;
    }
    this.counts[lo]!++;
    this.sum += v;
    this.count++;
  }
}

/** A distribution per label combination: `_bucket{le}`, `_sum`, `_count`. */
export class HistogramFamily<L extends string> extends Family<L, HistogramSeries<L>> {
  readonly type = 'histogram';
  private readonly bounds: Float64Array;
  private readonly le: string[];

  constructor(name: string, help: string, labelNames: readonly L[], buckets: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry);
    this.bounds = Float64Array.from([...buckets].sort((a, b) => a - b));
    this.le = [...this.bounds].map(String).concat('+Inf');
  }

  protected create(labels: Readonly<Record<L, string>>): HistogramSeries<L> {
    return new HistogramSeries(labels, this.bounds);
  }

  get(): Collected {
    const values: Sample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.all()) {
      let acc = 0;
      for (let i = 0; i < s.counts.length; i++) {
        acc += s.counts[i]!;
        values.push({ metricName: bucket, labels: { ...s.labels, le: this.le[i]! }, value: acc });
      }
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }
}

/** Exponential buckets: `start`, `start*factor`, … (`count` bounds). */
export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0, v = start; i < count; i++, v *= factor) out.push(Number(v.toPrecision(3)));
  return out;
}
