/**
 * Two gateway processes (`capibara-mcp start`, separate Node processes) sharing one Redis hold a
 * global request limit and a global token limit under concurrent load, split across both:
 * 200s are counted against 429s, and the tokens the model reported for the answers that went
 * out stay within 1% of the allowance (the token limit against the fake OpenAI server, which
 * reports usage).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { generateApiKey } from '../../plugins/auth-api-key/index.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { REDIS_URL, dropRedisKeys } from '../support/redis.ts';
import { readSse } from '../entrypoints/harness.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PREFIX = `test:rlrep:${randomBytes(6).toString('hex')}:`;
const REQUESTS = 100;
const TOKENS = 1000;
/** The fake model answers 15 tokens after a 5-token prompt: 20 tokens a call, as it reports in `usage`. */
const ANSWER = Array.from({ length: 15 }, (_, i) => `t${i} `);

interface GatewayProcess {
  url: string;
  child: ChildProcess;
}

/** The credential both replicas accept (auth is on by default). */
const KEY = generateApiKey();
const AUTH = { authorization: `Bearer ${KEY.key}` };

async function startGatewayProcess(dir: string, name: string, upstream: string): Promise<GatewayProcess> {
  const inst = { backend: 'openai', endpoint: upstream, options: { model: 'fake-model' } };
  const config = {
    server: { host: '127.0.0.1', port: 0 },
    storage: { inMemory: true, dataDir: join(dir, name) },
    demo: { enabled: false },
    log: { level: 'info' },
    defaultPlugins: false,
    auth: { strategies: ['api-key'] },
    plugins: [
      { use: 'api-key', options: { keys: [{ id: 'load', sha256: KEY.sha256, roles: ['developer'] }] } },
      { use: 'openai' },
      { use: 'p2c-ewma' },
      { use: 'ratelimit-redis', options: { url: REDIS_URL, keyPrefix: PREFIX, commandTimeoutMs: 2000 } },
    ],
    router: { healthCheck: { enabled: false } },
    models: [
      { id: 'gen-model', task: 'generate', defaultVersion: 'v1', versions: [{ version: 'v1', instances: [inst] }] },
      { id: 'chat-model', task: 'chat', defaultVersion: 'v1', versions: [{ version: 'v1', instances: [inst] }] },
    ],
    limits: {
      store: 'ratelimit-redis',
      rules: [
        { name: 'global-requests', scope: 'global', match: { models: ['gen-model'] }, requests: REQUESTS, period: '1h' },
        { name: 'global-tokens', scope: 'global', match: { models: ['chat-model'] }, tokens: TOKENS, period: '1h' },
      ],
    },
  };
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config));
  const child = spawn(process.execPath, ['--conditions=capibara-source', '--import', 'tsx', join(ROOT, 'src/main.ts'), 'start', '--config', file], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MCP_CONFIG: '', DATABASE_URL: '', PORT: '' },
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name}: no ready line: ${out}`)), 110_000);
    const check = () => {
      const m = /"url":"(http:[^"]+)".*"msg":"gateway ready"/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => reject(new Error(`${name} exited ${code}: ${out}`)));
  });
  return { url, child };
}

/** Runs `total` calls with `concurrency` in flight, alternating between the gateways. */
async function load<T>(total: number, concurrency: number, call: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) results.push(await call(next++));
    }),
  );
  return results;
}

describe('two gateway processes sharing Redis', () => {
  let upstream: FakeOpenAIServer;
  let dir: string;
  let gateways: GatewayProcess[] = [];

  beforeAll(async () => {
    upstream = await startFakeOpenAI({ models: ['fake-model'], tokens: ANSWER, promptTokens: 5 });
    dir = mkdtempSync(join(tmpdir(), 'mcp-replicas-'));
    gateways = await Promise.all([startGatewayProcess(dir, 'a', upstream.url), startGatewayProcess(dir, 'b', upstream.url)]);
  }, 240_000);
  afterAll(async () => {
    await Promise.all(
      gateways.map(
        (g) =>
          new Promise<void>((resolve) => {
            if (g.child.exitCode !== null) return resolve();
            g.child.once('exit', () => resolve());
            g.child.kill('SIGTERM');
            setTimeout(() => g.child.kill('SIGKILL'), 10_000).unref();
          }),
      ),
    );
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    await dropRedisKeys(PREFIX);
  }, 30_000);

  it(`a global limit of ${REQUESTS} requests: 300 concurrent calls over both replicas, at most 1% more are answered`, async () => {
    const statuses = await load(300, 32, async (i) => {
      const r = await fetch(`${gateways[i % 2]!.url}/api/v1/models/gen-model/inference`, {
        method: 'POST',
        headers: AUTH,
        body: JSON.stringify({ input: 'hi', parameters: { maxTokens: 5 } }),
      });
      await r.arrayBuffer();
      return r.status;
    });
    const ok = statuses.filter((s) => s === 200).length;
    const limited = statuses.filter((s) => s === 429).length;
    expect(ok + limited).toBe(300);
    // 100 per hour refills one request every 36 s: the run may earn one more.
    expect(ok).toBeGreaterThanOrEqual(REQUESTS);
    expect(ok).toBeLessThanOrEqual(REQUESTS * 1.01);
  }, 120_000);

  it(`a global limit of ${TOKENS} tokens: the usage of the answers that went out stays within 1% of it`, async () => {
    const results = await load(150, 24, async (i) => {
      const url = `${gateways[i % 2]!.url}/v1/chat/completions`;
      const stream = i % 3 === 0;
      // max_tokens 15 + the prompt's estimate (9: "hi" and the chat template): each call reserves 24 and is refunded to 20.
      const body = {
        model: 'chat-model',
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 15,
        stream,
        ...(stream ? { stream_options: { include_usage: true } } : {}),
      };
      const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...AUTH }, body: JSON.stringify(body) });
      if (r.status !== 200) {
        await r.arrayBuffer();
        return { status: r.status, tokens: 0 };
      }
      if (!stream) return { status: 200, tokens: ((await r.json()) as { usage: { total_tokens: number } }).usage.total_tokens };
      const events = await readSse(r);
      const usage = events.map((e) => (e.data.startsWith('{') ? (JSON.parse(e.data) as { usage?: { total_tokens: number } }).usage : undefined)).find(Boolean);
      return { status: 200, tokens: usage!.total_tokens };
    });
    const used = results.reduce((n, r) => n + r.tokens, 0);
    const ok = results.filter((r) => r.status === 200).length;
    expect(results.filter((r) => r.status !== 200 && r.status !== 429)).toEqual([]);
    expect(ok * 20).toBe(used);
    // The bound is 1% (10 tokens: not one 20-token answer past the allowance).
    expect(used).toBeLessThanOrEqual(TOKENS * 1.01);
    expect(used).toBeGreaterThanOrEqual(TOKENS * 0.9);
  }, 120_000);
});
