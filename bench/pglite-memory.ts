/**
 * RSS that the embedded database (PGlite, with the gateway's shared_buffers=16MB) adds to a Node
 * process, after opening it and 50 bulk inserts of 500 rows. Each case runs in a fresh process:
 *
 *   in memory             – `storage.inMemory` (tests): initdb in the process, the files in its heap
 *   create folder here    – a new data folder made in the process itself (initdb in the process)
 *   open existing folder  – what the gateway does: the folder is made by a short-lived child process
 *                           on first start (src/db/client.ts), the gateway only opens it
 *
 * Then the gateway's own database handle (openDatabase) under a query loop for LOAD_SECONDS, with
 * `storage.pgliteOptimize` off (PGlite on V8's baseline tier, the default) and on, alternated over
 * ROUNDS fresh processes: queries/s and RSS at the end.
 *
 *   npx tsx bench/pglite-memory.ts [--seconds 20] [--rounds 2]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { openDatabase } from '../src/db/client.ts';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { seconds: { type: 'string', default: '20' }, rounds: { type: 'string', default: '2' } },
});

const CASES = { memory: 'in memory', create: 'create folder here', open: 'open existing folder' } as const;
type Case = keyof typeof CASES;
const OPTIONS = { postgresqlconf: ['shared_buffers=16MB'] };
const rssMB = () => Math.round(process.memoryUsage().rss / 1e6);

async function measure(which: Case, dir: string): Promise<{ beforeMB: number; peakMB: number; afterMB: number }> {
  const before = rssMB();
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMB());
  }, 5);
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

/** A registry-like query mix on the gateway's handle: bulk insert, primary-key reads, jsonb updates, a range aggregate. */
async function load(optimize: boolean, dir: string, seconds: number): Promise<{ qps: number; rssMB: number }> {
  const db = await openDatabase({ dataDir: dir, pgliteOptimize: optimize });
  await db.db.execute(sql.raw('create table if not exists t (id serial primary key, a text, b int, c jsonb)'));
  await db.db.execute(sql.raw('create index if not exists t_b on t(b)'));
  const rows = (k: number) =>
    JSON.stringify(Array.from({ length: 50 }, (_, i) => ({ a: `row-${k}-${i}`, b: (k * 50 + i) % 1000, c: { k, i, tags: ['x', 'y'] } })));
  let n = 0;
  let queries = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await db.db.execute(sql`insert into t(a, b, c) select * from jsonb_to_recordset(${rows(n)}::jsonb) as x(a text, b int, c jsonb)`);
    n++;
    for (let j = 0; j < 10; j++) await db.db.execute(sql`select id, a, b, c from t where id = ${1 + ((n * 7919 + j * 104729) % (n * 50))}`);
    for (let j = 0; j < 3; j++)
      await db.db.execute(sql`update t set b = b + 1, c = jsonb_set(c, '{k}', to_jsonb(${j}::int)) where id = ${1 + ((n * 31 + j) % (n * 50))}`);
    await db.db.execute(sql`select count(*), max(b) from t where b between ${n % 1000} and ${(n % 1000) + 20}`);
    queries += 15;
  }
  const rss = rssMB();
  await db.close();
  return { qps: queries / seconds, rssMB: rss };
}

const [mode, dir, extra] = positionals as [string | undefined, string | undefined, string | undefined];
if (mode && mode in CASES) {
  console.log(JSON.stringify(await measure(mode as Case, dir!)));
} else if (mode === 'load') {
  console.log(JSON.stringify(await load(extra === 'optimize', dir!, Number(args.seconds))));
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
  const seconds = Number(args.seconds);
  const results: Record<'baseline' | 'optimize', Array<{ qps: number; rssMB: number }>> = { baseline: [], optimize: [] };
  for (let round = 0; round < Number(args.rounds); round++) {
    for (const which of ['baseline', 'optimize'] as const) {
      const dir = mkdtempSync(join(tmpdir(), 'mcp-pglite-'));
      try {
        await (await openDatabase({ dataDir: dir })).close();
        const out = execFileSync(process.execPath, ['--import', 'tsx', import.meta.filename, 'load', dir, which, `--seconds=${seconds}`], { encoding: 'utf8' });
        results[which].push(JSON.parse(out.trim().split('\n').pop()!) as { qps: number; rssMB: number });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  console.log(`\n| gateway handle, ${seconds} s query loop (median of ${args.rounds}) | queries/s | RSS at the end |\n|---|---:|---:|`);
  for (const which of ['baseline', 'optimize'] as const) {
    const label = which === 'baseline' ? 'storage.pgliteOptimize: false (default, baseline tier)' : 'storage.pgliteOptimize: true (V8 optimises PGlite)';
    console.log(
      `| ${label} | ${Math.round(median(results[which].map((r) => r.qps))).toLocaleString('en-US')} | ${median(results[which].map((r) => r.rssMB))} MB |`,
    );
  }
}
