import pino from 'pino';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../audit/chain.ts';
import type { AuditEntry } from '../audit/types.ts';
import { type Database } from '../db/client.ts';
import { openTestStorage, STORAGES } from '../testing/database.ts';
import { InferenceRecorder, type InferenceRecord } from './inference-recorder.ts';

const record = (id: string, over: Partial<InferenceRecord> = {}): InferenceRecord => ({
  id,
  modelId: 'chat',
  version: 'v1',
  instanceId: 'chat-v1-0',
  variant: null,
  principalId: 'alice',
  entry: 'openai',
  ok: true,
  errorCode: null,
  latencyMs: 1.5,
  promptTokens: 3,
  completionTokens: 4,
  shadow: false,
  output: null,
  ...over,
});

const call = (i: number): AuditEntry => ({
  actor: 'alice',
  actorVia: 'api-key',
  action: 'inference',
  target: 'chat-v1-0',
  model: 'chat',
  outcome: 'ok',
  ip: '127.0.0.1',
  requestId: `req-${i}`,
  latencyMs: 1.5,
  details: { entry: 'openai', stream: false, version: 'v1' },
});

// The records are written by COPY on PGlite and by a JSON INSERT on PostgreSQL: the same rows come back on both,
// and a value a database would refuse (from an upstream: token counts, a shadow's output) cannot hold up the journal.
describe.each(STORAGES)('inference records on %s', (storageKind) => {
  let database: Database;
  let cleanup: () => Promise<void>;
  let recorder: InferenceRecorder;
  const rows = async (ids: string[]) =>
    (
      (await database.db.execute(
        sql.raw(
          `select id, prompt_tokens, completion_tokens, output, variant, error_code, ok, shadow, latency_ms from inferences where id in (${ids.map((i) => `'${i}'`).join(',')}) order by id`,
        ),
      )) as unknown as { rows: Array<Record<string, unknown>> }
    ).rows;

  beforeAll(async () => {
    ({ database, close: cleanup } = await openTestStorage(storageKind));
    recorder = new InferenceRecorder(
      database,
      { flushIntervalMs: 10_000, maxBatch: 1000, maxBuffered: 10_000, retentionHours: 0, pruneIntervalMs: 60_000, retryBaseMs: 10, retryMaxMs: 20 },
      pino({ level: 'silent' }),
    );
  }, 60_000);
  afterAll(async () => {
    await recorder?.close();
    await cleanup?.();
  });

  it('writes text with quotes, commas, newlines and empty strings as it was, and NULL as NULL', async () => {
    recorder.record(record('t1', { output: 'say "hi", then\nbye\r\n\\N', variant: '', errorCode: null, ok: false }));
    recorder.record(record('t2', { output: '', shadow: true, latencyMs: 0.25 }));
    await recorder.flush();
    expect(await rows(['t1', 't2'])).toEqual([
      {
        id: 't1',
        prompt_tokens: 3,
        completion_tokens: 4,
        output: 'say "hi", then\nbye\r\n\\N',
        variant: '',
        error_code: null,
        ok: false,
        shadow: false,
        latency_ms: 1.5,
      },
      { id: 't2', prompt_tokens: 3, completion_tokens: 4, output: '', variant: null, error_code: null, ok: true, shadow: true, latency_ms: 0.25 },
    ]);
  });

  it('stores what an upstream sent that the columns cannot hold as the nearest value they can, and the records behind it are written', async () => {
    recorder.record(record('u1', { promptTokens: 3.5, completionTokens: 1e12 }));
    recorder.record(record('u2', { promptTokens: Number.NaN, completionTokens: -4 }));
    recorder.record(record('u3', { promptTokens: 'abc' as unknown as number, output: 'nul\0byte' }));
    recorder.record(record('u4', { output: 'lone \ud800 surrogate' }));
    recorder.record(record('u5'));
    await recorder.flush();
    expect(recorder.stats.failedWrites).toBe(0);
    expect((await rows(['u1', 'u2', 'u3', 'u4', 'u5'])).map((r) => [r.id, r.prompt_tokens, r.completion_tokens, r.output])).toEqual([
      ['u1', 4, 2_147_483_647, null],
      ['u2', 0, 0, null],
      ['u3', 0, 4, 'nulbyte'],
      ['u4', 3, 4, 'lone \uFFFD surrogate'],
      ['u5', 3, 4, null],
    ]);
  });

  it('keeps the first record of a request id that comes twice (a client chooses it with X-Request-Id), within a batch and across batches', async () => {
    recorder.record(record('d1', { latencyMs: 1 }));
    await recorder.flush();
    recorder.record(record('d2', { latencyMs: 2 }));
    recorder.record(record('d1', { latencyMs: 3 })); // an earlier batch's id
    recorder.record(record('d2', { latencyMs: 4 })); // this batch's
    recorder.record(record('d3', { latencyMs: 5 }));
    void recorder.appendAudit(call(99), false);
    await recorder.flush();
    expect(recorder.stats.failedWrites).toBe(0);
    expect((await rows(['d1', 'd2', 'd3'])).map((r) => [r.id, r.latency_ms])).toEqual([
      ['d1', 1],
      ['d2', 2],
      ['d3', 5],
    ]);
  });

  it('commits a batch of records and inference audit entries together, the chain intact', async () => {
    const calls = async () =>
      ((await database.db.execute(sql`select count(*)::int as n from audit_entries where action = 'inference'`)) as unknown as { rows: Array<{ n: number }> })
        .rows[0]!.n;
    const before = recorder.stats.batches;
    const callsBefore = await calls();
    for (let i = 0; i < 5; i++) {
      recorder.record(record(`a${i}`));
      void recorder.appendAudit(call(i), false);
    }
    await recorder.flush();
    expect(recorder.stats.batches).toBe(before + 1);
    expect((await rows(['a0', 'a1', 'a2', 'a3', 'a4'])).length).toBe(5);
    expect((await calls()) - callsBefore).toBe(5);
    expect(await verifyChain(database.db)).toMatchObject({ ok: true, firstBrokenId: null });
  });
});
