/**
 * CPU per audit row appended to the embedded PGlite: `appendInTransaction` (the chain lock, the last
 * hash, ids, the canonical form and SHA-256 in JS, one INSERT … jsonb_to_recordset) in batches like the
 * group commit's, with the table's secondary indexes and without them, and the JS part alone.
 *
 *   npx tsx --conditions=capibara-source bench/audit-append-cost.ts [--batch=300] [--batches=20]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendInTransaction } from '../src/audit/chain.ts';
import { rowFields, rowHash } from '../src/audit/canonical.ts';
import type { AuditEntry } from '../src/audit/types.ts';
import { openDatabase } from '../src/db/client.ts';

const arg = (name: string, dflt: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const BATCH = arg('batch', 300);
const BATCHES = arg('batches', 20);
const ROUNDS = 3;

/** An inference call's audit entry, as src/audit/inference-audit.ts builds it. */
const entry = (i: number): AuditEntry => ({
  actor: 'bench',
  actorVia: 'api-key',
  action: 'inference',
  target: 'chat-model-v1-0',
  model: 'chat-model',
  outcome: 'ok',
  ip: '127.0.0.1',
  requestId: `req-${i}-0123456789abcdef0123456789`,
  latencyMs: 1.5,
  details: { entry: 'openai', stream: false, version: 'v1', promptTokens: 3, completionTokens: 4 },
});
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = mkdtempSync(join(tmpdir(), 'mcp-audit-bench-'));
const db = await openDatabase({ dataDir: dir, inMemory: true });
await db.migrate();
let next = 0;
async function perRow(): Promise<number> {
  const runs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = cpuUs();
    for (let b = 0; b < BATCHES; b++) {
      await db.db.transaction(async (tx) => {
        await appendInTransaction(
          tx,
          Array.from({ length: BATCH }, () => entry(next++)),
        );
      });
    }
    runs.push((cpuUs() - c0) / (BATCHES * BATCH));
  }
  return median(runs);
}
function jsPerRow(): number {
  const runs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = cpuUs();
    let prev = '0'.repeat(64);
    const at = new Date();
    const rows = [];
    for (let i = 0; i < BATCHES * BATCH; i++) {
      const f = { id: i, ...rowFields(entry(i), at) };
      const hash = rowHash(prev, f);
      rows.push({ ...f, prevHash: prev, hash });
      prev = hash;
    }
    JSON.stringify(rows);
    runs.push((cpuUs() - c0) / (BATCHES * BATCH));
  }
  return median(runs);
}

await perRow(); // warm-up
const withIndexes = await perRow();
for (const i of ['audit_log_actor', 'audit_log_action', 'audit_log_at']) await db.db.execute(`drop index ${i}` as never);
const withoutIndexes = await perRow();
const js = jsPerRow();
await db.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  [
    `Audit append cost — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, PGlite in memory, batches of ${BATCH}, ` +
      `${BATCHES} batches × ${ROUNDS} rounds (median)`,
    '',
    '| what | CPU µs per row |',
    '|---|---:|',
    `| appendInTransaction, the table's indexes (id, at, actor, action) | ${withIndexes.toFixed(1)} |`,
    `| appendInTransaction, primary key only | ${withoutIndexes.toFixed(1)} |`,
    `| of which JS: canonical form, SHA-256, JSON | ${js.toFixed(1)} |`,
  ].join('\n'),
);
