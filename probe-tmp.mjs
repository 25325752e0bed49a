import { PGlite } from '@electric-sql/pglite';
import { readFileSync } from 'node:fs';
function maps() {
  const txt = readFileSync('/proc/self/smaps', 'utf8');
  const out = []; let cur;
  for (const line of txt.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) { cur = { name: m[4] || '[anon]', perms: m[3], size: (parseInt(m[2],16)-parseInt(m[1],16))/1048576, rss: 0 }; out.push(cur); continue; }
    const r = /^Rss:\s+(\d+) kB/.exec(line); if (r && cur) cur.rss += Number(r[1])/1024;
  }
  return out.filter(o => o.rss > 3).map(o => `${o.name} ${o.perms} size=${Math.round(o.size)}MB rss=${Math.round(o.rss)}MB`);
}
const db = new PGlite(process.argv[2], { postgresqlconf: ['shared_buffers=16MB'] });
await db.waitReady;
for (let i = 0; i < 50; i++) await db.query(`insert into t select g, jsonb_build_object('x', g) from generate_series(1,500) g`);
global.gc(); await new Promise(r=>setTimeout(r,300)); global.gc();
console.log(maps().join('\n')); console.log(process.memoryUsage());
