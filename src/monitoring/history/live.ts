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
  /** Set by listen(): each snapshot goes to it at once, in the tick (no promise per subscriber). */
  listener: ((s: MetricsSnapshot) => void) | undefined;
  push(s: MetricsSnapshot): void {
    if (this.listener) return this.listener(s);
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
    /** Told when a subscriber's listener throws (the others still get the snapshot). */
    private readonly onListenerError?: (err: unknown) => void,
  ) {}

  /** Feeds open now. */
  get size(): number {
    return this.feeds.size;
  }

  /**
   * Snapshots every intervalMs (at least one tick) until `signal` aborts or the consumer stops:
   * iterate it, or call `listen` to take each snapshot by callback within the tick (what a
   * transport that writes one pre-serialised message per subscriber does).
   */
  subscribe(filter: SeriesFilter, intervalMs: number, signal: AbortSignal): LiveSubscription {
    const interval = Math.max(intervalMs, this.history.tickMs);
    const key = `${interval}|${JSON.stringify(normalise(filter))}`;
    let feed = this.feeds.get(key);
    if (!feed) {
      const f = (feed = new Feed(filter, interval));
      this.feeds.set(key, f);
      f.detach = this.history.onTick((at) => this.due(f, at));
    }
    const sub = new Subscriber();
    const joined = feed;
    const leave = () => {
      joined.subscribers.delete(sub);
      if (!joined.subscribers.size && this.feeds.get(key) === joined) {
        joined.detach?.();
        this.feeds.delete(key);
      }
    };
    if (signal.aborted) return new LiveSubscription(sub, signal, () => undefined, true);
    feed.subscribers.add(sub);
    return new LiveSubscription(sub, signal, leave, false);
  }

  private due(feed: Feed, at: number): void {
    // Due when an interval has passed since the last snapshot (half a tick of slack for timer jitter).
    if (at - feed.last < feed.intervalMs - this.history.tickMs / 2) return;
    feed.last = at;
    this.computations++;
    const snapshot: MetricsSnapshot = { at, intervalMs: feed.intervalMs, series: this.history.latest(feed.filter, feed.intervalMs, this.maxSeries) };
    for (const s of feed.subscribers) {
      try {
        s.push(snapshot);
      } catch (err) {
        // One listener failing (a transport's write) must not starve the others.
        this.onListenerError?.(err);
      }
    }
  }
}

/** The filter with its lists sorted and deduplicated (equal filters share a feed). */
export function normalise(f: SeriesFilter): SeriesFilter {
  const list = (l: readonly string[] | undefined) => (l ? [...new Set(l)].sort() : undefined);
  return { metrics: list(f.metrics), models: list(f.models), versions: list(f.versions), workers: list(f.workers), global: f.global };
}

/**
 * One subscription to a feed: an async iterator of snapshots (a slow reader skips, never
 * queues), or, after `listen`, a callback called in the tick with the feed's shared snapshot.
 * It ends when the signal aborts or `return()` is called; iterating a listened subscription
 * waits for that end.
 */
export class LiveSubscription implements AsyncIterableIterator<MetricsSnapshot> {
  private ended = false;
  private readonly onAbort = () => this.end();
  private readonly endWaiters: Array<() => void> = [];

  constructor(
    private readonly sub: Subscriber,
    private readonly signal: AbortSignal,
    private readonly leave: () => void,
    ended: boolean,
  ) {
    if (ended) this.ended = true;
    else signal.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Takes every later snapshot by callback instead of by iteration. */
  listen(listener: (s: MetricsSnapshot) => void): void {
    this.sub.listener = listener;
    this.sub.pending = undefined;
  }

  get closed(): boolean {
    return this.ended;
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.signal.removeEventListener('abort', this.onAbort);
    this.sub.listener = undefined;
    this.leave();
    const w = this.sub.wake;
    this.sub.wake = undefined;
    w?.();
    for (const r of this.endWaiters.splice(0)) r();
  }

  async next(): Promise<IteratorResult<MetricsSnapshot>> {
    for (;;) {
      if (this.ended) return { done: true, value: undefined };
      if (this.sub.listener) {
        await new Promise<void>((r) => this.endWaiters.push(r));
        continue;
      }
      const s = this.sub.pending;
      if (s) {
        this.sub.pending = undefined;
        return { done: false, value: s };
      }
      await new Promise<void>((resolve) => (this.sub.wake = resolve));
    }
  }

  async return(): Promise<IteratorResult<MetricsSnapshot>> {
    this.end();
    return { done: true, value: undefined };
  }

  async throw(err: unknown): Promise<IteratorResult<MetricsSnapshot>> {
    this.end();
    throw err;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
