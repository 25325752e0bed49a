/**
 * CPU per inference call of a batch row's `entries` (src/audit/batch-calls.ts) on the embedded PGlite, side by side in
 * one run: format 1 (a JSON array, one object per call, as written before) against format 2 (a table, repeated strings
 * stored once), each built from the same calls and inserted into the same kind of column; the JS alone (building the
 * text) and with the INSERT. Rounds interleave the cases, so a busy moment of the machine weighs on both.
 *
 *   npx tsx --conditions=capibara-source bench/audit-batch-format.ts [--batch=420] [--batches=30] [--rounds=7] [--disk]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { encodeCalls } from '../src/audit/batch-calls.ts';
import { sanitizeDetails, sanitizeText } from '../src/audit/canonical.ts';
import type { AuditEntry } from '../src/audit/types.ts';
import { openDatabase } from '../src/db/client.ts';

const arg = (name: string, dflt: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const BATCH = arg('batch', 420);
const BATCHES = arg('batches', 30);
const ROUNDS = arg('rounds', 7);
const DISK = process.argv.includes('--disk');

/** An inference call's audit entry, as src/audit/inference-audit.ts builds it. */
const call = (): AuditEntry => ({
  actor: 'bench',
  actorVia: 'api-key',
  action: 'inference',
  target: 'chat-model-v1-0',
  model: 'chat-model',
  outcome: 'ok',
  ip: '127.0.0.1',
  requestId: crypto.randomUUID(),
  latencyMs: 1 + Math.random(),
  details: { entry: 'openai', stream: false, version: 'v1', promptTokens: 3, completionTokens: 4 },
});

/** Format 1 as it was written: one sanitised object per call, absent values left out. */
function format1(entries: readonly AuditEntry[]): string {
  return JSON.stringify(
    entries.map((e) => {
      const out: Record<string, unknown> = { outcome: e.outcome };
      for (const k of ['actor', 'actorVia', 'target', 'model', 'ip', 'requestId'] as const) {
        const t = sanitizeText(e[k]);
        if (t !== null) out[k] = t;
      }
      if (e.latencyMs !== undefined) out.latencyMs = Math.fround(e.latencyMs);
      if (e.details) out.details = sanitizeDetails(e.details);
      return out;
    }),
  );
}

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = mkdtempSync(join(tmpdir(), 'mcp-audit-format-'));
const db = await openDatabase({ dataDir: dir, inMemory: !DISK });
await db.migrate();
await db.db.execute(sql.raw('create table bench_entries_f1 (id int8 primary key, entries text)'));
await db.db.execute(sql.raw('create table bench_entries (id int8 primary key, entries text)'));
await db.db.execute(sql.raw('create table bench_entries_external (id int8 primary key, entries text)'));
await db.db.execute(sql.raw('alter table bench_entries_external alter entries set storage external'));
let id = 0;
const cases = {
  'format 1, JS only': { encode: format1, insert: false },
  'format 2, JS only': { encode: (e: readonly AuditEntry[]) => encodeCalls(e).text, insert: false },
  'format 1, JS + INSERT': { encode: format1, insert: true },
  'format 2, JS + INSERT': { encode: (e: readonly AuditEntry[]) => encodeCalls(e).text, insert: true },
  'format 2, JS + INSERT, uncompressed (storage external)': { encode: (e: readonly AuditEntry[]) => encodeCalls(e).text, insert: 'external' },
};
const samples = new Map<string, number[]>(Object.keys(cases).map((k) => [k, []]));
let bytes1 = 0;
let bytes2 = 0;
for (let r = 0; r <= ROUNDS; r++) {
  for (const [name, c] of Object.entries(cases)) {
    const c0 = cpuUs();
    for (let b = 0; b < BATCHES; b++) {
      const text = c.encode(Array.from({ length: BATCH }, call));
      if (c.insert === true)
        await db.db.execute(sql`insert into ${sql.raw(name.startsWith('format 1') ? 'bench_entries_f1' : 'bench_entries')} values (${id++}, ${text})`);
      if (c.insert === 'external') await db.db.execute(sql`insert into bench_entries_external values (${id++}, ${text})`);
      if (name.startsWith('format 1')) bytes1 = text.length;
      else bytes2 = text.length;
    }
    if (r > 0) samples.get(name)!.push((cpuUs() - c0) / (BATCHES * BATCH)); // round 0 warms up
  }
}
const stored = async (table: string) => {
  const r = (await db.db.execute(sql.raw(`select sum(pg_column_size(entries))::float8 / count(*) as b from ${table}`))) as unknown as {
    rows: Array<{ b: number }>;
  };
  return r.rows[0]!.b / BATCH;
};
const storedF1 = await stored('bench_entries_f1');
const storedCompressed = await stored('bench_entries');
const storedExternal = await stored('bench_entries_external');
await db.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  [
    `Batch row entries, format 1 against format 2 — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, PGlite ${DISK ? 'on disk' : 'in memory'}, ` +
      `batches of ${BATCH} calls, ${BATCHES} batches per case per round, ${ROUNDS} rounds interleaved (median)`,
    '',
    '| case | CPU µs per call | bytes per call (text) |',
    '|---|---:|---:|',
    ...[...samples].map(([name, xs]) => `| ${name} | ${median(xs).toFixed(1)} | ${Math.round((name.startsWith('format 1') ? bytes1 : bytes2) / BATCH)} |`),
    '',
    `stored per call (pg_column_size): format 1 ${storedF1.toFixed(1)} B, format 2 ${storedCompressed.toFixed(1)} B, format 2 uncompressed ${storedExternal.toFixed(1)} B`,
  ].join('\n'),
);
