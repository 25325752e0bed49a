/**
 * Gateway overhead, side by side in one run (issue 3, Performance): every server on 127.0.0.1 in its
 * own process, an OpenAI-compatible upstream that answers at once, load from wrk (or autocannon when
 * wrk is missing) in a separate process (bench/load.ts, shared with bench/cache.ts).
 *
 *   (a) direct to the upstream                      (b) bare graphql-yoga + undici.request (the floor)
 *   (c) our GraphQL `infer`, api-key auth on        (d) our /v1/chat/completions, api-key auth on
 *       (c and d: the compiled CLI, built first unless --no-build, as deployed)
 *   (e) Portkey AI gateway 1.15.2 (installed into bench/.out/portkey on first run)
 *   (f) bare node:http + undici.request proxy (the floor of the OpenAI path)
 *   (g) our GraphQL `infer` through Yoga's HTTP layer: the request of (c) with an Accept header
 *       the direct JSON-POST path leaves to Yoga (src/graphql/json-post.ts), same gateway as (c)
 *   (h) our GraphQL `infer`, secured     (i) our /v1/chat/completions, secured: a second gateway with
 *       auth (password + api-key strategies), RBAC (a `developer` key limited to the model), a rate
 *       limit per key (memory store, high enough never to refuse) and inference audit (`buffered`);
 *       (c)/(d) run api-key only (an admin key, no limit rule, no inference audit)
 *   (j) (i) with the rate limit in Redis (REDIS_URL or redis://127.0.0.1:6379), a third gateway
 *
 * Per target: req/s, CPU µs per request of the process in the middle (/proc/<pid>/stat utime+stime
 * over the run), req/s per core (1e6 / CPU µs), p50/p99 under load, p50 at concurrency 1 (sequential
 * requests on one keep-alive connection) and the p50 it adds over direct, and the RSS of the middle
 * process under load. Medians of RUNS runs, interleaved.
 *
 *   npx tsx bench/overhead.ts [--duration=6] [--runs=3] [--connections=32] [--no-portkey] [--only=c,d] [--profile] [--no-recording] [--no-build]
 *     [--side-by-side=c:h,d:i]
 *   (GATEWAY_NODE_ARGS="--flag …" passes node/V8 flags to our gateway)
 *
 * Our gateway runs as shipped, per-inference records (router.recording) included; --no-recording turns
 * them off (with the embedded PGlite that database work runs inside the gateway process).
 * --profile runs our gateway under `node --cpu-prof` (profiles in bench/.out/prof).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateApiKey } from '../plugins/auth-api-key/index.ts';
import { createTestDatabase } from '../src/testing/gateway.ts';
import { freeLoopbackPort } from '../src/testing/loopback-server.ts';
import { REDIS_URL } from '../test/support/redis.ts';
import { arg, children, HAS_WRK, latencyC1, load, median, OUT, ROOT, startNode, type LoadTarget } from './load.ts';

const DURATION = Number(arg('duration', '6'));
const RUNS = Number(arg('runs', '3'));
const CONNECTIONS = Number(arg('connections', '32'));
const C1_REQUESTS = Number(arg('c1', '2000'));
const ONLY = arg('only', 'a,b,c,d,e,f,h,i,j').split(','); // (g) runs when asked for: --only=a,c,g
/**
 * --side-by-side=c:h,d:i (or i:e, to set a target beside Portkey) loads the two targets of each pair AT THE SAME TIME (a wrk each), so both
 * see the same machine (its load, its CPU speed at that moment); the sequential runs of one target vary by up
 * to 1.5× on a shared 2-core machine, more than the 10% the secured targets compare. The pair's ratio is
 * taken within each run (median of runs).
 */
const SIDE_BY_SIDE = arg('side-by-side', '')
  .split(',')
  .filter(Boolean)
  .map((p) => p.split(':') as [string, string]);
