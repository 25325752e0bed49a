/**
 * A Triton-style dynamic batcher: requests for one loaded instance queue up and are run
 * together by a batch function. Generic (no tfjs import); one batcher per instance, so
 * requests for different models never share a batch.
 *
 * Scheduling (like Triton's dynamic batcher):
 *  - a batch is dispatched at once when the queued size reaches `maxBatchSize`, or when a
 *    prefix of the queue adds up to one of `preferredBatchSizes` (the largest such prefix);
 *  - otherwise the batcher waits until the oldest queued item has waited
 *    `maxQueueDelayMicros`, then dispatches the largest prefix that fits `maxBatchSize`;
 *  - requests submitted in the same tick are always considered together (dispatch happens
 *    on setImmediate), so `maxQueueDelayMicros: 0` still batches concurrent callers and
 *    everything that queued while the previous batch ran;
 *  - at most `maxConcurrentBatches` batches run at a time (default 1).
 * An item's `size` (rows it contributes, default 1) counts against `maxBatchSize`; an item
 * larger than `maxBatchSize` runs in a batch of its own.
 */
import { McpError } from '../errors.ts';

export interface DynamicBatcherOptions {
  /** Largest total item size in one batch (≥ 1). 1 disables batching (requests still queue). */
  maxBatchSize: number;
  /** Batch sizes the batch function handles best; a batch of one of these sizes is dispatched without waiting. */
  preferredBatchSizes?: readonly number[];
  /** How long the oldest item may wait for a fuller batch, in microseconds (default 0). */
  maxQueueDelayMicros?: number;
  /** Most items waiting (not running); submitting more rejects with MCP_QUEUE_FULL (default 1024). */
  maxQueueSize?: number;
  /** Batches run at the same time (default 1). */
  maxConcurrentBatches?: number;
  /** Called after each batch, for metrics. */
  onBatch?(info: BatchInfo): void;
}

export interface BatchInfo {
  /** Items (requests) in the batch. */
  items: number;
  /** Sum of item sizes (rows). */
  size: number;
  /** How long the batch function took, ms. */
  durationMs: number;
  /** How long the oldest item waited in the queue, ms. */
  maxQueueWaitMs: number;
  ok: boolean;
}

export interface SubmitOptions {
  /** Aborting drops the item while it is still queued (rejects with MCP_CANCELLED). */
  signal?: AbortSignal;
  /** Absolute deadline (ms since epoch): still queued then ⇒ dropped with MCP_DEADLINE_EXCEEDED. */
  deadline?: number;
  /** Rows this item contributes to the batch (default 1). */
  size?: number;
}

export interface BatcherStats {
  /** Items waiting. */
  queueDepth: number;
  /** Sum of the sizes of the items waiting. */
  queuedSize: number;
  /** Batches running now. */
  running: number;
  batchesRun: number;
  /** Items (requests) that have been run. */
  itemsRun: number;
  /** Rows (sum of item sizes) that have been run. */
  rowsRun: number;
  /** rowsRun / batchesRun. */
  averageBatchSize: number;
  /** itemsRun / batchesRun. */
  averageItemsPerBatch: number;
  rejectedQueueFull: number;
  cancelled: number;
  deadlineExceeded: number;
  failedBatches: number;
}

/** Runs one batch: receives the inputs (and their sizes) and returns one result per input, in order. */
export type BatchFunction<I, O> = (inputs: I[], sizes: number[]) => Promise<O[]> | O[];

interface Item<I, O> {
  input: I;
  size: number;
  enqueuedAt: number;
  resolve(value: O): void;
  reject(err: unknown): void;
  /** Removes abort listener and deadline timer. */
  detach(): void;
  /** Still waiting in the queue. */
  queued: boolean;
}

export class DynamicBatcher<I, O> {
  private readonly maxBatchSize: number;
  private readonly preferred: number[];
  private readonly delayMs: number;
  private readonly maxQueueSize: number;
  private readonly maxConcurrent: number;
  private readonly queue: Array<Item<I, O>> = [];
  private queuedSize = 0;
  private running = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private immediate: NodeJS.Immediate | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closedWith: McpError | undefined;
  private readonly counters = { batchesRun: 0, itemsRun: 0, rowsRun: 0, rejectedQueueFull: 0, cancelled: 0, deadlineExceeded: 0, failedBatches: 0 };

