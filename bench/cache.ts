/**
 * Response cache (issue 13): a cache hit next to the uncached OpenAI path, in the same run, through
 * the same gateway process. Every server on 127.0.0.1 in its own process: the fake OpenAI upstream
 * (answers at once, bench/overhead/upstream.ts), one gateway (`capibara-mcp start` from the sources,
 * PGlite in memory, auth off, memory cache store), load from wrk in a separate process (the upstream,
 * the load and the c=1 latency from bench/load.ts, shared with bench/overhead.ts).
 *
 *   (a) direct to the upstream
 *   (b) /v1/chat/completions on a model without a cache (the uncached OpenAI path)
 *   (c) /v1/chat/completions on a model with the cache on, temperature 0, the same body every time: hits
 *   (d) as (c) with `cache-control: no-cache`: the cached model's path when it computes (bypass + store)
 *
 * Per target: req/s, p50/p99 under load (wrk, CONNECTIONS connections), p50 at concurrency 1 and what
 * it adds over direct. Medians of RUNS runs, targets interleaved.
 *
 *   npx tsx --conditions=capibara-source bench/cache.ts [--duration=5] [--runs=3] [--connections=32]  [--c1=2000] [--no-recording]
 *
 * The gateway runs as shipped, per-inference records (router.recording, written to the embedded PGlite in the
 * gateway process) included, for hits too; --no-recording turns them off.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { arg, children, latencyC1, load, median, OUT, ROOT, startNode, type LoadTarget } from './load.ts';

const DURATION = Number(arg('duration', '5'));
const RUNS = Number(arg('runs', '3'));
const CONNECTIONS = Number(arg('connections', '32'));
const C1 = Number(arg('c1', '2000'));
const RECORDING = !process.argv.includes('--no-recording');

async function startGateway(upstream: string): Promise<string> {
  const inst = { backend: 'openai', endpoint: upstream, options: { model: 'fake-model' } };
  const config = {
    server: { host: '127.0.0.1', port: 0 },
    storage: { inMemory: true, dataDir: join(OUT, 'cache-gw') },
    demo: { enabled: false },
    log: { level: 'info', access: false },
    defaultPlugins: false,
    auth: { enabled: false },
    plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }],
    router: { healthCheck: { enabled: false }, recording: { enabled: RECORDING } },
    models: ['plain', 'cached'].map((id) => ({ id, task: 'chat', defaultVersion: 'v1', versions: [{ version: 'v1', instances: [inst] }] })),
  };
  const file = join(OUT, 'cache-gw.json');
  writeFileSync(file, JSON.stringify(config));
  const child = spawn(process.execPath, [join(ROOT, 'bin/capibara-mcp.js'), 'start', '--config', file], {
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production', MCP_CONFIG: '', DATABASE_URL: '', PORT: '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  let out = '';
  const url = await new Promise<string>((res, rej) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"url":"(http:[^"]+)".*"msg":"gateway ready"/.exec(out);
      if (m) res(m[1]!);
    });
    child.once('exit', (code) => rej(new Error(`gateway exited ${code}: ${out}`)));
  });
  child.stdout!.resume();
  const r = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: 'mutation { setModelCache(model: "cached", input: { enabled: true, ttlMs: 3600000 }) { id } }' }),
  });
  const body = (await r.json()) as { errors?: unknown };
  if (body.errors) throw new Error(`setModelCache failed: ${JSON.stringify(body.errors)}`);
  return url;
}

const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });

const upstream = `http://127.0.0.1:${(await startNode('bench/overhead/upstream.ts')).port}/v1`;
const gw = await startGateway(upstream);
const body = (model: string) => JSON.stringify({ model, temperature: 0, max_tokens: 16, messages: [{ role: 'user', content: 'What does a capybara eat?' }] });
const targets: LoadTarget[] = [
  { key: 'a', label: '(a) direct to the upstream', url: `${upstream}/chat/completions`, body: body('fake-model'), headers: {} },
  { key: 'b', label: '(b) OpenAI path, no cache', url: `${gw}/v1/chat/completions`, body: body('plain'), headers: {} },
  { key: 'c', label: '(c) OpenAI path, cache hit', url: `${gw}/v1/chat/completions`, body: body('cached'), headers: {} },
  {
    key: 'd',
    label: '(d) cached model, cache-control: no-cache',
    url: `${gw}/v1/chat/completions`,
    body: body('cached'),
    headers: { 'cache-control': 'no-cache' },
  },
];
// The hit target really hits.
for (let i = 0; i < 2; i++) {
  const r = await fetch(targets[2]!.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: targets[2]!.body });
  await r.text();
  if (i === 1 && r.headers.get('x-mcp-cache') !== 'hit') throw new Error(`expected a hit, got ${r.headers.get('x-mcp-cache')}`);
}

const rows = new Map(targets.map((t) => [t.key, { rps: [] as number[], p50: [] as number[], p99: [] as number[], c1: [] as number[], errors: 0 }]));
for (let run = 0; run < RUNS; run++) {
  for (const t of targets) {
    const r = await load(t, DURATION, CONNECTIONS);
    const c1 = (await latencyC1(t, C1)).p50;
    const row = rows.get(t.key)!;
    row.rps.push(r.rps);
    row.p50.push(r.p50);
    row.p99.push(r.p99);
    row.c1.push(c1);
    row.errors += r.errors;
    console.error(`run ${run + 1}/${RUNS} ${t.label}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, c=1 p50 ${c1.toFixed(3)} ms`);
  }
}
const direct = median(rows.get('a')!.c1);
const uncached = rows.get('b')!;
console.log(`inference recording ${RECORDING ? 'on' : 'off'}, ${CONNECTIONS} connections, ${DURATION} s × ${RUNS} runs`);
console.log(`| target | req/s | vs (b) | p50 ms | p99 ms | c=1 p50 ms | added p50 ms over direct (c=1) | errors |`);
console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
for (const t of targets) {
  const r = rows.get(t.key)!;
  const c1 = median(r.c1);
  console.log(
    `| ${t.label} | ${fmt(median(r.rps))} | ${(median(r.rps) / median(uncached.rps)).toFixed(2)}× | ${fmt(median(r.p50), 2)} | ${fmt(median(r.p99), 2)} | ` +
      `${fmt(c1, 3)} | ${t.key === 'a' ? '—' : fmt(c1 - direct, 3)} | ${r.errors} |`,
  );
}
process.exit(0);
