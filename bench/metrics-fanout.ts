/**
 * `metricsUpdates` fan-out: 5,000 graphql-ws subscribers at 1 Hz against one gateway (this
 * process, PGlite in memory, auth off), clients in 2 child processes (25 sockets × 100
 * subscriptions each). Delivery lag = receive time − the snapshot's tick time (`at`); gateway CPU
 * = this process's user+system time over the measured window. Two rows in one run: all
 * subscribers on one filter (one shared computation per tick) and spread over 50 distinct filters.
 * Each row runs twice in one run, on two gateways started in turn: `server.websocket.sharedWrites`
 * off (every subscriber through graphql-ws: its own result object, JSON.stringify and write) and on
 * (each snapshot serialised once per filter and written to the sockets within the tick).
 * BENCH_SHARED_WRITES=on|off runs one of them only; BENCH_ROUNDS=n repeats the off/on pair;
 * BENCH_ONE_FILTER=1 runs the one-filter row only (a quick check).
 *
 * BENCH_TRANSPORT=sse: the same over GraphQL over SSE (a JSON POST with `accept: text/event-stream`,
 * one HTTP connection per subscriber; 1,000 subscribers unless SUBSCRIBERS says otherwise), the
 * pair being `server.graphql.sseSharedWrites` off (Yoga's SSE: a result object, JSON.stringify and
 * web stream per subscriber) and on (each snapshot's frame serialised once per filter and written
 * to the responses within the tick). The bench raises `server.maxSocketsPerIp` and turns off
 * `server.overload.maxInflight` (every open stream counts as a request in flight).
 *
 *   npx tsx --conditions=capibara-source bench/metrics-fanout.ts
 *   BENCH_TRANSPORT=sse npx tsx --conditions=capibara-source bench/metrics-fanout.ts
 */
import { fork, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const TRANSPORT = process.env.BENCH_TRANSPORT === 'sse' ? 'sse' : 'ws';
const SUBSCRIBERS = Number(process.env.SUBSCRIBERS ?? (TRANSPORT === 'sse' ? 1000 : 5000));
const PROCESSES = 2;
const PER_SOCKET = 100;
const WARMUP_MS = 6000;
const MEASURE_MS = Number(process.env.MEASURE_MS ?? 20_000);
const METRICS = ['requests_per_second', 'error_rate', 'latency_p95_ms', 'in_flight', 'queue_depth'];
const UPDATES = 'subscription($f: MetricsFilter) { metricsUpdates(filter: $f, intervalMs: 1000) { at series { metric model version value } } }';

/** A `metricsUpdates` message as a client reads it. */
type Snapshot = { data?: { metricsUpdates: { at: number } } | null };

type Msg = { type: 'ready' } | { type: 'lags'; lags: number[]; received: number; errors: number };

const filterOf = (n: number, distinct: number) => (distinct > 1 ? { metrics: METRICS, versions: [`v${n % distinct}`, 'v1'] } : { metrics: METRICS });

async function client(): Promise<void> {
  const { url, count, distinct, offset } = JSON.parse(process.argv[3]!) as { url: string; count: number; distinct: number; offset: number };
  const lags: number[] = [];
  let measuring = false;
  let received = 0;
  let errors = 0;
  let ready = 0;
  const clients: Array<{ dispose(): unknown }> = [];
  /** One subscriber's snapshot counter: ready at its first snapshot, then its errors and, while measuring, its lags. */
  const recorder = () => {
    let first = true;
    return (m: Snapshot, now: number) => {
      if (first) {
        first = false;
        if (++ready === count) process.send!({ type: 'ready' } satisfies Msg);
      }
      if (!m.data) errors++;
      else if (measuring) {
        received++;
        lags.push(now - m.data.metricsUpdates.at);
      }
    };
  };
  if (TRANSPORT === 'sse') {
    // One HTTP connection per subscriber: a POST answered by an event stream, read frame by frame.
    const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
    const target = new URL(url);
    const logged = new Set<string>();
    /** Opens subscriber i; resolves once its answer's headers came (or it failed), retrying a failed connection a few times. */
    const open = (i: number, attempt = 0): Promise<void> =>
      new Promise((settled) => {
        const body = JSON.stringify({ query: UPDATES, variables: { f: filterOf(offset + i, distinct) } });
        const record = recorder();
        let answered = false;
        const retry = (why: string) => {
          if (!logged.has(why)) console.error(`sse client: ${why}${attempt < 10 ? ', retrying' : ''}`);
          logged.add(why);
          if (attempt < 10) setTimeout(() => void open(i, attempt + 1), 200);
          else errors++;
          settled();
        };
        const req = request(
          {
            host: target.hostname,
            port: target.port,
            path: target.pathname,
            method: 'POST',
            agent,
            headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'content-length': Buffer.byteLength(body) },
          },
          (res) => {
            answered = true;
            settled();
            if (res.statusCode !== 200) {
              res.resume();
              return retry(`status ${res.statusCode}`);
            }
            res.setEncoding('utf8');
            let buf = '';
            res.on('data', (chunk: string) => {
              const now = Date.now();
              buf += chunk;
              let end: number;
              while ((end = buf.indexOf('\n\n')) >= 0) {
                const frame = buf.slice(0, end);
                buf = buf.slice(end + 2);
                const data = frame.indexOf('data: {');
                if (data < 0) continue;
                record(JSON.parse(frame.slice(data + 6)) as Snapshot, now);
              }
            });
            res.on('error', () => undefined);
          },
        );
        req.on('error', (err) => (answered ? undefined : retry((err as NodeJS.ErrnoException).code ?? err.message)));
        req.end(body);
        clients.push({ dispose: () => req.destroy() });
      });
    // 20 connections being opened at a time (a burst of 500 overflows the listen backlog on a busy machine).
    for (let i = 0; i < count; i += 20) await Promise.all(Array.from({ length: Math.min(20, count - i) }, (_, k) => open(i + k)));
  }
  for (let s = 0; TRANSPORT === 'ws' && s * PER_SOCKET < count; s++) {
    const c = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false });
    clients.push(c);
    for (let i = s * PER_SOCKET; i < Math.min(count, (s + 1) * PER_SOCKET); i++) {
      const f = filterOf(offset + i, distinct);
      const record = recorder();
      c.subscribe<{ metricsUpdates: { at: number } }>(
        { query: UPDATES, variables: { f } },
        {
          next: (m) => record(m, Date.now()),
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
  if (process.env.BENCH_ONE_FILTER && distinct > 1) return {};
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
    transport: TRANSPORT,
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
      // SSE: one connection per subscriber, each an HTTP request in flight for as long as it reads.
      maxSocketsPerIp: TRANSPORT === 'sse' ? SUBSCRIBERS + 100 : 1000,
      ...(TRANSPORT === 'sse' ? { overload: { maxInflight: 0 } } : {}),
      websocket: { maxSocketsPerIp: 200, maxSocketsPerPrincipal: 200, maxSubscriptionsPerSocket: PER_SOCKET, sharedWrites },
      graphql: { sseSharedWrites: sharedWrites },
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
  const url = TRANSPORT === 'sse' ? `${gw.url}/graphql` : `${gw.url.replace('http', 'ws')}/graphql`;
  const computations = () => gw.services.liveMetrics.computations;
  const rows = [await row(url, 1, computations), await row(url, 50, computations)]
    .filter((r) => Object.keys(r).length)
    .map((r) => ({ sharedWrites: sharedWrites ? 'on' : 'off', ...r }));
  stop = true;
  await traffic;
  await gw.close();
  return rows;
}

if (process.argv[2] === 'client') void client();
else void main().then(() => process.exit(0));
