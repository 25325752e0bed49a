/**
 * RSS of a Node process before and after opening an in-memory PGlite (as the gateway does) and
 * running a few queries; default settings vs the gateway's shared_buffers=16MB. Each setting runs
 * in a fresh process.
 *
 *   npx tsx bench/pglite-memory.ts
 */
import { execFileSync } from 'node:child_process';
import { PGlite } from '@electric-sql/pglite';

const mode = process.argv[2];
if (mode === 'default' || mode === 'gateway') {
  const before = process.memoryUsage().rss;
  const db = new PGlite(mode === 'gateway' ? { postgresqlconf: ['shared_buffers=16MB'] } : {});
  await db.waitReady;
  await db.query('create table t (a int)');
  for (let i = 0; i < 200; i++) await db.query('insert into t values ($1)', [i]);
  console.log(JSON.stringify({ mode, beforeMB: Math.round(before / 1e6), afterMB: Math.round(process.memoryUsage().rss / 1e6) }));
  await db.close();
} else {
  console.log('| PGlite settings | RSS before | RSS after open + 200 inserts |\n|---|---:|---:|');
  for (const m of ['default', 'gateway']) {
    const out = execFileSync(process.execPath, ['--import', 'tsx', import.meta.filename, m], { encoding: 'utf8' });
    const r = JSON.parse(out.trim().split('\n').pop()!) as { mode: string; beforeMB: number; afterMB: number };
    console.log(`| ${m === 'default' ? 'default (shared_buffers 128MB)' : 'gateway (shared_buffers 16MB)'} | ${r.beforeMB} MB | ${r.afterMB} MB |`);
  }
}
