import { logBackgroundFailure } from '../../db/storage-errors.ts';
import type { Logger } from 'pino';
import type { MetricSelector, MetricSeries, MetricSource } from '../metric-source.ts';
import { aggregationOf, HISTORY_METRIC_NAMES, isAdditiveMean, labelsKey, matches, seriesKey, type SeriesFilter, type StepAggregation } from './catalog.ts';
import { ROLLUP_MS, type HistoryConfig } from './config.ts';
import { Ring, type RingSeries } from './ring.ts';
import type { Rollup, RollupStore } from './rollups.ts';
import type { Sampler } from './sampler.ts';

const RETENTION_EVERY_MS = 3_600_000;

/** Sum, count and max of the samples of one step. */
class Acc {
  sum = 0;
  count = 0;
  max = Number.NEGATIVE_INFINITY;
  add(sum: number, count: number, max: number): void {
    this.sum += sum;
    this.count += count;
    if (max > this.max) this.max = max;
  }
  value(agg: StepAggregation): number {
    return agg === 'sum' ? this.sum : agg === 'max' ? this.max : this.sum / this.count;
  }
}

/** A read of the history: the series, and the step and window actually used. */
export interface HistoryAnswer {
  from: number;
  to: number;
  stepMs: number;
  series: MetricSeries[];
  /** True when part of the window came from the per-minute rollups. */
  fromRollups: boolean;
}

function labelsMatch(want: Readonly<Record<string, string>> | undefined, have: Readonly<Record<string, string>>): boolean {
  if (want) for (const k in want) if (have[k] !== want[k]) return false;
  return true;
}

/**
 * The metrics history, the one MetricSource: samples the gateway's metrics every tick into a
 * ring (recent hours at tick resolution), writes per-minute rollups to the database (kept
 * `retentionDays`), and answers reads from the ring, or from the rollups for older parts of a window.
 */
export class MetricsHistory implements MetricSource {
  readonly ring: Ring;
  private readonly listeners = new Set<(at: number) => void>();
  private timer: NodeJS.Timeout | undefined;
  /** Start of the minute whose rollups are written next. */
  private minute: number | undefined;
  private lastRetention = 0;
  private writing: Promise<void> = Promise.resolve();
  /** Ticks run since start. */
  ticks = 0;

  constructor(
    readonly config: HistoryConfig,
    private readonly sampler: Sampler,
    private readonly store: RollupStore | undefined,
    private readonly logger: Logger,
  ) {
    this.ring = new Ring(Math.ceil(config.ring / config.tickMs), config.maxSeries);
  }

  get tickMs(): number {
    return this.config.tickMs;
  }

  /** Ticks every tickMs until close(), aligned to multiples of tickMs (no drift when a tick's fan-out takes a while). */
  start(): void {
    if (this.timer || !this.config.enabled) return;
    this.tick(Date.now());
    this.schedule();
  }

  private schedule(): void {
    const now = Date.now();
    const next = (Math.floor(now / this.config.tickMs) + 1) * this.config.tickMs;
    this.timer = setTimeout(() => {
      if (!this.timer) return;
      this.tick(Date.now());
      this.schedule();
    }, next - now);
    this.timer.unref();
  }

  /** Stops ticking and writes the rollups of the current (partial) minute. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.minute !== undefined && !Number.isNaN(this.ring.lastAt)) this.rollUp(this.minute, this.ring.lastAt + 1);
    await this.writing;
  }

  /** One sampling tick at `at` (the timer calls it; tests may too). */
  tick(at: number): void {
    this.ring.begin(at);
    this.sampler.sample(at, (metric, labels, value) => this.ring.set(metric, labels, value));
    this.ticks++;
    const minute = Math.floor(at / ROLLUP_MS) * ROLLUP_MS;
    if (this.minute === undefined) this.minute = minute;
    else if (minute > this.minute) {
      this.rollUp(this.minute, minute);
      this.minute = minute;
    }
    if (this.store && at - this.lastRetention >= RETENTION_EVERY_MS) {
      this.lastRetention = at;
      const before = at - this.config.retentionDays * 86_400_000;
      this.queue(async () => {
        const n = await this.store!.deleteBefore(before);
        if (n) this.logger.debug({ rows: n }, 'metric rollups past retention deleted');
      });
    }
    for (const l of this.listeners) {
      try {
        l(at);
      } catch (err) {
        this.logger.warn({ err }, 'metrics tick listener failed');
      }
    }
  }

