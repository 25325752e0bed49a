/**
 * Gateway core benchmark: cold start to ready on PGlite and PostgreSQL, and throughput / p99
 * of the nested models query over 100 models (2 versions × 2 instances each).
 *
 *   npm run build && npx tsx bench/core.ts                  # PGlite only
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/core.ts
 *   BENCH_BEFORE=/path/to/older/checkout npx tsx bench/core.ts   # side by side with another build
 *   BENCH_JIT=compare npx tsx bench/core.ts                  # and with graphql-jit off (server.graphql.jit)
 *
 * The gateway runs as its own process (the CLI, as a user starts it, from dist/); load comes from
 * autocannon in this process. With BENCH_BEFORE (a checkout of an earlier commit, built, with
 * node_modules), both builds run in the same process, and the load rounds alternate between them
 * (BENCH_ROUNDS rounds of BENCH_SECONDS each; medians), so both see the same machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { createTestDatabase } from '../src/testing/gateway.ts';
import { freeLoopbackPort } from '../src/testing/loopback-server.ts';

const ROOT = join(import.meta.dirname, '..');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const DURATION = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BUILDS: Array<{ name: string; root: string; env?: Record<string, string> }> = [
  ...(process.env.BENCH_BEFORE ? [{ name: 'before', root: process.env.BENCH_BEFORE }] : []),
  // BENCH_JIT=compare: this build also with server.graphql.jit off (graphql-js executes every query).
  ...(process.env.BENCH_JIT === 'compare' ? [{ name: 'graphql-js', root: ROOT, env: { MCP_SERVER__GRAPHQL__JIT: 'false' } }] : []),
  { name: process.env.BENCH_BEFORE ? 'after' : 'this build', root: ROOT },
];

interface Started {
  child: ChildProcess;
  url: string;
  readyMs: number;
}

async function startGateway(root: string, cwd: string, env: Record<string, string>): Promise<Started> {
  const port = await freeLoopbackPort();
  const url = `http://127.0.0.1:${port}`;
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(root, 'dist/src/main.js'), 'start'], {
    cwd,
    // Auth off (loopback only): this bench measures start-up and the inference path, not sign-in.
    env: { ...process.env, PORT: String(port), LOG_LEVEL: 'warn', MCP_LOG__ACCESS: 'false', MCP_AUTH__ENABLED: 'false', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let exited: number | null | undefined;
  child.once('exit', (c) => {
    exited = c;
  });
  // Ready = /readyz answers 200 (storage and plugins up, demo model loaded).
  for (;;) {
    if (exited !== undefined) throw new Error(`gateway exited with ${exited}`);
    if (performance.now() - t0 > 60_000) throw new Error('gateway not ready within 60 s');
    const r = await fetch(`${url}/readyz`).catch(() => undefined);
    if (r?.status === 200) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  return { child, url, readyMs: performance.now() - t0 };
}

async function stop(g: Started): Promise<void> {
  await new Promise<void>((resolve) => {
    g.child.once('exit', () => resolve());
    g.child.kill('SIGTERM');
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function gql(url: string, query: string): Promise<unknown> {
  const r = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query }) });
  const body = (await r.json()) as { errors?: unknown };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body;
}

const NESTED = '{ models(first: 100) { nodes { id status versions { version instances { id status health } } } } }';

async function load(url: string): Promise<autocannon.Result> {
  return autocannon({
    url: `${url}/graphql`,
    method: 'POST',
    connections: 8,
    duration: DURATION,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: NESTED }),
  });
}

async function registerModels(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const inst = '{ backend: "echo" }, { backend: "echo" }';
    await gql(
      url,
      `mutation { registerModel(input: { id: "bench-${i}", task: GENERATE, ` +
        `versions: [{ version: "v1", instances: [${inst}] }, { version: "v2", instances: [${inst}] }] }) { id } }`,
    );
  }
}

type Env = () => Promise<{ env: Record<string, string>; cleanup(): Promise<void> }>;

/** Cold start (new data) and start with 100 models, median of RUNS, for one build. */
async function startTimes(root: string, env: Env): Promise<{ cold: number; warm: number }> {
  const cold: number[] = [];
  const warm: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const { env: e, cleanup } = await env();
    const dir = mkdtempSync(join(tmpdir(), 'mcp-bench-'));
    writeFileSync(join(dir, 'capibara.yaml'), `plugins:\n  - use: ${join(ROOT, 'examples/capibara-plugin-echo')}\n`);
    const first = await startGateway(root, dir, e);
    cold.push(first.readyMs);
    await registerModels(first.url);
    await stop(first);
    const second = await startGateway(root, dir, e);
    warm.push(second.readyMs);
    await stop(second);
    await cleanup();
  }
  return { cold: median(cold), warm: median(warm) };
}