  constructor(
    private readonly fn: BatchFunction<I, O>,
    private readonly options: DynamicBatcherOptions,
  ) {
    const int = (v: number | undefined, name: string, min: number, dflt: number): number => {
      const x = v ?? dflt;
      if (!(Number.isFinite(x) || x === Infinity) || x < min) throw new RangeError(`DynamicBatcher: ${name} must be ≥ ${min} (got ${v})`);
      return x;
    };
    this.maxBatchSize = Math.floor(int(options.maxBatchSize, 'maxBatchSize', 1, 1));
    this.delayMs = int(options.maxQueueDelayMicros, 'maxQueueDelayMicros', 0, 0) / 1000;
    this.maxQueueSize = int(options.maxQueueSize, 'maxQueueSize', 1, 1024);
    this.maxConcurrent = Math.floor(int(options.maxConcurrentBatches, 'maxConcurrentBatches', 1, 1));
    this.preferred = [...new Set(options.preferredBatchSizes ?? [])]
      .filter((n) => Number.isInteger(n) && n >= 1 && n <= this.maxBatchSize)
      .sort((a, b) => a - b);
  }

  /** Queues one input; resolves with its result once its batch has run. */
  submit(input: I, opts: SubmitOptions = {}): Promise<O> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const { signal, deadline } = opts;
    if (signal?.aborted) {
      this.counters.cancelled++;
      return Promise.reject(cancelled(signal));
    }
    if (deadline !== undefined && deadline <= Date.now()) {
      this.counters.deadlineExceeded++;
      return Promise.reject(deadlineExceeded());
    }
    if (this.queue.length >= this.maxQueueSize) {
      this.counters.rejectedQueueFull++;
      return Promise.reject(
        new McpError('MCP_QUEUE_FULL', `The request queue is full (${this.maxQueueSize} waiting).`, {
          retryable: true,
          mayHaveExecuted: false,
          details: { maxQueueSize: this.maxQueueSize },
        }),
      );
    }
    const size = Math.max(1, Math.floor(opts.size ?? 1));
    return new Promise<O>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => {
        if (this.drop(item)) {
          this.counters.cancelled++;
          reject(cancelled(signal));
        }
      };
      const item: Item<I, O> = {
        input,
        size,
        enqueuedAt: performance.now(),
        resolve,
        reject,
        queued: true,
        detach: () => {
          signal?.removeEventListener('abort', onAbort);
          if (timer) clearTimeout(timer);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (deadline !== undefined) {
        timer = setTimeout(() => {
          if (this.drop(item)) {
            this.counters.deadlineExceeded++;
            reject(deadlineExceeded());
          }
        }, deadline - Date.now());
        timer.unref?.();
      }
      this.queue.push(item);
      this.queuedSize += size;
      this.kick();
    });
  }

  stats(): BatcherStats {
    const c = this.counters;
    return {
      queueDepth: this.queue.length,
      queuedSize: this.queuedSize,
      running: this.running,
      ...c,
      averageBatchSize: c.batchesRun ? c.rowsRun / c.batchesRun : 0,
      averageItemsPerBatch: c.batchesRun ? c.itemsRun / c.batchesRun : 0,
    };
  }

  /**
   * Stops accepting work: queued items reject with `reason` (default MCP_SHUTTING_DOWN,
   * retryable); resolves when the batches already running have finished.
   */
  async close(reason?: McpError): Promise<void> {
    if (!this.closedWith) {
      this.closedWith = reason ?? new McpError('MCP_SHUTTING_DOWN', 'The instance is being unloaded.', { retryable: true, mayHaveExecuted: false });
      this.clearTimers();
      for (const item of this.queue.splice(0)) {
        item.queued = false;
        item.detach();
        item.reject(this.closedWith);
      }
      this.queuedSize = 0;
    }
    await Promise.allSettled([...this.inFlight]);
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Removes a queued item; false when it already left the queue. */
  private drop(item: Item<I, O>): boolean {
    if (!item.queued) return false;
    item.queued = false;
    item.detach();
    const i = this.queue.indexOf(item);
    if (i >= 0) {
      this.queue.splice(i, 1);
      this.queuedSize -= item.size;
    }
    if (this.queue.length === 0) this.clearTimers();
    return true;
  }

  private clearTimers(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.immediate) {
      clearImmediate(this.immediate);
      this.immediate = undefined;
    }
  }

  /** Re-evaluates the queue on the next turn of the event loop (so same-tick submissions batch together). */
  private kick(): void {
    if (this.immediate || this.closedWith) return;
    this.immediate = setImmediate(() => {
      this.immediate = undefined;
      this.evaluate();
    });
  }

  private evaluate(): void {
    while (this.queue.length > 0 && this.running < this.maxConcurrent && !this.closedWith) {
      const take = this.batchLength();
      if (take === 0) break;
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      this.dispatch(this.queue.splice(0, take));
    }
    if (this.queue.length > 0 && this.running < this.maxConcurrent && !this.timer && !this.closedWith) {
      const wait = this.queue[0]!.enqueuedAt + this.delayMs - performance.now();
      this.timer = setTimeout(
        () => {
          this.timer = undefined;
          this.evaluate();
        },
        Math.max(0, wait),
      );
    }
  }

  /** How many items from the head of the queue to dispatch now (0 = keep waiting). */
  private batchLength(): number {
    const first = this.queue[0]!;
    if (first.size >= this.maxBatchSize) return 1;
    // Longest prefix that fits, and the longest prefix whose size is a preferred size.
    let sum = 0;
    let fit = 0;
    let preferredFit = 0;
    for (const item of this.queue) {
      if (sum + item.size > this.maxBatchSize) break;
      sum += item.size;
      fit++;
      if (this.preferred.includes(sum)) preferredFit = fit;
    }
    const full = fit < this.queue.length || sum >= this.maxBatchSize;
    if (full) return fit;
    if (preferredFit > 0) return preferredFit;
    const waited = performance.now() - first.enqueuedAt;
    return waited >= this.delayMs ? fit : 0;
  }

  private dispatch(items: Array<Item<I, O>>): void {
    const now = performance.now();
    let size = 0;
    for (const item of items) {
      item.queued = false;
      item.detach();
      size += item.size;
    }
    this.queuedSize -= size;
    const maxQueueWaitMs = now - Math.min(...items.map((i) => i.enqueuedAt));
    this.running++;
    const run = (async () => {
      const t0 = performance.now();
      let ok = false;
      try {
        const results = await this.fn(
          items.map((i) => i.input),
          items.map((i) => i.size),
        );
        if (!Array.isArray(results) || results.length !== items.length) {
          throw new McpError(
            'MCP_INTERNAL',
            `batch function returned ${Array.isArray(results) ? results.length : typeof results} results for ${items.length} inputs`,
          );
        }
        ok = true;
        items.forEach((item, i) => item.resolve(results[i] as O));
      } catch (err) {
        this.counters.failedBatches++;
        for (const item of items) item.reject(err);
      } finally {
        this.counters.batchesRun++;
        this.counters.itemsRun += items.length;
        this.counters.rowsRun += size;
        this.running--;
        try {
          this.options.onBatch?.({ items: items.length, size, durationMs: performance.now() - t0, maxQueueWaitMs, ok });
        } catch {
          /* metrics must not break batching */
        }
      }
    })();
    this.inFlight.add(run);
    void run.finally(() => {
      this.inFlight.delete(run);
      // A full batch is already waiting: start it now instead of on the next turn of the event loop.
      if (this.queuedSize >= this.maxBatchSize && !this.closedWith) this.evaluate();
      else this.kick();
    });
  }
}

function cancelled(signal?: AbortSignal): McpError {
  return new McpError('MCP_CANCELLED', 'The request was cancelled while queued.', { cause: signal?.reason });
}

function deadlineExceeded(): McpError {
  return new McpError('MCP_DEADLINE_EXCEEDED', 'The deadline passed while the request was queued.');
}