  private queue(fn: () => Promise<void>): void {
    this.writing = this.writing.then(fn).catch((err: unknown) => logBackgroundFailure(this.logger, err, {}, 'metric rollups: database write failed'));
  }

  /** Writes the rollups of the samples with minute ≤ at < end. */
  private rollUp(minute: number, end: number): void {
    if (!this.store || !this.config.persist) return;
    const rows: Rollup[] = [];
    for (const s of this.ring.all()) {
      let count = 0;
      let sum = 0;
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      this.ring.forSlots(minute - 1, end - 1, (slot) => {
        const v = s.values[slot]!;
        if (Number.isNaN(v)) return;
        count++;
        sum += v;
        if (v < min) min = v;
        if (v > max) max = v;
      });
      if (!count) continue;
      // A replica's time-weighted mean (count 0): the rows of several replicas add up to the fleet's figure.
      if (isAdditiveMean(s.metric))
        rows.push({
          metric: s.metric,
          labelsKey: labelsKey(s.labels),
          labels: s.labels,
          minute,
          count: 0,
          sum: (sum * this.config.tickMs) / ROLLUP_MS,
          min,
          max,
        });
      else rows.push({ metric: s.metric, labelsKey: labelsKey(s.labels), labels: s.labels, minute, count, sum, min, max });
    }
    if (rows.length) this.queue(() => this.store!.write(rows));
  }

  /** Resolves when the rollup writes queued so far are done. */
  flushed(): Promise<void> {
    return this.writing;
  }

  names(): readonly string[] {
    return HISTORY_METRIC_NAMES;
  }

