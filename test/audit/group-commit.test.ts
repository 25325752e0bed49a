import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { GroupCommit } from '../../src/audit/group-commit.ts';

const quiet = pino({ level: 'silent' });
const options = { flushIntervalMs: 50, maxBatch: 10, maxBuffered: 40, retryBaseMs: 100, retryMaxMs: 400 };

/** A sink that fails while `down` is set (like a database outage) and keeps what it committed, in order. */
function sink() {
  const committed: number[] = [];
  const state = { down: false, attempts: 0 };
  const write = async (values: number[]) => {
    state.attempts++;
    if (state.down) throw new Error('connection refused');
    committed.push(...values);
  };
  return { committed, state, write };
}

// Against a controlled clock: what the buffer does during an outage does not depend on the machine's speed.
describe('GroupCommit', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('keeps the rows of failed writes, retries with backoff, and writes everything in order once the database is back', async () => {
    const s = sink();
    const gc = new GroupCommit<number>('test', s.write, options, quiet);
    s.state.down = true;
    for (let i = 0; i < 25; i++) gc.push(i); // more than a batch: written at once (t = 0)
    await vi.advanceTimersByTimeAsync(100 + 200 + 400 + 400); // retries at 100, 300, 700, 1100 ms
    expect(s.committed).toEqual([]);
    expect(s.state.attempts).toBe(5);
    expect(gc.stats.failedWrites).toBe(5);
    expect(gc.size).toBe(25); // nothing dropped
    const tries = s.state.attempts;
    await vi.advanceTimersByTimeAsync(399);
    expect(s.state.attempts).toBe(tries); // backoff capped at retryMaxMs, no hammering in between
    s.state.down = false;
    await vi.advanceTimersByTimeAsync(1);
    expect(s.committed).toEqual(Array.from({ length: 25 }, (_, i) => i));
    expect(gc.size).toBe(0);
    expect(gc.stats).toMatchObject({ written: 25, refused: 0 });
    await gc.close();
  });

  it('refuses new rows loudly when the buffer is full, and never drops buffered ones', async () => {
    const s = sink();
    const gc = new GroupCommit<number>('test', s.write, options, quiet);
    s.state.down = true;
    for (let i = 0; i < 40; i++) gc.push(i);
    expect(() => gc.push(40)).toThrow(expect.objectContaining({ code: 'MCP_STORAGE_UNAVAILABLE', status: 503 }));
    expect(() => gc.push(41, true)).toThrow(expect.objectContaining({ code: 'MCP_STORAGE_UNAVAILABLE' }));
    expect(gc.stats.refused).toBe(2);
    s.state.down = false;
    await gc.flush();
    expect(s.committed).toEqual(Array.from({ length: 40 }, (_, i) => i));
    gc.push(42); // room again
    await gc.close();
    expect(s.committed.at(-1)).toBe(42);
  });

  it('resolves a durable push only once it is committed, and writes it without waiting for the window', async () => {
    const s = sink();
    const gc = new GroupCommit<number>('test', s.write, { ...options, flushIntervalMs: 60_000 }, quiet);
    gc.push(1);
    s.state.down = true;
    let done = false;
    const durable = gc.push(2, true).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(s.state.attempts).toBe(1); // written at once (and failed)
    expect(done).toBe(false);
    s.state.down = false;
    await vi.advanceTimersByTimeAsync(100); // the retry
    await durable;
    expect(s.committed).toEqual([1, 2]); // the earlier row is committed with (or before) the durable one
    await gc.close();
  });

  it('close() gives up after its timeout, logs what is lost and rejects durable waiters', async () => {
    const s = sink();
    const gc = new GroupCommit<number>('test', s.write, options, quiet);
    s.state.down = true;
    const durable = gc.push(7, true).then(
      () => 'committed',
      (err: unknown) => err,
    );
    const closed = gc.close(1000);
    await vi.advanceTimersByTimeAsync(1500);
    await closed;
    expect(await durable).toMatchObject({ code: 'MCP_STORAGE_UNAVAILABLE' });
    expect(gc.size).toBe(0);
  });

  it('splits a batch the database refuses for its content until the refused records are alone, drops only those, and writes the rest in order', async () => {
    // Negative numbers stand for records a column cannot hold: any write holding one fails with a data exception.
    const committed: number[] = [];
    const writes: number[][] = [];
    const write = async (values: number[]) => {
      writes.push(values);
      if (values.some((v) => v < 0)) throw Object.assign(new Error('invalid input syntax for type integer'), { code: '22P02' });
      committed.push(...values);
    };
    const gc = new GroupCommit<number>('test', write, { ...options, maxBuffered: 100 }, quiet);
    const items = [0, 1, 2, -3, 4, 5, 6, 7, -8, 9];
    const refused = gc.push(items[3]!, true).catch((e: unknown) => e);
    for (const v of items.filter((_, i) => i !== 3)) gc.push(v);
    const after = gc.push(10, true);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(committed).toEqual([0, 1, 2, 4, 5, 6, 7, 9, 10]);
    expect(gc.stats.rejected).toBe(2);
    expect(await refused).toMatchObject({ code: 'MCP_INTERNAL' });
    await expect(after).resolves.toBeUndefined();
    expect(writes.every((w) => w.length <= 10)).toBe(true);
    expect(writes.filter((w) => w.length === 1 && w[0]! < 0)).toEqual([[-3], [-8]]); // each refused record tried alone once
    expect(gc.size).toBe(0);
    // The split is over: the next items go in one write again.
    for (let i = 20; i < 25; i++) gc.push(i);
    await vi.advanceTimersByTimeAsync(100);
    expect(writes.at(-1)).toEqual([20, 21, 22, 23, 24]);
  });

  it('never splits or drops on an unreachable database: a connection failure keeps the whole batch', async () => {
    const s = sink();
    const gc = new GroupCommit<number>('test', s.write, options, quiet);
    s.state.down = true;
    for (let i = 0; i < 8; i++) gc.push(i);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(gc.stats).toMatchObject({ rejected: 0 });
    expect(gc.size).toBe(8);
    s.state.down = false;
    await vi.advanceTimersByTimeAsync(500);
    expect(s.committed).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});
