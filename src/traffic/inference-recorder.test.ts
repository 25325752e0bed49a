import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Database } from '../db/client.ts';
import { InferenceRecorder, type InferenceRecord } from './inference-recorder.ts';

/** A database that only counts the statements it is handed (the recorder's only call is db.execute). */
function countingDatabase(): { database: Database; statements: () => number } {
  let n = 0;
  const database = {
    db: {
      execute: async () => {
        n++;
        return { rows: [] };
      },
    },
  } as unknown as Database;
  return { database, statements: () => n };
}

const row = (i: number): InferenceRecord => ({ id: `r${i}`, modelId: 'm', version: 'v1', entry: 'rest', ok: true, latencyMs: 1, shadow: false });
const options = { flushIntervalMs: 50, maxBatch: 100, maxBuffered: 1000, retentionHours: 0, pruneIntervalMs: 60_000 };

// Group commit against a controlled clock: what one INSERT holds is decided by the window and the
// batch size, never by how fast the machine happens to run.
describe('InferenceRecorder group commit', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('writes the rows of one window with one INSERT when the window closes, not before', async () => {
    const { database, statements } = countingDatabase();
    const recorder = new InferenceRecorder(database, options, pino({ level: 'silent' }));
    for (let i = 0; i < 30; i++) recorder.record(row(i));
    await vi.advanceTimersByTimeAsync(30);
    for (let i = 30; i < 60; i++) recorder.record(row(i)); // later rows join the open window
    await vi.advanceTimersByTimeAsync(19);
    expect(statements()).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(statements()).toBe(1);
    expect(recorder.stats).toMatchObject({ written: 60, refused: 0, batches: 1 });
    recorder.record(row(60)); // the next row opens the next window
    await vi.advanceTimersByTimeAsync(50);
    expect(recorder.stats).toMatchObject({ written: 61, refused: 0, batches: 2 });
    await recorder.close();
  });

  it('writes a full batch at once, without waiting for the window', async () => {
    const { database, statements } = countingDatabase();
    const recorder = new InferenceRecorder(database, options, pino({ level: 'silent' }));
    for (let i = 0; i < 200; i++) recorder.record(row(i));
    await vi.advanceTimersByTimeAsync(0);
    expect(statements()).toBe(2); // two full batches of 100, the clock has not moved
    expect(recorder.stats).toMatchObject({ written: 200, refused: 0, batches: 2 });
    for (let i = 200; i < 250; i++) recorder.record(row(i));
    await vi.advanceTimersByTimeAsync(49);
    expect(statements()).toBe(2);
    await vi.advanceTimersByTimeAsync(1); // a partial batch waits for the end of its window
    expect(recorder.stats).toMatchObject({ written: 250, refused: 0, batches: 3 });
    await recorder.close();
  });
});
