import type { MetricSeries } from '../metric-source.ts';
import type { SeriesFilter } from './catalog.ts';
import type { MetricsHistory } from './metrics-history.ts';

/** What a `metricsUpdates` subscriber receives each interval. */
export interface MetricsSnapshot {
  /** The tick this snapshot was computed at, ms since the epoch. */
  at: number;
  intervalMs: number;
  /** One value per series: its samples of (at - intervalMs, at] combined (`points` holds that one point). */
  series: MetricSeries[];
}

/** One subscriber: holds only the newest snapshot it has not taken yet (a slow reader skips, never queues). */
class Subscriber {
  pending: MetricsSnapshot | undefined;
  wake: (() => void) | undefined;
  push(s: MetricsSnapshot): void {
    this.pending = s;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

/** The subscribers with one filter and interval: one computation per interval for all of them. */
class Feed {
  readonly subscribers = new Set<Subscriber>();
  last = Number.NEGATIVE_INFINITY;
  detach: (() => void) | undefined;
  constructor(
    readonly filter: SeriesFilter,
    readonly intervalMs: number,
  ) {}
}

/**
 * Live snapshots for `metricsUpdates`: subscribers with the same (resolved) filter and interval
 * share one feed; on each history tick a due feed computes its snapshot once and hands the same
 * object to every subscriber.
 */
export class LiveMetrics {
  private readonly feeds = new Map<string, Feed>();
  /** Snapshots computed since start (one per feed per interval, whatever the number of subscribers). */
  computations = 0;

  constructor(
    private readonly history: MetricsHistory,
    private readonly maxSeries: number,
  ) {}

  /** Feeds open now. */
  get size(): number {
    return this.feeds.size;
  }

  /** Snapshots every intervalMs (at least one tick) until `signal` aborts or the consumer stops. */
  async *subscribe(filter: SeriesFilter, intervalMs: number, signal: AbortSignal): AsyncGenerator<MetricsSnapshot> {
    const interval = Math.max(intervalMs, this.history.tickMs);
    const key = `${interval}|${JSON.stringify(normalise(filter))}`;
    let feed = this.feeds.get(key);
    if (!feed) {
      const f = (feed = new Feed(filter, interval));
      this.feeds.set(key, f);
      f.detach = this.history.onTick((at) => this.due(f, at));
    }
    const sub = new Subscriber();
    feed.subscribers.add(sub);
    const onAbort = () => sub.push(undefined as never);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      while (!signal.aborted) {
        if (!sub.pending) await new Promise<void>((resolve) => (sub.wake = resolve));
        const s = sub.pending;
        sub.pending = undefined;
        if (s && !signal.aborted) yield s;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      feed.subscribers.delete(sub);
      if (!feed.subscribers.size && this.feeds.get(key) === feed) {
        feed.detach?.();
        this.feeds.delete(key);
      }
    }
  }

  private due(feed: Feed, at: number): void {
    // Due when an interval has passed since the last snapshot (half a tick of slack for timer jitter).
    if (at - feed.last < feed.intervalMs - this.history.tickMs / 2) return;
    feed.last = at;
    this.computations++;
    const snapshot: MetricsSnapshot = { at, intervalMs: feed.intervalMs, series: this.history.latest(feed.filter, feed.intervalMs, this.maxSeries) };
    for (const s of feed.subscribers) s.push(snapshot);
  }
}

/** The filter with its lists sorted and deduplicated (equal filters share a feed). */
export function normalise(f: SeriesFilter): SeriesFilter {
  const list = (l: readonly string[] | undefined) => (l ? [...new Set(l)].sort() : undefined);
  return { metrics: list(f.metrics), models: list(f.models), versions: list(f.versions), workers: list(f.workers), global: f.global };
}
