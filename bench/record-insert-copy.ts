/**
 * CPU per `inferences` row written to the embedded database, two ways in: one `jsonb_to_recordset` INSERT per
 * batch (what PostgreSQL gets) against `COPY … FROM '/dev/blob'` (CSV, what PGlite gets), both as src/traffic/record-rows.ts builds them,
 * batches of 420 rows, interleaved rounds. The database is opened as the gateway opens it (openDatabase: the
 * baseline WebAssembly tier, the migrated schema with its indexes; on disk with --disk, in memory otherwise).
 *
 *   npx tsx --conditions=capibara-source bench/record-insert-copy.ts [--disk] [--rounds=4]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/db/client.ts';
import { copyRecords, recordsInsert } from '../src/traffic/record-rows.ts';
import type { InferenceRecord } from '../src/traffic/inference-recorder.ts';
import { arg } from './load.ts';

const DISK = process.argv.includes('--disk');
const ROUNDS = Number(arg('rounds', '4'));
const dir = mkdtempSync(join(tmpdir(), 'record-copy-'));
const database = await openDatabase({ dataDir: dir, inMemory: !DISK });
await database.migrate();
const N = 420,
  B = 20;
const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const rows = (): InferenceRecord[] =>
  Array.from({ length: N }, () => ({
    id: crypto.randomUUID(),
    modelId: 'chat-model',
    version: 'v1',
    instanceId: 'chat-model-v1-0',
    variant: null,
    principalId: 'bench',
    entry: 'openai',
    ok: true,
    errorCode: null,
    latencyMs: 1 + Math.random(),
    promptTokens: 3,
    completionTokens: 4,
    shadow: false,
    output: null,
  }));
const bulk = database.bulk!;
const json = () => database.db.execute(recordsInsert(rows()));
const copy = () => copyRecords(bulk.copy, rows());
const totals = { json: [] as number[], copy: [] as number[] };
for (let r = 0; r < ROUNDS; r++)
  for (const [name, f] of [
    ['json', json],
    ['copy', copy],
  ] as const) {
    const c0 = cpu();
    for (let b = 0; b < B; b++) await f();
    totals[name].push((cpu() - c0) / (N * B));
  }
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  `inferences rows, ${DISK ? 'on disk' : 'in memory'}, ${ROUNDS} rounds × ${B} batches × ${N} rows: jsonb_to_recordset ${med(totals.json).toFixed(1)} µs/row, COPY csv ${med(totals.copy).toFixed(1)} µs/row (median of rounds; per round: ${totals.json.map((x) => x.toFixed(1)).join('/')} vs ${totals.copy.map((x) => x.toFixed(1)).join('/')})`,
);
await database.close();
rmSync(dir, { recursive: true, force: true });