/** The storage's environment plus a build's own settings. */
function withEnv(env: Env, extra: Record<string, string> = {}): Env {
  return async () => {
    const r = await env();
    return { env: { ...r.env, ...extra }, cleanup: r.cleanup };
  };
}

async function benchStorage(label: string, env: Env) {
  const times: Array<{ cold: number; warm: number }> = [];
  for (const b of BUILDS) times.push(await startTimes(b.root, withEnv(env, b.env)));
  // One gateway per build, each with its own 100 models, all up at once; the load alternates between them.
  const running: Array<{ g: Started; cleanup(): Promise<void>; results: autocannon.Result[] }> = [];
  for (const b of BUILDS) {
    const { env: e, cleanup } = await withEnv(env, b.env)();
    const dir = mkdtempSync(join(tmpdir(), 'mcp-bench-'));
    writeFileSync(join(dir, 'capibara.yaml'), `plugins:\n  - use: ${join(ROOT, 'examples/capibara-plugin-echo')}\n`);
    const first = await startGateway(b.root, dir, e);
    await registerModels(first.url);
    await stop(first);
    const g = await startGateway(b.root, dir, e);
    await gql(g.url, NESTED);
    running.push({ g, cleanup, results: [] });
  }
  for (let round = 0; round < ROUNDS; round++) for (const r of running) r.results.push(await load(r.g.url));
  for (const r of running) {
    await stop(r.g);
    await r.cleanup();
  }
  return BUILDS.map((b, i) => {
    const res = running[i]!.results;
    return {
      label: BUILDS.length > 1 ? `${label}, ${b.name}` : label,
      cold: times[i]!.cold,
      warm: times[i]!.warm,
      rps: median(res.map((x) => x.requests.average)),
      p50: median(res.map((x) => x.latency.p50)),
      p99: median(res.map((x) => x.latency.p99)),
      errors: res.reduce((n, x) => n + x.errors + x.non2xx, 0),
    };
  });
}

const rows = [...(await benchStorage('PGlite (embedded)', async () => ({ env: { DATABASE_URL: '' }, cleanup: async () => {} })))];
if (process.env.DATABASE_URL) {
  rows.push(
    ...(await benchStorage('PostgreSQL (loopback)', async () => {
      const db = await createTestDatabase();
      return { env: { DATABASE_URL: db.url }, cleanup: () => db.drop() };
    })),
  );
}

console.log(
  `\nnode ${process.version}, start times: median of ${RUNS} runs; nested query: median of ${ROUNDS} rounds of ${DURATION} s at 8 connections ` +
    `(builds alternating), 100 models × 2 versions × 2 instances\n`,
);
console.log('| storage, build | cold start to ready (new data) | start to ready (existing data, 100 models) | nested query req/s | p50 ms | p99 ms | errors |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.label} | ${(r.cold / 1000).toFixed(2)} s | ${(r.warm / 1000).toFixed(2)} s | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.errors} |`);
}
if (BUILDS.length > 1) {
  for (let i = 0; i < rows.length; i += BUILDS.length) {
    const base = rows[i]!;
    for (const r of rows.slice(i + 1, i + BUILDS.length)) {
      console.log(`${r.label}: ${(r.rps / base.rps).toFixed(1)}× the req/s of ${base.label}, p99 ${base.p99} → ${r.p99} ms`);
    }
  }
}
