import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { DynamicBatcher, type BatchInfo } from './dynamic-batcher.ts';
import { McpError } from '../errors.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A promise that can be opened from outside. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

/** A batcher doubling numbers that records every batch it ran. */
function recording(opts: ConstructorParameters<typeof DynamicBatcher<number, number>>[1], block?: Promise<void>) {
  const batches: number[][] = [];
  const b = new DynamicBatcher<number, number>(async (xs) => {
    batches.push([...xs]);
    if (block) await block;
    return xs.map((x) => x * 2);
  }, opts);
  return { b, batches };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return err instanceof McpError ? err.code : String(err);
  }
}

describe('DynamicBatcher', () => {
  it('batches same-tick submissions and splits results back per request', async () => {
    const { b, batches } = recording({ maxBatchSize: 8 });
    const out = await Promise.all([1, 2, 3, 4, 5].map((x) => b.submit(x)));
    expect(out).toEqual([2, 4, 6, 8, 10]);
    expect(batches).toEqual([[1, 2, 3, 4, 5]]);
  });

  it('never exceeds maxBatchSize and keeps FIFO order', async () => {
    const { b, batches } = recording({ maxBatchSize: 4 });
    const out = await Promise.all(Array.from({ length: 10 }, (_, i) => b.submit(i)));
    expect(out).toEqual(Array.from({ length: 10 }, (_, i) => i * 2));
    expect(batches).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
  });

  it('maxBatchSize 1 runs one request per batch', async () => {
    const { b, batches } = recording({ maxBatchSize: 1 });
    await Promise.all([1, 2, 3].map((x) => b.submit(x)));
    expect(batches).toEqual([[1], [2], [3]]);
  });

  it('waits up to maxQueueDelayMicros for a fuller batch', async () => {
    // The batcher's clock and timers are the test's: "15 ms later" is 15 ms on its clock, not however
    // long a busy machine takes to wake a 15 ms sleep (past the 60 ms delay at times).
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      const { b, batches } = recording({ maxBatchSize: 8, maxQueueDelayMicros: 60_000 });
      const t0 = performance.now();
      const p1 = b.submit(1);
      await new Promise((r) => setImmediate(r)); // the batcher looks at its queue on setImmediate
      await vi.advanceTimersByTimeAsync(15);
      expect(batches).toEqual([]);
      const p2 = b.submit(2);
      await new Promise((r) => setImmediate(r));
      await vi.advanceTimersByTimeAsync(44);
      expect(batches).toEqual([]); // 59 ms: still waiting
      await vi.advanceTimersByTimeAsync(1);
      expect(await Promise.all([p1, p2])).toEqual([2, 4]);
      const waited = performance.now() - t0;
      expect(batches).toEqual([[1, 2]]);
      expect(waited).toBeGreaterThanOrEqual(55);
      expect(waited).toBeLessThan(1000);
    } finally {
      vi.useRealTimers();
    }
  });

  it('dispatches without waiting when the batch is full', async () => {
    const { b, batches } = recording({ maxBatchSize: 3, maxQueueDelayMicros: 10_000_000 });
    const t0 = performance.now();
    expect(await Promise.all([1, 2, 3].map((x) => b.submit(x)))).toEqual([2, 4, 6]);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(batches).toEqual([[1, 2, 3]]);
    await b.close();
  });

  it('dispatches a preferred batch size at once and keeps the rest waiting', async () => {
    const { b, batches } = recording({ maxBatchSize: 8, preferredBatchSizes: [2, 4], maxQueueDelayMicros: 10_000_000 });
    const ps = [1, 2, 3, 4, 5].map((x) => b.submit(x));
    expect(await Promise.all(ps.slice(0, 4))).toEqual([2, 4, 6, 8]);
    expect(batches).toEqual([[1, 2, 3, 4]]);
    expect(b.stats().queueDepth).toBe(1);
    const p6 = b.submit(6);
    expect(await Promise.all([ps[4], p6])).toEqual([10, 12]);
    expect(batches).toEqual([
      [1, 2, 3, 4],
      [5, 6],
    ]);
  });

  it('batches what queued while the previous batch was running', async () => {
    const g = gate();
    const { b, batches } = recording({ maxBatchSize: 16 }, g.promise);
    const first = b.submit(0);
    await sleep(5);
    const rest = [1, 2, 3, 4].map((x) => b.submit(x));
    await sleep(5);
    expect(batches).toEqual([[0]]);
    g.open();
    await Promise.all([first, ...rest]);
    expect(batches).toEqual([[0], [1, 2, 3, 4]]);
  });

  it('rejects with MCP_QUEUE_FULL when maxQueueSize items are waiting', async () => {
    const g = gate();
    const { b } = recording({ maxBatchSize: 1, maxQueueSize: 2 }, g.promise);
    const running = b.submit(1);
    await sleep(5); // 1 is now running, not queued
    const q = [b.submit(2), b.submit(3)];
    const err = await b.submit(4).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe('MCP_QUEUE_FULL');
    expect((err as McpError).retryable).toBe(true);
    expect(b.stats().rejectedQueueFull).toBe(1);
    g.open();
    expect(await Promise.all([running, ...q])).toEqual([2, 4, 6]);
  });

  it('drops an item whose signal aborts while queued; it never runs', async () => {
    const g = gate();
    const { b, batches } = recording({ maxBatchSize: 4 }, g.promise);
    const running = b.submit(1);
    await sleep(5);
    const ac = new AbortController();
    const doomed = b.submit(2, { signal: ac.signal });
    const kept = b.submit(3);
    ac.abort();
    expect(await codeOf(doomed)).toBe('MCP_CANCELLED');
    g.open();
    expect(await Promise.all([running, kept])).toEqual([2, 6]);
    expect(batches.flat()).not.toContain(2);
    expect(b.stats().cancelled).toBe(1);
  });

  it('drops an item whose deadline passes while queued; it never runs', async () => {
    const g = gate();
    const { b, batches } = recording({ maxBatchSize: 4 }, g.promise);
    const running = b.submit(1);
    await sleep(5);
    const doomed = b.submit(2, { deadline: Date.now() + 20 });
    expect(await codeOf(doomed)).toBe('MCP_DEADLINE_EXCEEDED');
    g.open();
    await running;
    await b.submit(5);
    expect(batches.flat()).not.toContain(2);
    expect(b.stats().deadlineExceeded).toBe(1);
  });

  it('rejects at once when already aborted or past its deadline', async () => {
    const { b, batches } = recording({ maxBatchSize: 4 });
    expect(await codeOf(b.submit(1, { signal: AbortSignal.abort() }))).toBe('MCP_CANCELLED');
    expect(await codeOf(b.submit(2, { deadline: Date.now() - 1 }))).toBe('MCP_DEADLINE_EXCEEDED');
    await sleep(5);
    expect(batches).toEqual([]);
  });

  it('rejects every item of a batch whose function throws, and keeps serving', async () => {
    let calls = 0;
    const boom = new Error('boom');
    const b = new DynamicBatcher<number, number>(
      (xs) => {
        if (calls++ === 0) throw boom;
        return xs.map((x) => -x);
      },
      { maxBatchSize: 8 },
    );
    const results = await Promise.allSettled([1, 2, 3].map((x) => b.submit(x)));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(results.every((r) => r.status === 'rejected' && r.reason === boom)).toBe(true);
    expect(await b.submit(4)).toBe(-4);
    expect(b.stats().failedBatches).toBe(1);
  });

  it('rejects with MCP_INTERNAL when the batch function returns the wrong number of results', async () => {
    const b = new DynamicBatcher<number, number>(() => [1], { maxBatchSize: 8 });
    const codes = await Promise.all([b.submit(1), b.submit(2)].map(codeOf));
    expect(codes).toEqual(['MCP_INTERNAL', 'MCP_INTERNAL']);
  });

  it('counts item sizes against maxBatchSize; an oversized item runs alone', async () => {
    const sizes: number[][] = [];
    const b = new DynamicBatcher<string, string>(
      (xs, s) => {
        sizes.push(s);
        return xs;
      },
      { maxBatchSize: 4 },
    );
    await Promise.all([b.submit('a', { size: 3 }), b.submit('b', { size: 2 }), b.submit('c', { size: 2 }), b.submit('big', { size: 9 })]);
    expect(sizes).toEqual([[3], [2, 2], [9]]);
  });

  it('keeps separate batchers (instances) apart', async () => {
    const a = recording({ maxBatchSize: 8 });
    const c = recording({ maxBatchSize: 8 });
    await Promise.all([a.b.submit(1), c.b.submit(100), a.b.submit(2), c.b.submit(200)]);
    expect(a.batches).toEqual([[1, 2]]);
    expect(c.batches).toEqual([[100, 200]]);
  });

  it('exposes stats and reports each batch', async () => {
    const infos: BatchInfo[] = [];
    const b = new DynamicBatcher<number, number>((xs) => xs, { maxBatchSize: 4, onBatch: (i) => infos.push(i) });
    await Promise.all(Array.from({ length: 6 }, (_, i) => b.submit(i)));
    const s = b.stats();
    expect(s).toMatchObject({ queueDepth: 0, queuedSize: 0, running: 0, batchesRun: 2, itemsRun: 6, rowsRun: 6, averageBatchSize: 3 });
    expect(infos.map((i) => i.items)).toEqual([4, 2]);
    expect(infos.every((i) => i.ok && i.durationMs >= 0)).toBe(true);
  });

  it('close() rejects queued items with a retryable MCP_SHUTTING_DOWN and waits for the running batch', async () => {
    const g = gate();
    const { b } = recording({ maxBatchSize: 1 }, g.promise);
    const running = b.submit(1);
    await sleep(5);
    const queued = b.submit(2);
    const closing = b.close();
    expect(await codeOf(queued)).toBe('MCP_SHUTTING_DOWN');
    let closed = false;
    void closing.then(() => {
      closed = true;
    });
    await sleep(5);
    expect(closed).toBe(false);
    g.open();
    await closing;
    expect(await running).toBe(2);
    expect(await codeOf(b.submit(3))).toBe('MCP_SHUTTING_DOWN');
  });

  it('validates its options', () => {
    expect(() => new DynamicBatcher(() => [], { maxBatchSize: 0 })).toThrow(RangeError);
    expect(() => new DynamicBatcher(() => [], { maxBatchSize: 4, maxQueueDelayMicros: -1 })).toThrow(RangeError);
  });

  it('property: every item resolves exactly once with its own result; batches respect maxBatchSize', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.record({ size: fc.integer({ min: 1, max: 10 }), delay: fc.integer({ min: 0, max: 2 }) }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 8 }), { maxLength: 3 }),
        async (max, items, preferred) => {
          const batches: Array<{ ids: number[]; sizes: number[] }> = [];
          const b = new DynamicBatcher<number, string>(
            async (ids, sizes) => {
              batches.push({ ids, sizes });
              await Promise.resolve();
              return ids.map((id) => `r${id}`);
            },
            { maxBatchSize: max, preferredBatchSizes: preferred, maxQueueDelayMicros: 500 },
          );
          const ps: Array<Promise<string>> = [];
          for (const [id, it] of items.entries()) {
            if (it.delay) await sleep(it.delay);
            ps.push(b.submit(id, { size: it.size }));
          }
          const out = await Promise.all(ps);
          expect(out).toEqual(items.map((_, id) => `r${id}`));
          const seen = batches.flatMap((x) => x.ids).sort((x, y) => x - y);
          expect(seen).toEqual(items.map((_, id) => id));
          for (const batch of batches) {
            const total = batch.sizes.reduce((x, y) => x + y, 0);
            expect(batch.sizes.length === 1 || total <= max).toBe(true);
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});
