/**
 * What inference tracing costs, side by side in one run: the same gateway (own process, PGlite in
 * memory, auth off, inference recording off, /v1/chat/completions to a fake OpenAI upstream that
 * answers at once) with
 *
 *   off      tracing.enabled false (the default: no tracer provider, no span, the SDK not loaded)
 *   on, 0    tracing on, sampleRatio 0: every span is a non-recording one, traceparent still sent upstream
 *   on, 1    tracing on, sampleRatio 1: 5 spans per request (entry, auth, route, attempt, backend
 *            call) recorded and exported over OTLP/HTTP (JSON) to a receiver on loopback that drops them
 *   absent   with --baseline=DIR: the same gateway from another checkout (e.g. `git archive` of the
 *            commit before tracing, its node_modules linked): the code path does not exist there
 *   --aa     a second, identical `off` gateway: how far two equal targets drift apart on this machine
 *
 * Load: undici with CONNECTIONS keep-alive connections from this process; the upstream and the
 * OTLP receiver run here too. Per gateway: req/s and the CPU µs per request of the gateway process
 * (/proc/<pid>/stat utime+stime over the run). Runs interleaved (off, on 0, on 1, off, …); medians.
 *
 *   npx tsx --conditions=capibara-source bench/tracing-cost.ts [--duration=5] [--runs=5] [--connections=16] [--baseline=DIR] [--aa]
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { startFakeOpenAI } from '../src/testing/fake-openai-server.ts';
import { listenOnLoopback } from '../src/testing/loopback-server.ts';

const arg = (name: string, dflt: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;
const DURATION_MS = Number(arg('duration', '5')) * 1000;
const RUNS = Number(arg('runs', '5'));
const CONNECTIONS = Number(arg('connections', '16'));
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** CPU seconds (user + system) of a process so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

interface Target {
  name: string;
  child: ChildProcess;
  url: string;
  rps: number[];
  cpuUs: number[];
}

async function startGateway(name: string, upstream: string, tracing: Record<string, unknown>, checkout?: string): Promise<Target> {
  const args = [upstream, JSON.stringify(tracing), ...(checkout ? [checkout] : [])];
  const child = fork(fileURLToPath(new URL('./tracing/gateway.ts', import.meta.url)), args, {
    execArgv: ['--import', 'tsx', '--conditions=capibara-source'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { url: string }).url));
    child.once('exit', (code) => reject(new Error(`gateway ${name} exited (${code})`)));
  });
  return { name, child, url, rps: [], cpuUs: [] };
}

const BODY = JSON.stringify({ model: 'chatty', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 });

/** Requests on `connections` lanes for `ms`; the number answered 200. */
async function load(pool: Pool, ms: number, connections: number): Promise<number> {
  const end = Date.now() + ms;
  let ok = 0;
  const lane = async () => {
    while (Date.now() < end) {
      const r = await pool.request({ method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: BODY });
      await r.body.dump();
      if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`);
      ok++;
    }
  };
  await Promise.all(Array.from({ length: connections }, lane));
  return ok;
}

async function main() {
  const up = await startFakeOpenAI({ models: ['fake-model'], tokens: ['Hello', ',', ' world', '!'] });
  let exported = 0;
  const otlp = await listenOnLoopback((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      exported++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  const endpoint = `${otlp.origin}/v1/traces`;
  const baseline = arg('baseline', '');
  const targets = [
    await startGateway('off', up.url, {}),
    ...(baseline ? [await startGateway('absent (baseline checkout)', up.url, {}, baseline)] : []),
    ...(process.argv.includes('--aa') ? [await startGateway('off, a second copy (the noise floor)', up.url, {})] : []),
    await startGateway('on, sampleRatio 0', up.url, { enabled: true, sampleRatio: 0, otlp: { endpoint } }),
    await startGateway('on, sampleRatio 1', up.url, { enabled: true, sampleRatio: 1, otlp: { endpoint } }),
  ];
  const pools = targets.map((t) => new Pool(t.url, { connections: CONNECTIONS, pipelining: 1 }));
  // Warm-up: JIT, connections, the first export.
  for (const p of pools) await load(p, 1500, CONNECTIONS);
  for (let r = 0; r < RUNS; r++) {
    for (const [i, t] of targets.entries()) {
      const c0 = cpuSeconds(t.child.pid!);
      const t0 = performance.now();
      const n = await load(pools[i]!, DURATION_MS, CONNECTIONS);
      const secs = (performance.now() - t0) / 1000;
      const cpu = cpuSeconds(t.child.pid!) - c0;
      t.rps.push(n / secs);
      t.cpuUs.push((cpu * 1e6) / n);
    }
  }
  const base = targets[0]!;
  const baseRps = median(base.rps);
  const baseCpu = median(base.cpuUs);
  console.log(
    `tracing cost: ${RUNS} interleaved runs of ${DURATION_MS / 1000} s, ${CONNECTIONS} connections, medians; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
  );
  console.log('| gateway | req/s | ratio to off | gateway CPU µs/request | ratio to off |');
  console.log('|---|---:|---:|---:|---:|');
  for (const t of targets) {
    const rps = median(t.rps);
    const cpu = median(t.cpuUs);
    console.log(`| ${t.name} | ${rps.toFixed(0)} | ${(rps / baseRps).toFixed(3)} | ${cpu.toFixed(1)} | ${(cpu / baseCpu).toFixed(3)} |`);
  }
  console.log(`OTLP export requests received: ${exported}`);
  await Promise.all(pools.map((p) => p.close()));
  for (const t of targets) t.child.disconnect();
  await up.close();
  await otlp.close();
}

await main();