const PORTKEY = !process.argv.includes('--no-portkey') && ONLY.includes('e');
const PROFILE = process.argv.includes('--profile');
const RECORDING = !process.argv.includes('--no-recording');
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
/** The auth, plugin, limit and audit settings of a bench profile. */
function profileConfig(profile: GatewayProfile, keySha256: string): Record<string, unknown> {
  const base = [{ use: 'openai' }, { use: 'p2c-ewma' }];
  if (profile === 'api-key') {
    return {
      auth: { strategies: ['api-key'] },
      audit: { inference: 'off' },
      plugins: [...base, { use: 'api-key', options: { keys: [{ id: 'bench', sha256: keySha256, roles: ['admin'] }] } }],
    };
  }
  const redis = profile === 'secured-redis';
  return {
    auth: { strategies: ['password', 'api-key'] },
    audit: { inference: 'buffered' },
    limits: {
      ...(redis ? { store: 'ratelimit-redis' } : {}),
      rules: [{ name: 'per-key', scope: 'apiKey', requests: 100_000_000, period: '1m' }],
    },
    plugins: [
      ...base,
      { use: 'password' },
      { use: 'api-key', options: { keys: [{ id: 'bench', sha256: keySha256, roles: ['developer'], models: ['chat-model'] }] } },
      ...(redis ? [{ use: 'ratelimit-redis', options: { url: REDIS_URL, keyPrefix: `bench-${process.pid}:` } }] : []),
    ],
  };
}

/**
 * Our gateway as users deploy it: the compiled CLI (`npm run build`, then `node dist/src/main.js start`) with
 * a config file, shipped defaults (access log on, health probes on, inference records on, PGlite in
 * a data folder) except no demo model and only the plugins it needs. Profiles: `api-key` (an admin API key is
 * the only strategy; no limit rule; no inference audit), `secured` (password + api-key strategies, a developer
 * key limited to the model, a per-key request limit, inference audit buffered), `secured-redis` (the same
 * with the limit in Redis).
 */
type GatewayProfile = 'api-key' | 'secured' | 'secured-redis';
let built = false;
async function startGateway(o: {
  upstreamV1: string;
  keySha256: string;
  databaseUrl?: string;
  profile: GatewayProfile;
}): Promise<{ child: ChildProcess; port: number }> {
  if (!built && !process.argv.includes('--no-build')) execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'inherit' });
  built = true;
  const dataDir = join(OUT, `gateway-data-${o.profile}`);
  rmSync(dataDir, { recursive: true, force: true });
  cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
  const config = {
    server: { host: '127.0.0.1', playground: false },
    // DATABASE_URL set: PostgreSQL (as in production); otherwise the embedded PGlite in a data folder, as shipped.
    storage: o.databaseUrl ? { url: o.databaseUrl } : { dataDir },
    demo: { enabled: false },
    log: { level: 'info' },
    router: { recording: { enabled: RECORDING } },
    defaultPlugins: false,
    ...profileConfig(o.profile, o.keySha256),
    models: [
      {
        id: 'chat-model',
        task: 'chat',
        defaultVersion: 'v1',
        versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: o.upstreamV1, options: { model: 'fake-model' } }] }],
      },
    ],
  };
  const file = join(OUT, `gateway-${o.profile}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  const port = await freeLoopbackPort();
  // The secured profile's first start creates the admin user: a fixed password keeps the terminal quiet.
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', PORT: String(port), MCP_ADMIN_PASSWORD: 'bench-admin-password' };
  delete env.DATABASE_URL;
  // Logs go to stdout, which goes to /dev/null: the cost of writing them is measured.
  const nodeArgs = (process.env.GATEWAY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(
    process.execPath,
    [...nodeArgs, ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${join(OUT, 'prof')}`] : []), join(ROOT, 'dist/src/main.js'), 'start', '--config', file],
    {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  children.push(child);
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}`);
    if (
      await fetch(`http://127.0.0.1:${port}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return { child, port };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the gateway did not get ready in 30 s');
}

