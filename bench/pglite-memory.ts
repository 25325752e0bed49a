/**
 * RSS that the embedded database (PGlite, with the gateway's shared_buffers=16MB) adds to a Node
 * process, after opening it and 50 bulk inserts of 500 rows. Each case runs in a fresh process:
 *
 *   in memory             – `storage.inMemory` (tests): initdb in the process, the files in its heap
 *   create folder here    – a new data folder made in the process itself (initdb in the process)
 *   open existing folder  – what the gateway does: the folder is made by a short-lived child process
 *                           on first start (src/db/client.ts), the gateway only opens it
 *
 *   npx tsx bench/pglite-memory.ts
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { openDatabase } from '../src/db/client.ts';

const CASES = { memory: 'in memory', create: 'create folder here', open: 'open existing folder' } as const;
type Case = keyof typeof CASES;
const OPTIONS = { postgresqlconf: ['shared_buffers=16MB'] };
const rssMB = () => Math.round(process.memoryUsage().rss / 1e6);

async function measure(which: Case, dir: string): Promise<{ beforeMB: number; peakMB: number; afterMB: number }> {
  const before = rssMB();
  let peak = before;
  const sampler = setInterval(() => { peak = Math.max(peak, rssMB()); }, 5);
  const db = which === 'memory' ? new PGlite(OPTIONS) : new PGlite(join(dir, 'pglite'), OPTIONS);
  await db.waitReady;
  await db.query('create table if not exists t (a int, b jsonb)');
  for (let i = 0; i < 50; i++) await db.query(`insert into t select g, jsonb_build_object('x', g) from generate_series(1, 500) g`);
  clearInterval(sampler);
  peak = Math.max(peak, rssMB());
  globalThis.gc?.();
  await new Promise((r) => setTimeout(r, 300));
  globalThis.gc?.();
  const after = rssMB();
  await db.close();
  return { beforeMB: before, peakMB: peak, afterMB: after };
}

const [mode, dir] = process.argv.slice(2) as [Case | undefined, string | undefined];
if (mode && mode in CASES) {
  console.log(JSON.stringify(await measure(mode, dir!)));
} else {
  console.log('| PGlite (shared_buffers 16MB) | RSS before | peak | after open + 25,000 rows (after GC) | added |\n|---|---:|---:|---:|---:|');
  for (const which of Object.keys(CASES) as Case[]) {
    const dir = mkdtempSync(join(tmpdir(), 'mcp-pglite-'));
    try {
      if (which === 'open') await (await openDatabase({ dataDir: dir })).close(); // the gateway's first start makes it in a child
      const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', import.meta.filename, which, dir], { encoding: 'utf8' });
      const r = JSON.parse(out.trim().split('\n').pop()!) as { beforeMB: number; peakMB: number; afterMB: number };
      console.log(`| ${CASES[which]} | ${r.beforeMB} MB | ${r.peakMB} MB | ${r.afterMB} MB | ${r.afterMB - r.beforeMB} MB |`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
