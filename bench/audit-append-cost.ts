/**
 * CPU per inference call audited on the embedded PGlite, side by side in one run: `appendInTransaction`
 * (the chain lock, the last hash, ids, canonical form and SHA-256 in JS, the INSERT) in batches like the
 * group commit's, for
 *  - one row per call (how inference calls were audited before the batch rows: the same code path as
 *    any other event, so the bench gives the calls another action to take it), with the table's
 *    indexes and with its primary key only;
 *  - one batch row per group commit carrying the calls (`entries`), as inference calls are audited now;
 * and the JS part of each.
 *
 *   npx tsx --conditions=capibara-source bench/audit-append-cost.ts [--batch=300] [--batches=20]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendInTransaction, INFERENCE_ACTION, verifyChain } from '../src/audit/chain.ts';
import { encodeCalls } from '../src/audit/batch-calls.ts';
import { rowFields, rowHash } from '../src/audit/canonical.ts';
import type { AuditEntry } from '../src/audit/types.ts';
import { openDatabase } from '../src/db/client.ts';

const arg = (name: string, dflt: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const BATCH = arg('batch', 300);
const BATCHES = arg('batches', 20);
const ROUNDS = 3;

/** An inference call's audit entry, as src/audit/inference-audit.ts builds it (`action` aside). */
const entry = (i: number, action: string): AuditEntry => ({
  actor: 'bench',
  actorVia: 'api-key',
  action,
  target: 'chat-model-v1-0',
  model: 'chat-model',
  outcome: 'ok',
  ip: '127.0.0.1',
  requestId: `req-${i}-0123456789abcdef0123456789`,
  latencyMs: 1.5,
  details: { entry: 'openai', stream: false, version: 'v1', promptTokens: 3, completionTokens: 4 },
});
/** One row per call: the path every non-inference event takes, as inference calls took it before. */
const ROW_PER_CALL = 'inference.row';
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = mkdtempSync(join(tmpdir(), 'mcp-audit-bench-'));
const db = await openDatabase({ dataDir: dir, inMemory: true });
await db.migrate();
let next = 0;
async function perCall(action: string): Promise<number> {
  const runs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = cpuUs();
    for (let b = 0; b < BATCHES; b++) {
      await db.db.transaction(async (tx) => {
        await appendInTransaction(
          tx,
          Array.from({ length: BATCH }, () => entry(next++, action)),
        );
      });
    }
    runs.push((cpuUs() - c0) / (BATCHES * BATCH));
  }
  return median(runs);
}
/** The JS of one row per call: sanitising, canonical form, SHA-256 per row, the JSON parameter. */
function jsRowPerCall(): number {
  const runs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = cpuUs();
    let prev = '0'.repeat(64);
    const at = new Date();
    const rows = [];
    for (let i = 0; i < BATCHES * BATCH; i++) {
      const f = { id: i, ...rowFields(entry(i, ROW_PER_CALL), at) };
      const hash = rowHash(prev, f);
      rows.push({ ...f, prevHash: prev, hash });
      prev = hash;
    }
    JSON.stringify(rows);
    runs.push((cpuUs() - c0) / (BATCHES * BATCH));
  }
  return median(runs);
}
/** The JS of a batch row: sanitising each call, one JSON text and one SHA-256 per batch. */
function jsBatch(): number {
  const runs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = cpuUs();
    let prev = '0'.repeat(64);
    const at = new Date();
    for (let b = 0; b < BATCHES; b++) {
      const calls = encodeCalls(Array.from({ length: BATCH }, (_, i) => entry(b * BATCH + i, INFERENCE_ACTION)));
      const f = { id: b, ...rowFields({ action: INFERENCE_ACTION, outcome: 'ok', details: { calls: BATCH } }, at), entries: calls.text };
      prev = rowHash(prev, f);
    }
    runs.push((cpuUs() - c0) / (BATCHES * BATCH));
  }
  return median(runs);
}

await perCall(ROW_PER_CALL); // warm-up
await perCall(INFERENCE_ACTION);
// Interleaved, so a busy moment of the machine weighs on both.
const rowWithIndexes: number[] = [];
const batchRow: number[] = [];
for (let k = 0; k < 3; k++) {
  rowWithIndexes.push(await perCall(ROW_PER_CALL));
  batchRow.push(await perCall(INFERENCE_ACTION));
}
const jsRow = jsRowPerCall();
const jsB = jsBatch();
const t0 = performance.now();
const verdict = await verifyChain(db.db);
const verifyMs = performance.now() - t0;
if (!verdict.ok) throw new Error(`chain broken at ${verdict.firstBrokenId}`);
for (const i of ['audit_log_actor', 'audit_log_action', 'audit_log_at']) await db.db.execute(`drop index ${i}` as never);
const rowPkOnly = await perCall(ROW_PER_CALL);
await db.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  [
    `Audit append cost — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, PGlite in memory, batches of ${BATCH}, ` +
      `${BATCHES} batches × ${ROUNDS} rounds (median), one row per call and batch rows interleaved 3 times (median)`,
    '',
    '| inference calls audited as | CPU µs per call | of which JS |',
    '|---|---:|---:|',
    `| one row per call, the table's indexes (id, at, actor, action) — before | ${median(rowWithIndexes).toFixed(1)} | ${jsRow.toFixed(1)} |`,
    `| one row per call, primary key only | ${rowPkOnly.toFixed(1)} | ${jsRow.toFixed(1)} |`,
    `| one batch row per group commit (entries, GIN on actors/models) — now | ${median(batchRow).toFixed(1)} | ${jsB.toFixed(1)} |`,
    '',
    `verifyAuditChain over the ${verdict.checked} rows written (${next} calls): ${verifyMs.toFixed(0)} ms`,
  ].join('\n'),
);
