/**
 * CPU per statement on the embedded PGlite as the gateway opens it (openDatabase: V8's baseline tier for its
 * WebAssembly): `select 1`, the same inside a transaction, and a transaction that reserves the audit chain
 * (audit_log_reserve). What one more or one less statement per group commit is worth.
 *
 *   npx tsx --conditions=capibara-source bench/pglite-statement-cost.ts [--disk]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { AUDIT_CHAIN_LOCK } from '../src/audit/chain.ts';
import { openDatabase } from '../src/db/client.ts';

const dir = mkdtempSync(join(tmpdir(), 'mcp-statement-cost-'));
const db = await openDatabase({ dataDir: dir, inMemory: !process.argv.includes('--disk') });
await db.migrate();
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
async function perCall(n: number, f: () => Promise<unknown>): Promise<number> {
  const c0 = cpuUs();
  for (let i = 0; i < n; i++) await f();
  return (cpuUs() - c0) / n;
}
const rows: string[] = [];
for (let r = 0; r < 3; r++) {
  const select = await perCall(2000, () => db.db.execute(sql`select 1`));
  const inTx = await perCall(500, () => db.db.transaction((tx) => tx.execute(sql`select 1`)));
  const reserve = await perCall(500, () =>
    db.db.transaction((tx) => tx.execute(sql`select last_hash, first_id from audit_log_reserve(${AUDIT_CHAIN_LOCK}, ${400})`)),
  );
  rows.push(`| ${r + 1} | ${select.toFixed(0)} | ${inTx.toFixed(0)} | ${reserve.toFixed(0)} |`);
}
await db.close();
rmSync(dir, { recursive: true, force: true });
console.log(
  [
    `PGlite statement cost — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${process.argv.includes('--disk') ? 'on disk' : 'in memory'}, CPU µs per call`,
    '',
    '| round | select 1 | transaction(select 1) | transaction(audit_log_reserve) |',
    '|---:|---:|---:|---:|',
    ...rows,
  ].join('\n'),
);
