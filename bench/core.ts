/**
 * Gateway core benchmark: cold start to ready on PGlite and PostgreSQL, and throughput / p99
 * of the nested models query over 100 models (2 versions × 2 instances each).
 *
 *   npx tsx bench/core.ts                  # PGlite only
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/core.ts
 *
 * The gateway runs as its own process (the CLI, as a user starts it); load comes from
 * autocannon in this process.
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

interface Started {
  child: ChildProcess;
  url: string;
  readyMs: number;
}

async function startGateway(cwd: string, env: Record<string, string>): Promise<Started> {
  const port = await freeLoopbackPort();
  const url = `http://127.0.0.1:${port}`;
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(ROOT, 'dist/src/main.js'), 'start'], {
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

async function benchStorage(label: string, env: () => Promise<{ env: Record<string, string>; cleanup(): Promise<void> }>) {
  const cold: number[] = [];
  const warm: number[] = [];
  let load: autocannon.Result | undefined;
  for (let run = 0; run < RUNS; run++) {
    const { env: e, cleanup } = await env();
    const dir = mkdtempSync(join(tmpdir(), 'mcp-bench-'));
    writeFileSync(join(dir, 'capibara.yaml'), `plugins:\n  - use: ${join(ROOT, 'examples/capibara-plugin-echo')}\n`);
    const first = await startGateway(dir, e);
    cold.push(first.readyMs);
    if (run === 0) {
      for (let i = 0; i < 100; i++) {
        const inst = '{ backend: "echo" }, { backend: "echo" }';
        await gql(
          first.url,
          `mutation { registerModel(input: { id: "bench-${i}", task: GENERATE, ` +
            `versions: [{ version: "v1", instances: [${inst}] }, { version: "v2", instances: [${inst}] }] }) { id } }`,
        );
      }
    }
    await stop(first);
    const second = await startGateway(dir, e);
    warm.push(second.readyMs);
    if (run === 0) {
      await gql(second.url, NESTED);
      load = await autocannon({
        url: `${second.url}/graphql`,
        method: 'POST',
        connections: 8,
        duration: DURATION,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: NESTED }),
      });
    }
    await stop(second);
    await cleanup();
  }
  return {
    label,
    cold: median(cold),
    warm: median(warm),
    rps: load!.requests.average,
    p50: load!.latency.p50,
    p99: load!.latency.p99,
    errors: load!.errors + load!.non2xx,
  };
}

const rows = [await benchStorage('PGlite (embedded)', async () => ({ env: { DATABASE_URL: '' }, cleanup: async () => {} }))];
if (process.env.DATABASE_URL) {
  rows.push(
    await benchStorage('PostgreSQL 15 (loopback)', async () => {
      const db = await createTestDatabase();
      return { env: { DATABASE_URL: db.url }, cleanup: () => db.drop() };
    }),
  );
}

console.log(`\nnode ${process.version}, ${RUNS} runs (median), nested query: ${DURATION} s at 8 connections, 100 models × 2 versions × 2 instances\n`);
console.log('| storage | cold start to ready (new data) | start to ready (existing data, 100 models) | nested query req/s | p50 ms | p99 ms | errors |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.label} | ${(r.cold / 1000).toFixed(2)} s | ${(r.warm / 1000).toFixed(2)} s | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.errors} |`);
}
