/**
 * `metricsUpdates` fan-out: 5,000 graphql-ws subscribers at 1 Hz against one gateway (this
 * process, PGlite in memory, auth off), clients in 2 child processes (25 sockets × 100
 * subscriptions each). Delivery lag = receive time − the snapshot's tick time (`at`); gateway CPU
 * = this process's user+system time over the measured window. Two rows in one run: all
 * subscribers on one filter (one shared computation per tick) and spread over 50 distinct filters.
 * Each row runs twice in one run, on two gateways started in turn: `server.websocket.sharedWrites`
 * off (every subscriber through graphql-ws: its own result object, JSON.stringify and write) and on
 * (each snapshot serialised once per filter and written to the sockets within the tick).
 * BENCH_SHARED_WRITES=on|off runs one of them only; BENCH_ROUNDS=n repeats the off/on pair.
 *
 *   npx tsx --conditions=capibara-source bench/metrics-fanout.ts
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const SUBSCRIBERS = Number(process.env.SUBSCRIBERS ?? 5000);
const PROCESSES = 2;
const PER_SOCKET = 100;
const WARMUP_MS = 6000;
const MEASURE_MS = Number(process.env.MEASURE_MS ?? 20_000);
const METRICS = ['requests_per_second', 'error_rate', 'latency_p95_ms', 'in_flight', 'queue_depth'];
const UPDATES = 'subscription($f: MetricsFilter) { metricsUpdates(filter: $f, intervalMs: 1000) { at series { metric model version value } } }';

type Msg = { type: 'ready' } | { type: 'lags'; lags: number[]; received: number; errors: number };

async function client(): Promise<void> {
  const { url, count, distinct, offset } = JSON.parse(process.argv[3]!) as { url: string; count: number; distinct: number; offset: number };
  const lags: number[] = [];
  let measuring = false;
  let received = 0;
  let errors = 0;
  let ready = 0;
  const clients: ReturnType<typeof createClient>[] = [];
  for (let s = 0; s * PER_SOCKET < count; s++) {
    const c = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    clients.push(c);
    for (let i = s * PER_SOCKET; i < Math.min(count, (s + 1) * PER_SOCKET); i++) {
      const n = offset + i;
      const f = distinct > 1 ? { metrics: METRICS, versions: [`v${n % distinct}`, 'v1'] } : { metrics: METRICS };
      let first = true;
      c.subscribe<{ metricsUpdates: { at: number } }>(
        { query: UPDATES, variables: { f } },
        {
          next: (m) => {
            const now = Date.now();
            if (first) {
              first = false;
              if (++ready === count) process.send!({ type: 'ready' } satisfies Msg);
            }
            if (!m.data) errors++;
            else if (measuring) {
              received++;
              lags.push(now - m.data.metricsUpdates.at);
            }
          },
          error: () => errors++,
          complete: () => {},
        },
      );
    }
  }
  process.on('message', (m: { type: string }) => {
    if (m.type === 'start') measuring = true;
    if (m.type === 'stop') {
      measuring = false;
      process.send!({ type: 'lags', lags, received, errors } satisfies Msg);
      void Promise.all(clients.map((c) => c.dispose())).then(() => process.exit(0));
    }
  });
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;

async function row(url: string, distinct: number, computations: () => number): Promise<Record<string, string | number>> {
  const children: ChildProcess[] = [];
  const per = SUBSCRIBERS / PROCESSES;
  const readyAll = Promise.all(
    Array.from({ length: PROCESSES }, (_, p) => {
      const child = fork(fileURLToPath(import.meta.url), ['client', JSON.stringify({ url, count: per, distinct, offset: p * per })], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(child);
      return new Promise<void>((res) => child.once('message', () => res()));
    }),
  );
  await readyAll;
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const c0 = computations();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (const c of children) c.send({ type: 'start' });
  await new Promise((r) => setTimeout(r, MEASURE_MS));
  const results = children.map((c) => new Promise<Extract<Msg, { type: 'lags' }>>((res) => c.on('message', (m: Msg) => m.type === 'lags' && res(m))));
  for (const c of children) c.send({ type: 'stop' });
  const got = await Promise.all(results);
  const cpu = process.cpuUsage(cpu0);
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
  const lags = got.flatMap((g) => g.lags).sort((a, b) => a - b);
  return {
    filters: distinct,
    subscribers: SUBSCRIBERS,
    'snapshots delivered/s': Math.round(lags.length / seconds),
    'computations/s': Number(((computations() - c0) / seconds).toFixed(2)),
    'lag p50 ms': pct(lags, 0.5),
    'lag p99 ms': pct(lags, 0.99),
    'lag max ms': lags.at(-1) ?? NaN,
    'gateway CPU %': Number((((cpu.user + cpu.system) / 1e6 / seconds) * 100).toFixed(1)),
    errors: got.reduce((a, g) => a + g.errors, 0),
  };
}

async function main(): Promise<void> {
  const only = process.env.BENCH_SHARED_WRITES;
  if (only === 'on' || only === 'off') {
    const rows = await gateway(only === 'on');
    console.table(rows);
    if (process.send) await new Promise<void>((r) => process.send!({ type: 'rows', rows }, () => r()));
    return;
  }
  // Each gateway in a fresh process (one after the other), so neither inherits the other's heap or timers.
  const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
  const rows: Record<string, string | number>[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const mode of ['off', 'on']) {
      const child = fork(fileURLToPath(import.meta.url), [], {
        env: { ...process.env, BENCH_SHARED_WRITES: mode },
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      const got = await new Promise<Record<string, string | number>[]>((res, rej) => {
        child.on('message', (m: { type: string; rows?: Record<string, string | number>[] }) => m.type === 'rows' && res(m.rows!));
        child.once('exit', (code) => rej(new Error(`the ${mode} run exited with ${code}`)));
      });
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      rows.push(...got);
    }
  }
  console.table(rows);
}

async function gateway(sharedWrites: boolean): Promise<Record<string, string | number>[]> {
  const { startTestGateway } = await import('../src/testing/gateway.ts');
  const gw = await startTestGateway({
    plugins: [{ use: './examples/capibara-plugin-echo' }],
    server: {
      maxSocketsPerIp: 1000,
      websocket: { maxSocketsPerIp: 200, maxSocketsPerPrincipal: 200, maxSubscriptionsPerSocket: PER_SOCKET, sharedWrites },
    },
  });
  for (const id of ['alpha', 'beta', 'gamma'])
    await gw.gql(`mutation { registerModel(input: { id: "${id}", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }`);
  // Light traffic (20 requests/s) so snapshots carry moving figures.
  let stop = false;
  const traffic = (async () => {
    for (let i = 0; !stop; i++) {
      await fetch(`${gw.url}/api/v1/models/${['alpha', 'beta', 'gamma'][i % 3]}/inference`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"input":"hi"}',
      });
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const url = `${gw.url.replace('http', 'ws')}/graphql`;
  const computations = () => gw.services.liveMetrics.computations;
  const rows = [await row(url, 1, computations), await row(url, 50, computations)].map((r) => ({ sharedWrites: sharedWrites ? 'on' : 'off', ...r }));
  stop = true;
  await traffic;
  await gw.close();
  return rows;
}

if (process.argv[2] === 'client') void client();
else void main().then(() => process.exit(0));
