/**
 * CPU per upstream JSON call in the calling process, side by side in one run: UpstreamClient.json
 * (an undici dispatch handler that collects the answer) against `undici.request` + reading its
 * body stream (what json() did before). The upstream is the overhead bench's OpenAI-compatible
 * server in its own process, so only the client's CPU is counted. 16 calls in flight, rounds
 * interleaved, medians.
 *
 *   npx tsx bench/upstream-json.ts [--calls 20000] [--rounds 5]
 */
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { UpstreamClient } from '../src/upstream/client.ts';

const { values: args } = parseArgs({ options: { calls: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '5' } } });
const CALLS = Number(args.calls);
const ROUNDS = Number(args.rounds);

const child = fork(new URL('./overhead/upstream.ts', import.meta.url), { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
const port = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)));
const url = `http://127.0.0.1:${port}/v1/chat/completions`;
const payload = { model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] };

const client = new UpstreamClient({ connections: 16 });
const agent = new Agent({ connections: 16 });
const viaClient = async (): Promise<void> => {
  const r = await client.json<{ choices: unknown[] }>({ url, json: payload, signal: new AbortController().signal });
  if (!r.data.choices.length) throw new Error('no choices');
};
const viaRequest = async (): Promise<void> => {
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(payload),
    dispatcher: agent,
    signal: new AbortController().signal,
  });
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  const data = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { choices: unknown[] };
  if (!data.choices.length) throw new Error('no choices');
};

async function cpuPerCall(fn: () => Promise<void>, n: number): Promise<number> {
  const before = process.cpuUsage();
  for (let i = 0; i < n; i += 16) await Promise.all(Array.from({ length: 16 }, fn));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

const variants = { 'UpstreamClient.json (dispatch handler)': viaClient, 'undici.request + body stream': viaRequest } as const;
const results = new Map<string, number[]>(Object.keys(variants).map((k) => [k, []]));
for (const fn of Object.values(variants)) await cpuPerCall(fn, 2000); // warm-up
for (let r = 0; r < ROUNDS; r++) for (const [name, fn] of Object.entries(variants)) results.get(name)!.push(await cpuPerCall(fn, CALLS));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`| upstream JSON call (${CALLS} calls × ${ROUNDS} rounds, 16 in flight) | CPU µs per call (median) |\n|---|---:|`);
for (const [name, xs] of results) console.log(`| ${name} | ${median(xs).toFixed(1)} |`);
await client.close();
await agent.close();
child.disconnect();
