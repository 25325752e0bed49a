/**
 * Streaming bench: the latency each token gains on its way through the gateway, against the
 * backend's own token stream, for the OpenAI SSE path and GraphQL `inferStream` over SSE and
 * over graphql-ws.
 *
 *   npx tsx bench/streaming.ts [--streams=30] [--tokens=100] [--gap=2]
 *
 * The upstream (bench/streaming/upstream.ts) and the gateway (the CLI) run in their own
 * processes; each token carries the wall-clock µs it was written at, so per-token latency is
 * receive time − send time on the same clock. Added latency = through the gateway − direct.
 */
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { freeLoopbackPort } from '../src/testing/loopback-server.ts';

const arg = (n: string, d: number) => Number(process.argv.find((a) => a.startsWith(`--${n}=`))?.split('=')[1] ?? d);
const STREAMS = arg('streams', 30);
const TOKENS = arg('tokens', 100);
const GAP = arg('gap', 2);
const ROOT = join(import.meta.dirname, '..');
const nowUs = () => (performance.timeOrigin + performance.now()) * 1000;

function latenciesFromText(text: string, at: number, out: number[]): void {
  for (const m of text.matchAll(/<(\d+)>/g)) out.push(at - Number(m[1]));
}

async function readSse(url: string, body: unknown, headers: Record<string, string>, out: number[]): Promise<void> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  if (!res.ok || !res.body) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  const decoder = new TextDecoder();
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    latenciesFromText(decoder.decode(value, { stream: true }), nowUs(), out);
  }
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]! / 1000;
  return { n: s.length, p50: q(0.5), p90: q(0.9), p99: q(0.99) };
};

const upstream = fork(join(ROOT, 'bench/streaming/upstream.ts'), [], {
  execArgv: ['--import', 'tsx'],
  env: { ...process.env, TOKENS: String(TOKENS), GAP_MS: String(GAP) },
});
const upPort = await new Promise<number>((r) => upstream.once('message', (m: { port: number }) => r(m.port)));
const upUrl = `http://127.0.0.1:${upPort}/v1`;

const dir = mkdtempSync(join(tmpdir(), 'mcp-stream-bench-'));
writeFileSync(
  join(dir, 'capibara.yaml'),
  [
    'storage: { inMemory: true }',
    'demo: { enabled: false }',
    'log: { level: warn, access: false }',
    'auth: { enabled: false }',
    'models:',
    '  - id: streamer',
    '    task: chat',
    '    versions:',
    '      - version: v1',
    '        instances:',
    `          - { backend: openai, endpoint: "${upUrl}", options: { model: stream-model } }`,
    '',
  ].join('\n'),
);
const port = await freeLoopbackPort();
const gateway = spawn(process.execPath, [join(ROOT, 'dist/src/main.js'), 'start'], {
  cwd: dir,
  env: { ...process.env, PORT: String(port), DATABASE_URL: '' },
  stdio: 'ignore',
});
const gw = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  const r = await fetch(`${gw}/readyz`).catch(() => undefined);
  if (r?.status === 200) break;
  if (i > 600) throw new Error('gateway not ready');
  await new Promise((res) => setTimeout(res, 50));
}

const chat = { messages: [{ role: 'user', content: 'go' }], stream: true, max_tokens: TOKENS };
const infer = 'subscription { inferStream(model: "streamer", input: { messages: [{ role: "user", content: "go" }] }) { type text } }';
const ws = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, lazy: false });

const paths: Record<string, (out: number[]) => Promise<void>> = {
  'direct (upstream SSE)': (out) => readSse(`${upUrl}/chat/completions`, { model: 'stream-model', ...chat }, {}, out),
  'gateway OpenAI SSE': (out) => readSse(`${gw}/v1/chat/completions`, { model: 'streamer', ...chat }, {}, out),
  'gateway GraphQL inferStream (SSE)': (out) => readSse(`${gw}/graphql`, { query: infer }, { accept: 'text/event-stream' }, out),
  'gateway GraphQL inferStream (graphql-ws)': (out) =>
    new Promise<void>((resolve, reject) => {
      ws.subscribe<{ inferStream: { text: string } }>(
        { query: infer },
        {
          next: (v) => latenciesFromText(v.data?.inferStream.text ?? '', nowUs(), out),
          error: reject,
          complete: resolve,
        },
      );
    }),
};

// Warm up every path, then interleave them stream by stream so machine noise hits all alike.
const results = new Map<string, number[]>(Object.keys(paths).map((k) => [k, []]));
for (const run of Object.values(paths)) await run([]);
for (let s = 0; s < STREAMS; s++) for (const [name, run] of Object.entries(paths)) await run(results.get(name)!);

const direct = stats(results.get('direct (upstream SSE)')!);
console.log(
  `\nnode ${process.version}; ${STREAMS} streams × ${TOKENS} tokens, ${GAP} ms apart, one stream at a time; ` +
    `per-token latency from upstream write to client read\n`,
);
console.log('| path | tokens | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const [name, xs] of results) {
  const s = stats(xs);
  const added = name.startsWith('direct') ? ['–', '–'] : [(s.p50 - direct.p50).toFixed(3), (s.p99 - direct.p99).toFixed(3)];
  console.log(`| ${name} | ${s.n} | ${s.p50.toFixed(3)} | ${s.p90.toFixed(3)} | ${s.p99.toFixed(3)} | ${added[0]} | ${added[1]} |`);
}
await ws.dispose();
gateway.kill('SIGTERM');
upstream.disconnect();