  onTick(listener: (at: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** MetricSource.range: from the ring (its reach: monitoring.history.ring). */
  range(sel: MetricSelector, windowMs: number, stepMs: number): MetricSeries[] {
    const to = this.ring.lastAt;
    if (Number.isNaN(to)) return [];
    const pick = (s: RingSeries) => s.metric === sel.metric && labelsMatch(sel.labels, s.labels);
    return this.fromRing(pick, to - windowMs, to, Math.max(stepMs, this.config.tickMs), Number.POSITIVE_INFINITY);
  }

  /** The latest value of each matching series, aggregated over (at - intervalMs, at]. */
  latest(filter: SeriesFilter, intervalMs: number, maxSeries: number): MetricSeries[] {
    const to = this.ring.lastAt;
    if (Number.isNaN(to)) return [];
    return this.fromRing((s) => matches(filter, s.metric, s.labels), to - intervalMs, to, intervalMs, maxSeries, true);
  }

  private fromRing(pick: (s: RingSeries) => boolean, from: number, to: number, stepMs: number, maxSeries: number, single = false): MetricSeries[] {
    const out: MetricSeries[] = [];
    const slots: number[] = [];
    const times: number[] = [];
    this.ring.forSlots(from, to, (slot, at) => {
      slots.push(slot);
      times.push(at);
    });
    for (const s of this.ring.all()) {
      if (out.length >= maxSeries) break;
      if (!pick(s)) continue;
      const agg = aggregationOf(s.metric);
      const buckets = new Map<number, Acc>();
      for (let i = slots.length - 1; i >= 0; i--) {
        const v = s.values[slots[i]!]!;
        if (Number.isNaN(v)) continue;
        const b = single ? to : Math.floor(times[i]! / stepMs) * stepMs;
        let acc = buckets.get(b);
        if (!acc) buckets.set(b, (acc = new Acc()));
        acc.add(v, 1, v);
      }
      if (!buckets.size) continue;
      out.push({ metric: s.metric, labels: s.labels, points: [...buckets].map(([at, acc]) => ({ at, value: acc.value(agg) })) });
    }
    return out;
  }

  /**
   * A read for the GraphQL `metrics` query: the ring where it reaches, the per-minute rollups for
   * older parts of the window (the step is then at least a minute).
   */
  async read(filter: SeriesFilter, windowMs: number, stepMs: number, maxSeries: number): Promise<HistoryAnswer> {
    const to = Number.isNaN(this.ring.lastAt) ? Date.now() : this.ring.lastAt;
    const from = to - windowMs;
    // Rollups only for windows the ring cannot hold (a young ring answers short windows alone, at tick resolution).
    const useRollups = this.store !== undefined && this.config.persist && windowMs > this.config.ring;
    if (!useRollups) {
      return { from, to, stepMs, fromRollups: false, series: this.fromRing((s) => matches(filter, s.metric, s.labels), from, to, stepMs, maxSeries) };
    }
    const step = Math.max(stepMs, ROLLUP_MS);
    // Rollups for the minutes already rolled up (every minute before the current one); the ring for the current minute.
    const boundary = this.minute ?? to;
    const metrics = (filter.metrics ?? HISTORY_METRIC_NAMES).filter((m) => HISTORY_METRIC_NAMES.includes(m as never));
    await this.writing;
    const rows = await this.store!.read(metrics, from, boundary, step);
    const series = new Map<string, { metric: string; labels: Record<string, string>; buckets: Map<number, Acc> }>();
    const bucketOf = (metric: string, labels: Readonly<Record<string, string>>, key: string) => {
      let e = series.get(key);
      if (!e) {
        if (series.size >= maxSeries) return undefined;
        series.set(key, (e = { metric, labels: { ...labels }, buckets: new Map() }));
      }
      return e.buckets;
    };
    for (const r of rows) {
      if (!matches(filter, r.metric, r.labels)) continue;
      const b = bucketOf(r.metric, r.labels, seriesKey(r.metric, r.labels));
      if (!b) continue;
      let acc = b.get(r.at);
      if (!acc) b.set(r.at, (acc = new Acc()));
      // Metrics whose replicas add up: the mean over the step's minutes of each minute's total.
      if (isAdditiveMean(r.metric)) acc.add(r.minuteValues, r.minutes, r.max);
      else acc.add(r.sum, r.count, r.max);
    }
    const slots: number[] = [];
    const times: number[] = [];
    this.ring.forSlots(Math.max(from, boundary - 1), to, (slot, at) => {
      if (at < boundary) return;
      slots.push(slot);
      times.push(at);
    });
    for (const s of this.ring.all()) {
      if (!matches(filter, s.metric, s.labels)) continue;
      let b: Map<number, Acc> | undefined;
      // Samples of additive means count as one minute (this replica's mean so far), like a rollup row.
      const perMinute = isAdditiveMean(s.metric) ? new Map<number, Acc>() : undefined;
      for (let i = slots.length - 1; i >= 0; i--) {
        const v = s.values[slots[i]!]!;
        if (Number.isNaN(v)) continue;
        b ??= bucketOf(s.metric, s.labels, s.key);
        if (!b) break;
        const at = Math.floor(times[i]! / step) * step;
        const into = perMinute ?? b;
        let acc = into.get(at);
        if (!acc) into.set(at, (acc = new Acc()));
        acc.add(v, 1, v);
      }
      if (b && perMinute) {
        for (const [at, m] of perMinute) {
          let acc = b.get(at);
          if (!acc) b.set(at, (acc = new Acc()));
          acc.add(m.sum / m.count, 1, m.max);
        }
      }
    }
    const out: MetricSeries[] = [];
    for (const e of series.values()) {
      const agg = aggregationOf(e.metric);
      const points = [...e.buckets]
        .filter(([at]) => at + step > from)
        .sort((a, b) => a[0] - b[0])
        .map(([at, acc]) => ({ at, value: acc.value(agg) }));
      if (points.length) out.push({ metric: e.metric, labels: e.labels, points });
    }
    return { from, to, stepMs: step, fromRollups: true, series: out };
  }
}
