/**
 * The Redis store shared by two gateway processes (`capibara-mcp start`, separate Node processes)
 * with one PostgreSQL database and one Redis (a private redis-server): an answer computed through
 * one gateway is served by the other without an upstream call, and an instance change made on
 * one gateway makes both compute again.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { createTestDatabase } from '../../src/testing/database.ts';
import { spawnCli, type LongRunning } from '../cli/support.ts';
import { startOwnRedis, type OwnRedis } from '../support/redis-server.ts';
import { waitFor } from '../workers/support.ts';

const CHAT = '/v1/chat/completions';

describe.skipIf(!process.env.DATABASE_URL)('response cache shared by two gateway processes through Redis', () => {
  let upstream: FakeOpenAIServer;
  let redis: OwnRedis;
  let db: { url: string; drop(): Promise<void> };
  let dir: string;
  const procs: LongRunning[] = [];
  const urls: string[] = [];

  async function start(name: string): Promise<string> {
    const config = {
      server: { host: '127.0.0.1', port: 0 },
      storage: { url: db.url, dataDir: join(dir, name) },
      events: { redisUrl: redis.url, registryCheckMs: 500 },
      cache: { store: 'redis', redisUrl: redis.url, redisTimeoutMs: 2000 },
      demo: { enabled: false },
      log: { level: 'info' },
      defaultPlugins: false,
      auth: { enabled: false },
      plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }],
      router: { healthCheck: { enabled: false } },
      models: [
        {
          id: 'chat-model',
          task: 'chat',
          defaultVersion: 'v1',
          versions: [{ version: 'v1', instances: [{ id: 'chat-a', backend: 'openai', endpoint: upstream.url, options: { model: 'fake-model' } }] }],
        },
      ],
    };
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(config));
    const p = spawnCli(['start', '--config', file]);
    procs.push(p);
    const m = await p.waitFor(/"url":"(http:[^"]+)".*"msg":"gateway ready"/, 110_000);
    return m[1]!;
  }

  async function chat(url: string, body: Record<string, unknown> = {}) {
    const r = await fetch(`${url}${CHAT}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat-model', messages: [{ role: 'user', content: 'shared' }], temperature: 0, ...body }),
    });
    const text = await r.text();
    return { status: r.status, cache: r.headers.get('x-mcp-cache'), text };
  }

  async function gql(url: string, query: string, variables: Record<string, unknown> = {}) {
    const r = await fetch(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query, variables }) });
    return (await r.json()) as { data?: Record<string, unknown>; errors?: unknown[] };
  }

  beforeAll(async () => {
    upstream = await startFakeOpenAI({ models: ['fake-model'] });
    redis = await startOwnRedis();
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'mcp-cache-'));
    // One after the other: the first one seeds the model into the shared database.
    urls.push(await start('a'));
    urls.push(await start('b'));
  }, 240_000);
  afterAll(async () => {
    for (const p of procs) {
      if (p.child.exitCode === null) {
        p.child.kill('SIGTERM');
        const t = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
        await p.exited;
        clearTimeout(t);
      }
    }
    await upstream?.close();
    await redis?.stop();
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('an answer computed through one gateway is served by the other; an instance change on one is seen by both', async () => {
    const [a, b] = urls as [string, string];
    const set = await gql(a, 'mutation { setModelCache(model: "chat-model", input: { enabled: true, ttlMs: 60000 }) { id } }');
    expect(set.errors).toBeUndefined();
    // B hears of the setting through the registry events (Redis): a non-deterministic request says bypass there once it has.
    await waitFor(async () => (await chat(b, { temperature: 0.5 })).cache === 'bypass', 20_000, 'gateway b to see the cache setting');

    const before = upstream.counts[CHAT] ?? 0;
    const first = await chat(a, { max_tokens: 9 });
    expect(first).toMatchObject({ status: 200, cache: 'miss' });
    const second = await chat(b, { max_tokens: 9 });
    expect(second).toMatchObject({ status: 200, cache: 'hit' });
    expect(JSON.parse(second.text).choices).toEqual(JSON.parse(first.text).choices);
    expect(await chat(a, { max_tokens: 9 })).toMatchObject({ cache: 'hit' });
    expect(upstream.counts[CHAT]).toBe(before + 1);

    // An instance added through B: A computes again (B purged Redis; A's keys follow the new instance set).
    const added = await gql(
      b,
      'mutation($e: String!) { addInstance(model: "chat-model", version: "v1", input: { id: "chat-b", backend: "openai", endpoint: $e, options: { model: "fake-model" } }) { id } }',
      { e: upstream.url },
    );
    expect(added.errors).toBeUndefined();
    const afterChange = await chat(a, { max_tokens: 9 });
    expect(afterChange).toMatchObject({ status: 200, cache: 'miss' });
    expect(upstream.counts[CHAT]).toBe(before + 2);
    // Once A knows the new instance too, its answer is shared again.
    await waitFor(
      async () => {
        const m = (await gql(a, '{ model(id: "chat-model") { versions { instances { id } } } }')).data as {
          model: { versions: Array<{ instances: Array<{ id: string }> }> };
        };
        return m.model.versions[0]!.instances.length === 2;
      },
      20_000,
      'gateway a to see the new instance',
    );
    const n = upstream.counts[CHAT]!;
    await chat(a, { max_tokens: 10 });
    expect(await chat(b, { max_tokens: 10 })).toMatchObject({ cache: 'hit' });
    expect(upstream.counts[CHAT]).toBe(n + 1);
  }, 90_000);
});