async function startPortkey(): Promise<{ child: ChildProcess; port: number }> {
  const dir = join(OUT, 'portkey');
  const entry = join(dir, 'node_modules/@portkey-ai/gateway/build/start-server.js');
  if (!existsSync(entry)) {
    mkdirSync(dir, { recursive: true });
    if (!existsSync(join(dir, 'package.json'))) writeFileSync(join(dir, 'package.json'), '{"name":"portkey-bench","private":true}\n');
    console.error('installing @portkey-ai/gateway@1.15.2 into bench/.out/portkey …');
    execFileSync('npm', ['i', '--no-save', '--no-audit', '--no-fund', '@portkey-ai/gateway@1.15.2'], { cwd: dir, stdio: 'ignore' });
  }
  const port = await freeLoopbackPort();
  const child = spawn(process.execPath, ['--import', join(ROOT, 'bench/overhead/loopback.mjs'), entry, `--port=${port}`, '--headless'], {
    cwd: dir,
    env: { ...process.env, NODE_ENV: 'production' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/`).then(
      () => true,
      () => false,
    );
    if (ok) return { child, port };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('Portkey did not start');
}

interface Target extends LoadTarget {
  pid: number;
  expect: string;
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
}
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

async function check(t: Target): Promise<void> {
  const r = await fetch(t.url, { method: 'POST', headers: { 'content-type': 'application/json', ...t.headers }, body: t.body });
  const text = await r.text();
  if (r.status !== 200 || !text.includes(t.expect)) throw new Error(`${t.label}: sanity request failed: ${r.status} ${text.slice(0, 300)}`);
}

async function main(): Promise<void> {
  const { key, sha256 } = generateApiKey();
  const upstream = await startNode('bench/overhead/upstream.ts');
  const upstreamV1 = `http://127.0.0.1:${upstream.port}/v1`;
  const chatBody = (model: string) => JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] });
  const targets: Target[] = [];
  if (ONLY.includes('a'))
    targets.push({
      key: 'a',
      label: '(a) direct to upstream',
      pid: upstream.child.pid!,
      url: `${upstreamV1}/chat/completions`,
      headers: {},
      body: chatBody('fake-model'),
      expect: 'Hello, world!',
    });
  if (ONLY.includes('b')) {
    const floor = await startNode('bench/overhead/floor.ts', { UPSTREAM_URL: upstreamV1 });
    targets.push({
      key: 'b',
      label: '(b) graphql-yoga + undici.request (floor)',
      pid: floor.child.pid!,
      url: `http://127.0.0.1:${floor.port}/graphql`,
      headers: {},
      body: JSON.stringify({ query: 'mutation { infer(model: "fake-model", prompt: "hi") { text } }' }),
      expect: 'Hello, world!',
    });
  }
  if (ONLY.includes('f')) {
    const proxy = await startNode('bench/overhead/proxy-floor.ts', { UPSTREAM_URL: upstreamV1 });
    targets.push({
      key: 'f',
      label: '(f) node:http + undici.request proxy (floor)',
      pid: proxy.child.pid!,
      url: `http://127.0.0.1:${proxy.port}/v1/chat/completions`,
      headers: {},
      body: chatBody('fake-model'),
      expect: 'Hello, world!',
    });
  }
  if (ONLY.includes('c') || ONLY.includes('d') || ONLY.includes('g')) {
    // With DATABASE_URL: a throwaway database, so the seeded model points at this run's upstream.
    const db = process.env.DATABASE_URL ? await createTestDatabase() : undefined;
    if (db) cleanups.push(() => db.drop());
    const gw = await startGateway({ upstreamV1, keySha256: sha256, databaseUrl: db?.url, profile: 'api-key' });
    const auth = { authorization: `Bearer ${key}` };
    const inferBody = JSON.stringify({ query: 'mutation { infer(model: "chat-model", input: { messages: [{ role: "user", content: "hi" }] }) { text } }' });
    if (ONLY.includes('c'))
      targets.push({
        key: 'c',
        label: '(c) capibara GraphQL infer, api-key only',
        pid: gw.child.pid!,
        url: `http://127.0.0.1:${gw.port}/graphql`,
        headers: auth,
        body: inferBody,
        expect: 'Hello, world!',
      });
    if (ONLY.includes('g'))
      targets.push({
        key: 'g',
        label: "(g) capibara GraphQL infer via Yoga's HTTP layer, api-key on",
        pid: gw.child.pid!,
        url: `http://127.0.0.1:${gw.port}/graphql`,
        headers: { ...auth, accept: 'application/json, text/plain;q=0.1' },
        body: inferBody,
        expect: 'Hello, world!',
      });
    if (ONLY.includes('d'))
      targets.push({
        key: 'd',
        label: '(d) capibara /v1/chat/completions, api-key only',
        pid: gw.child.pid!,
        url: `http://127.0.0.1:${gw.port}/v1/chat/completions`,
        headers: auth,
        body: chatBody('chat-model'),
        expect: 'Hello, world!',
      });
  }
  const securedTargets: Array<[GatewayProfile, 'h' | 'i' | 'j', 'graphql' | 'openai']> = [
    ['secured', 'h', 'graphql'],
    ['secured', 'i', 'openai'],
    ['secured-redis', 'j', 'openai'],
  ];
  const securedGateways = new Map<GatewayProfile, { child: ChildProcess; port: number }>();
  for (const [profile, k, api] of securedTargets) {
    if (!ONLY.includes(k)) continue;
    let gw = securedGateways.get(profile);
    if (!gw) {
      const db = process.env.DATABASE_URL ? await createTestDatabase() : undefined;
      if (db) cleanups.push(() => db.drop());
      gw = await startGateway({ upstreamV1, keySha256: sha256, databaseUrl: db?.url, profile });
      securedGateways.set(profile, gw);
    }
    const headers = { authorization: `Bearer ${key}` };
    const what = profile === 'secured-redis' ? 'secured, limit in Redis' : 'secured';
    targets.push(
      api === 'graphql'
        ? {
            key: k,
            label: `(${k}) capibara GraphQL infer, ${what}`,
            pid: gw.child.pid!,
            url: `http://127.0.0.1:${gw.port}/graphql`,
            headers,
            body: JSON.stringify({ query: 'mutation { infer(model: "chat-model", input: { messages: [{ role: "user", content: "hi" }] }) { text } }' }),
            expect: 'Hello, world!',
          }
        : {
            key: k,
            label: `(${k}) capibara /v1/chat/completions, ${what}`,
            pid: gw.child.pid!,
            url: `http://127.0.0.1:${gw.port}/v1/chat/completions`,
            headers,
            body: chatBody('chat-model'),
            expect: 'Hello, world!',
          },
    );
  }
  if (PORTKEY) {
    const pk = await startPortkey();
    targets.push({
      key: 'e',
      label: '(e) Portkey gateway 1.15.2',
      pid: pk.child.pid!,
      url: `http://127.0.0.1:${pk.port}/v1/chat/completions`,
      headers: { 'x-portkey-provider': 'openai', 'x-portkey-custom-host': upstreamV1, authorization: 'Bearer sk-unused' },
      body: chatBody('fake-model'),
      expect: 'Hello, world!',
    });
  }
  for (const t of targets) await check(t);

  type Row = { rps: number[]; cpuUs: number[]; p50: number[]; p99: number[]; rss: number[]; c1p50: number[]; c1p99: number[]; errors: number };
  const rows = new Map<string, Row>(targets.map((t) => [t.key, { rps: [], cpuUs: [], p50: [], p99: [], rss: [], c1p50: [], c1p99: [], errors: 0 }]));
  // Warm-up: JIT, connection pools.
  for (const t of targets) await load(t, 2, CONNECTIONS);
  /** One load of a target: its req/s, latency and the CPU µs per request of the process in the middle. */
  async function measure(t: Target): Promise<{ cpuUs: number; rss: number; r: Awaited<ReturnType<typeof load>> }> {
    const before = cpuTicks(t.pid);
    let rss = 0;
    const sampler = setInterval(() => {
      rss = Math.max(rss, rssMb(t.pid));
    }, 250);
    const r = await load(t, DURATION, CONNECTIONS);
    clearInterval(sampler);
    return { cpuUs: (((cpuTicks(t.pid) - before) / CLK_TCK) * 1e6) / Math.max(1, r.requests), rss, r };
  }
  /** Per-run CPU µs per request of the pairs loaded side by side (key → runs). */
  const paired = new Map<string, number[]>();
  const pairOf = new Map<string, string>(
    SIDE_BY_SIDE.flatMap(
      ([x, y]) =>
        [
          [x, y],
          [y, x],
        ] as Array<[string, string]>,
    ),
  );
  for (let run = 0; run < RUNS; run++) {
    const done = new Set<string>();
    for (const t of targets) {
      if (done.has(t.key)) continue;
      const mate = targets.find((u) => u.key === pairOf.get(t.key));
      const group = mate ? [t, mate] : [t];
      const results = await Promise.all(group.map(measure));
      for (const [i, u] of group.entries()) {
        const { cpuUs, rss, r } = results[i]!;
        done.add(u.key);
        if (mate) paired.set(u.key, [...(paired.get(u.key) ?? []), cpuUs]);
        const row = rows.get(u.key)!;
        row.rps.push(r.rps);
        row.cpuUs.push(cpuUs);
        row.p50.push(r.p50);
        row.p99.push(r.p99);
        row.rss.push(rss);
        row.errors += r.errors;
        const c1 = await latencyC1(u, C1_REQUESTS);
        row.c1p50.push(c1.p50);
        row.c1p99.push(c1.p99);
        console.error(
          `run ${run + 1}/${RUNS} ${u.label}${mate ? ' (side by side)' : ''}: ${r.rps.toFixed(0)} req/s, ${cpuUs.toFixed(0)} µs CPU/req, p50 ${r.p50.toFixed(2)} ms, ` +
            `c=1 p50 ${c1.p50.toFixed(3)} ms, RSS ${rss.toFixed(0)} MB${r.errors ? `, ${r.errors} errors` : ''}`,
        );
      }
    }
  }

  const direct = rows.get('a');
  const directC1 = direct ? median(direct.c1p50) : NaN;
  const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '–');
  const lines = [
    `Overhead bench — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${(await import('node:os')).cpus().length} vCPU, ` +
      `load: ${HAS_WRK ? `wrk -t1 -c${CONNECTIONS}` : `autocannon -c${CONNECTIONS}`}, ${DURATION} s × ${RUNS} runs (medians), ` +
      `c=1: ${C1_REQUESTS} sequential requests, our gateway: storage ${process.env.DATABASE_URL ? 'PostgreSQL' : 'PGlite in-process'}, ` +
      `inference recording ${RECORDING ? 'on' : 'off'}`,
    '',
    '| in the middle | req/s | CPU µs/req | req/s per core | p50 ms | p99 ms | c=1 p50 ms | added p50 ms (c=1) | RSS MB (under load) | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const perCore = new Map<string, number>();
  for (const t of targets) {
    const r = rows.get(t.key)!;
    const cpu = median(r.cpuUs);
    perCore.set(t.key, 1e6 / cpu);
    const c1 = median(r.c1p50);
    lines.push(
      `| ${t.label} | ${fmt(median(r.rps))} | ${fmt(cpu)} | ${fmt(1e6 / cpu)} | ${fmt(median(r.p50), 2)} | ${fmt(median(r.p99), 2)} | ` +
        `${fmt(c1, 3)} | ${t.key === 'a' ? '–' : fmt(c1 - directC1, 3)} | ${fmt(Math.max(...r.rss))} | ${r.errors} |`,
    );
  }
  /**
   * req/s per core of k ÷ base. Loaded side by side with each other: the median of the runs' ratios. One of them
   * loaded beside a third target (and the other alone): not comparable, NaN. Otherwise the median of the runs'
   * ratios too, each run's two figures taken minutes apart at most: the machine's speed drifts over a session
   * (one target's CPU per request moved by up to 1.4× between consecutive runs), and a run's ratio cancels the
   * part of that drift its targets share.
   */
  const relative = (k: string, base: string) => {
    const a = paired.get(k);
    const b = paired.get(base);
    if (a && b && pairOf.get(k) === base) return median(a.map((x, i) => b[i]! / x));
    if (pairOf.has(k) || pairOf.has(base)) return NaN;
    const ka = rows.get(k)?.cpuUs;
    const kb = rows.get(base)?.cpuUs;
    if (!ka || !kb) return NaN;
    return median(ka.map((x, i) => kb[i]! / x));
  };
  const ratio = (k: string) => relative(k, 'e');
  const added = (k: string) => (rows.get(k) ? median(rows.get(k)!.c1p50) - directC1 : NaN);
  const rss = (k: string) => (rows.get(k) ? Math.max(...rows.get(k)!.rss) : NaN);
  /** met / MISSED, or "not run" when a figure it needs was not measured (a target left out with --only). */
  const mark = (ok: boolean, ...figures: number[]) => (figures.some((f) => Number.isNaN(f)) ? 'not run' : ok ? 'met' : 'MISSED');
  lines.push('', "Targets (each ratio the median of the runs' own ratios):", '');
  if (PORTKEY) {
    if (SIDE_BY_SIDE.length) lines.push('- × Portkey: side by side where a target was paired with e; – where it was paired with another target');
    lines.push(`- GraphQL path req/s per core ≥ 2.5× Portkey (api-key only): ${fmt(ratio('c'), 2)}× — ${mark(ratio('c') >= 2.5, ratio('c'))}`);
    lines.push(`- OpenAI path req/s per core ≥ 4× Portkey (api-key only): ${fmt(ratio('d'), 2)}× — ${mark(ratio('d') >= 4, ratio('d'))}`);
    lines.push(`- GraphQL path secured ≥ 2.8× Portkey: ${fmt(ratio('h'), 2)}× — ${mark(ratio('h') >= 2.8, ratio('h'))}`);
    lines.push(`- OpenAI path secured ≥ 4.5× Portkey: ${fmt(ratio('i'), 2)}× — ${mark(ratio('i') >= 4.5, ratio('i'))}`);
    lines.push(`- OpenAI path secured, limit in Redis ≥ 4× Portkey: ${fmt(ratio('j'), 2)}× — ${mark(ratio('j') >= 4, ratio('j'))}`);
  }
  lines.push(
    `- added p50 at concurrency 1 ≤ 0.4 ms: GraphQL ${fmt(added('c'), 3)} ms — ${mark(added('c') <= 0.4, added('c'))}; ` +
      `OpenAI ${fmt(added('d'), 3)} ms — ${mark(added('d') <= 0.4, added('d'))}`,
  );
  // Secured vs api-key only, same run: the cost of auth + RBAC + a limit + inference audit. Side by side: the
  // median of the per-run ratios (each run's two figures taken at the same time).
  const within = relative;
  lines.push(
    `- secured within 10% of api-key only (req/s per core${SIDE_BY_SIDE.length ? `; side by side: ${SIDE_BY_SIDE.map((p) => p.join(' with ')).join(', ')}, median of the runs' ratios` : ''}): GraphQL ${fmt(within('h', 'c') * 100, 1)}% — ${mark(within('h', 'c') >= 0.9, within('h', 'c'))}; ` +
      `OpenAI ${fmt(within('i', 'd') * 100, 1)}% — ${mark(within('i', 'd') >= 0.9, within('i', 'd'))}; OpenAI with Redis ${fmt(within('j', 'd') * 100, 1)}%`,
  );
  lines.push(
    `- gateway RSS under load < 300 MB: ${fmt(Math.max(rss('c'), rss('d')))} MB — ${mark(Math.max(rss('c'), rss('d')) < 300, Math.max(rss('c'), rss('d')))}`,
  );
  console.log(lines.join('\n'));
  writeFileSync(join(OUT, 'overhead.md'), `${lines.join('\n')}\n`);
}

const cleanups: Array<() => Promise<void>> = [];

main().then(
  async () => {
    for (const c of children)
      if (c.connected) c.disconnect();
      else c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    for (const fn of cleanups) await fn().catch(() => {});
    process.exit(0);
  },
  async (err) => {
    console.error(err);
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const fn of cleanups) await fn().catch(() => {});
    process.exit(1);
  },
);
