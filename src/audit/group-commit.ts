import type { Logger } from 'pino';
import { sqlStateOf, storageFailure, storageFailureReason } from '../db/storage-errors.ts';
import { McpError } from '../errors.ts';

export interface GroupCommitOptions {
  /** A partial batch is written this long after its first item, ms. */
  flushIntervalMs: number;
  /** Cost per write at most (items, unless `cost` says otherwise); a full batch is written at once. */
  maxBatch: number;
  /** Items kept (buffered and in flight) at most; beyond, push() refuses. */
  maxBuffered: number;
  /** First retry delay after a failed write, ms (doubles up to retryMaxMs). */
  retryBaseMs: number;
  retryMaxMs: number;
  /**
   * What an item counts against maxBatch (default 1). The inference records' buffer counts its
   * `inferences` rows only: each rides with its audit row. A batch holds at most 2 × maxBatch items.
   */
  cost?: (value: unknown) => number;
}

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
}

interface Item<T> {
  value: T;
  waiter?: Waiter;
}

export interface GroupCommitStats {
  /** Items written. */
  written: number;
  /** Write transactions committed. */
  batches: number;
  /** Writes that failed (their items were kept and retried). */
  failedWrites: number;
  /** Items refused because the buffer was full. */
  refused: number;
  /** Items the database refused on their own (a data or constraint error), dropped so the items behind them are written. */
  rejected: number;
}

/** A journal's running totals and the items waiting now (buffered or being written). */
export type JournalStats = GroupCommitStats & { buffered: number };

/**
 * A write refused for what it holds, not because the database is unreachable: SQLSTATE class 22 (data exception)
 * or 23 (integrity constraint violation). Retrying the same items fails the same way.
 */
function refusedForContent(err: unknown): boolean {
  const state = sqlStateOf(err);
  return state !== undefined && (state.startsWith('22') || state.startsWith('23'));
}

/** The error push() throws (or a durable wait rejects with) when the buffer is full. */
export function bufferFull(name: string): McpError {
  return new McpError('MCP_STORAGE_UNAVAILABLE', `the ${name} buffer is full (the database is unreachable or too slow); retry later`, { retryable: true });
}

/**
 * Group commit with retry: push() appends an item to a bounded FIFO buffer; a timer (or a full
 * batch, or a durable item) writes the oldest items with one `write` call, one at a time, in
 * order. A failed write puts its items back at the front and is retried with exponential backoff;
 * nothing is dropped while the buffer has room. A full buffer refuses new items (an error, counted
 * and logged), never drops old ones. A durable push resolves when its item is committed; since
 * writes are in order, that also means every item pushed before it is committed.
 *
 * A write the database refuses for its content (refusedForContent) would fail on every retry and hold up
 * everything behind it. The batch is then split: the next writes take half as many items, again and again, until
 * the one item it refuses is written alone. That item is dropped (counted in stats.rejected, logged with the
 * error's code, its durable waiter rejected), and writes go on in order.
 */
export class GroupCommit<T> {
  private buffer: Array<Item<T>> = [];
  private inflight = 0;
  /** Sum of the buffered items' cost. */
  private bufferedCost = 0;
  private durableWaiting = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> | undefined;
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private lastRefusalLog = 0;
  private closed = false;
  readonly stats: GroupCommitStats = { written: 0, batches: 0, failedWrites: 0, refused: 0, rejected: 0 };
  /** While a refused batch is split: the items at the front it held (`left`) go in writes of at most `size`. */
  private splitting: { left: number; size: number } | undefined;

  constructor(
    private readonly name: string,
    private readonly write: (values: T[]) => Promise<void>,
    private readonly o: GroupCommitOptions,
    private readonly logger: Logger,
  ) {}

  /** Items buffered or being written. */
  get size(): number {
    return this.buffer.length + this.inflight;
  }

  /** Whether an item matching `pred` is still waiting (buffered or being written). */
  has(pred: (value: T) => boolean): boolean {
    return this.inflight > 0 || this.buffer.some((i) => pred(i.value));
  }

  /**
   * Buffers an item. Durable: returns a promise that resolves once it is committed and a flush starts
   * now (concurrent durable items share the next write). Throws bufferFull when the buffer is full.
   */
  push(value: T, durable: true): Promise<void>;
  push(value: T, durable?: false): undefined;
  push(value: T, durable = false): Promise<void> | undefined {
    if (this.closed || this.size >= this.o.maxBuffered) {
      this.stats.refused++;
      const now = Date.now();
      if (now - this.lastRefusalLog > 5000) {
        this.lastRefusalLog = now;
        this.logger.error({ buffer: this.name, buffered: this.size, refused: this.stats.refused }, 'buffer full: new records refused');
      }
      throw bufferFull(this.name);
    }
    this.bufferedCost += this.costOf(value);
    if (!durable) {
      this.buffer.push({ value });
      this.schedule();
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      this.buffer.push({ value, waiter: { resolve, reject } });
      this.durableWaiting++;
      this.schedule();
    });
  }

  private costOf(value: T): number {
    return this.o.cost ? this.o.cost(value) : 1;
  }

  private schedule(): void {
    if (this.flushing || this.retryTimer) return; // the running flush or the retry picks it up
    if (this.bufferedCost >= this.o.maxBatch || this.buffer.length >= 2 * this.o.maxBatch || this.durableWaiting > 0) {
      this.clearTimer();
      void this.flushQuietly();
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flushQuietly();
      }, this.o.flushIntervalMs);
      this.timer.unref?.();
    }
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private flushQuietly(): Promise<void> {
    return this.flush().catch(() => {
      /* counted and logged in writeOnce; the retry timer takes over */
    });
  }

  /**
   * Writes everything buffered now, batch by batch. Rejects with the database's error when a write
   * fails (the items stay buffered and a retry is scheduled).
   */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => {});
    this.clearTimer();
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.flushing = this.drain().finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
    // Items that arrived during the last write wait for their window (or go now when durable or a full batch).
    if (this.buffer.length) this.schedule();
  }

  private async drain(): Promise<void> {
    while (this.buffer.length) await this.writeOnce();
  }

  private async writeOnce(): Promise<void> {
    let n = 0;
    let cost = 0;
    const most = Math.min(2 * this.o.maxBatch, this.splitting?.size ?? Infinity);
    while (n < this.buffer.length && n < most) {
      const c = this.costOf(this.buffer[n]!.value);
      if (cost + c > this.o.maxBatch) break;
      cost += c;
      n++;
    }
    if (n === 0) {
      n = 1;
      cost = this.costOf(this.buffer[0]!.value);
    }
    const batch = this.buffer.splice(0, n);
    this.bufferedCost -= cost;
    this.inflight = batch.length;
    try {
      await this.write(batch.map((i) => i.value));
    } catch (err) {
      this.inflight = 0;
      this.stats.failedWrites++;
      const content = refusedForContent(err);
      if (content) {
        if (batch.length === 1) return this.drop(batch[0]!, err);
        this.splitting = { left: this.splitting?.left ?? batch.length, size: Math.ceil(batch.length / 2) };
      } else this.failures++;
      this.buffer = batch.concat(this.buffer);
      this.bufferedCost += cost;
      // A split batch is tried again soon (no backoff: the database is fine, the halves are what changed).
      const delay = content ? this.o.retryBaseMs : Math.min(this.o.retryBaseMs * 2 ** Math.min(this.failures - 1, 20), this.o.retryMaxMs);
      // An unreachable database: the first failure of the streak says so (no SQL, no parameters), the retries at debug.
      if (content)
        this.logger.warn(
          { reason: storageFailureReason(err), buffer: this.name, rows: batch.length, retryInMs: delay },
          'the database refuses this batch for its content; writing it in halves to find the record',
        );
      else if (!storageFailure(err))
        this.logger.warn({ err, buffer: this.name, rows: batch.length, buffered: this.size, retryInMs: delay }, 'write failed; rows kept, retrying');
      else {
        const fields = { reason: storageFailureReason(err), buffer: this.name, rows: batch.length, buffered: this.size, retryInMs: delay };
        if (this.failures === 1) this.logger.warn(fields, 'write failed, storage unavailable; rows kept, retrying');
        else this.logger.debug(fields, 'write failed, storage unavailable; rows kept, retrying');
      }
      if (!this.closed) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          void this.flushQuietly();
        }, delay);
        this.retryTimer.unref?.();
      }
      throw err;
    }
    this.inflight = 0;
    this.narrowed(batch.length);
    if (this.failures) this.logger.info({ buffer: this.name, afterFailures: this.failures }, 'writes succeed again');
    this.failures = 0;
    this.stats.batches++;
    this.stats.written += batch.length;
    for (const i of batch) {
      if (!i.waiter) continue;
      this.durableWaiting--;
      i.waiter.resolve();
    }
  }

  /** `n` items of a split batch are done with (written, or the one refused dropped); the split ends with the batch. */
  private narrowed(n: number): void {
    if (!this.splitting) return;
    this.splitting.left -= n;
    if (this.splitting.left <= 0) this.splitting = undefined;
  }

  /** Drops the one item the database refuses on its own (see the class comment), so the writes behind it go on. */
  private drop(item: Item<T>, err: unknown): void {
    this.stats.rejected++;
    this.narrowed(1);
    this.logger.error(
      { buffer: this.name, reason: storageFailureReason(err), rejected: this.stats.rejected },
      'the database refuses one record for its content; dropped so the records behind it are written',
    );
    if (item.waiter) {
      this.durableWaiting--;
      item.waiter.reject(new McpError('MCP_INTERNAL', `the ${this.name} record could not be stored`));
    }
  }

  /**
   * Stops accepting items and writes what is left, retrying until `timeoutMs` has passed; what is
   * still unwritten then is logged as lost (with its count) and its durable waiters are rejected.
   */
  async close(timeoutMs = 10_000): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.flush();
        if (this.size === 0) break;
      } catch {
        if (Date.now() >= deadline) break;
        await new Promise((r) =>
          setTimeout(r, Math.min(this.o.retryBaseMs * 2 ** Math.min(this.failures, 10), this.o.retryMaxMs, Math.max(deadline - Date.now(), 1))),
        );
      }
    }
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.clearTimer();
    if (this.buffer.length) {
      this.logger.error({ buffer: this.name, lost: this.buffer.length }, 'shutting down with unwritten records: the database stayed unreachable');
      const err = bufferFull(this.name);
      for (const i of this.buffer) i.waiter?.reject(err);
      this.buffer = [];
      this.bufferedCost = 0;
    }
  }
}
