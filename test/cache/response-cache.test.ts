/**
 * The response cache through the real pipeline: a gateway with auth (API keys, one limited to
 * another model) in front of real loopback upstreams (fake OpenAI and KServe v2 servers that count
 * their calls). Deterministic repeats are answered without an upstream call, with x-mcp-cache.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../../plugins/auth-api-key/index.ts';
import { startStack, readSse, type Stack } from '../entrypoints/harness.ts';

const ADMIN = generateApiKey();
const CHAT_ONLY = generateApiKey();
const GEN_ONLY = generateApiKey();
const bearer = (k: { key: string }) => ({ authorization: `Bearer ${k.key}`, 'content-type': 'application/json' });
const CHAT = '/v1/chat/completions';

describe('response cache (memory store)', () => {
  let s: Stack;
  const calls = () => s.openai.counts[CHAT] ?? 0;

  async function chat(body: Record<string, unknown>, headers: Record<string, string> = {}, key = CHAT_ONLY) {
    const r = await fetch(`${s.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...bearer(key), ...headers },
      body: JSON.stringify({ model: 'chat-model', messages: [{ role: 'user', content: 'hi' }], ...body }),
    });
    return { status: r.status, cache: r.headers.get('x-mcp-cache'), body: (await r.json()) as { choices?: Array<{ message: { content: string } }> } };
  }

  beforeAll(async () => {
    s = await startStack({
      auth: { strategies: ['api-key'] },
      plugins: [
        {
          use: 'api-key',
          options: {
            keys: [
              { id: 'admin', sha256: ADMIN.sha256, roles: ['admin'] },
              { id: 'chat-only', sha256: CHAT_ONLY.sha256, roles: ['developer'], models: ['chat-model'] },
              { id: 'gen-only', sha256: GEN_ONLY.sha256, roles: ['developer'], models: ['gen-model'] },
            ],
          },
        },
      ],
    });
    for (const model of ['chat-model', 'doubler']) {
      const r = await s.gw.gql(
        'mutation($m: ID!) { setModelCache(model: $m, input: { enabled: true, ttlMs: 60000 }) { id cache { enabled ttlMs } } }',
        { m: model },
        bearer(ADMIN),
      );
      expect(r.errors).toBeUndefined();
      expect(r.data).toEqual({ setModelCache: { id: model, cache: { enabled: true, ttlMs: 60000 } } });
    }
  }, 60_000);
  afterAll(async () => {
    await s?.close();
  });

  it('refuses settings out of bounds, and needs models:write', async () => {
    const bad = await s.gw.gql('mutation { setModelCache(model: "chat-model", input: { enabled: true, ttlMs: 5 }) { id } }', {}, bearer(ADMIN));
    expect(bad.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const denied = await s.gw.gql('mutation { setModelCache(model: "chat-model", input: { enabled: false }) { id } }', {}, bearer(CHAT_ONLY));
    expect(denied.errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
  });

  it('a deterministic repeat (temperature 0) is answered from the cache without an upstream call', async () => {
    const before = calls();
    const first = await chat({ temperature: 0, max_tokens: 7 });
    expect(first).toMatchObject({ status: 200, cache: 'miss' });
    expect(calls()).toBe(before + 1);
    const second = await chat({ max_tokens: 7, temperature: 0 });
    expect(second).toMatchObject({ status: 200, cache: 'hit' });
    expect(second.body.choices![0]!.message.content).toBe(first.body.choices![0]!.message.content);
    expect(calls()).toBe(before + 1);
    // Other parameters are another key.
    expect((await chat({ temperature: 0, max_tokens: 8 })).cache).toBe('miss');
    expect(calls()).toBe(before + 2);
    // A fixed seed is deterministic too.
    expect((await chat({ temperature: 0.7, seed: 42 })).cache).toBe('miss');
    expect((await chat({ temperature: 0.7, seed: 42 })).cache).toBe('hit');
    expect(calls()).toBe(before + 3);
  });

  it('GraphQL infer shares the same path: a repeat is answered without an upstream call', async () => {
    const q =
      'mutation { infer(model: "chat-model", input: { messages: [{ role: "user", content: "gql" }], parameters: { temperature: 0 } }) { text version } }';
    const before = calls();
    const a = await s.gw.gql(q, {}, bearer(CHAT_ONLY));
    const b = await s.gw.gql(q, {}, bearer(CHAT_ONLY));
    expect(a.errors).toBeUndefined();
    expect(b.data).toEqual(a.data);
    expect(calls()).toBe(before + 1);
  });

  it('a non-deterministic request is never answered from the cache', async () => {
    const before = calls();
    for (const body of [{}, { temperature: 0.7 }, { temperature: 0.7 }, {}]) {
      const r = await chat(body);
      expect(r).toMatchObject({ status: 200, cache: 'bypass' });
    }
    expect(calls()).toBe(before + 4);
  });

  it('cache-control: no-cache skips the cache (and refreshes it); no-store neither reads nor writes', async () => {
    const body = { temperature: 0, max_tokens: 21 };
    expect((await chat(body)).cache).toBe('miss');
    const before = calls();
    expect((await chat(body, { 'cache-control': 'no-cache' })).cache).toBe('bypass');
    expect((await chat(body, { 'cache-control': 'no-store' })).cache).toBe('bypass');
    expect(calls()).toBe(before + 2);
    expect((await chat(body)).cache).toBe('hit');
    const fresh = { temperature: 0, max_tokens: 22 };
    expect((await chat(fresh, { 'cache-control': 'no-store' })).cache).toBe('bypass');
    expect((await chat(fresh)).cache).toBe('miss');
    expect(calls()).toBe(before + 4);
  });

  it("a change to the version's instances invalidates its answers", async () => {
    const body = { temperature: 0, max_tokens: 31 };
    await chat(body);
    expect((await chat(body)).cache).toBe('hit');
    const before = calls();
    const added = await s.gw.gql(
      'mutation($e: String!) { addInstance(model: "chat-model", version: "v1", input: { backend: "openai", endpoint: $e, options: { model: "fake-model" } }) { id } }',
      { e: s.openai.url },
      bearer(ADMIN),
    );
    expect(added.errors).toBeUndefined();
    expect((await chat(body)).cache).toBe('miss');
    expect(calls()).toBe(before + 1);
    expect((await chat(body)).cache).toBe('hit');
    const id = (added.data as { addInstance: { id: string } }).addInstance.id;
    const removed = await s.gw.gql('mutation($id: ID!) { removeInstance(id: $id) { id } }', { id }, bearer(ADMIN));
    expect(removed.errors).toBeUndefined();
    expect((await chat(body)).cache).toBe('miss');
    expect(calls()).toBe(before + 2);
  });

  it('a principal limited to another model never gets a hit', async () => {
    const body = { temperature: 0, max_tokens: 41 };
    await chat(body);
    expect((await chat(body)).cache).toBe('hit');
    const before = calls();
    const other = await chat(body, {}, GEN_ONLY);
    expect(other.status).toBe(403);
    expect(other.cache).toBeNull();
    expect(JSON.stringify(other.body)).not.toContain('Hello');
    // The service does not consult the cache for such a principal even when an entry point forgot to check.
    let outcome: string | undefined;
    const { buildInferenceRequest } = await import('../../src/inference/request.ts');
    const req = buildInferenceRequest({
      model: 'chat-model',
      input: { task: 'chat', messages: [{ role: 'user', content: 'hi' }], parameters: { maxTokens: 41, temperature: 0 } },
      entry: 'openai',
      signal: new AbortController().signal,
      principal: { id: 'gen-only', via: 'api-key', roles: ['developer'], models: ['gen-model'] },
      onCache: (o) => (outcome = o),
    });
    expect(s.gw.services.cache.plan(req)).toBeUndefined();
    expect(outcome).toBeUndefined();
    expect(calls()).toBe(before);
  });

  it('cache.scope partitions answers by tenant or principal', async () => {
    const { ResponseCache } = await import('../../src/cache/response-cache.ts');
    const { MemoryStore } = await import('../../src/cache/memory-store.ts');
    const { Registry } = await import('prom-client');
    const { buildInferenceRequest } = await import('../../src/inference/request.ts');
    const { registry, instances: fleet, logger } = s.gw.services;
    const keyOf = (scope: 'model' | 'tenant' | 'principal', id: string, tenant?: string) => {
      const cache = new ResponseCache({ ...s.gw.config.cache, scope }, new MemoryStore(1 << 20), { registry, fleet, logger, metrics: new Registry() });
      const req = buildInferenceRequest({
        model: 'chat-model',
        input: { task: 'chat', messages: [{ role: 'user', content: 'hi' }], parameters: { temperature: 0 } },
        entry: 'openai',
        signal: new AbortController().signal,
        principal: { id, via: 'api-key', roles: ['developer'], ...(tenant ? { claims: { tenant } } : {}) },
      });
      return cache.plan(req)!.key!;
    };
    expect(keyOf('model', 'u1')).toBe(keyOf('model', 'u2'));
    expect(keyOf('principal', 'u1')).not.toBe(keyOf('principal', 'u2'));
    expect(keyOf('tenant', 'u1', 'acme')).toBe(keyOf('tenant', 'u2', 'acme'));
    expect(keyOf('tenant', 'u1', 'acme')).not.toBe(keyOf('tenant', 'u3', 'globex'));
    // Without a tenant claim, a tenant-scoped answer is the principal's own.
    expect(keyOf('tenant', 'u1')).not.toBe(keyOf('tenant', 'u2'));
  });

  it('a streamed answer is kept whole and replayed as a stream; a stream that fails mid-way is not kept', async () => {
    const stream = async (max: number) => {
      const r = await fetch(`${s.gw.url}${CHAT}`, {
        method: 'POST',
        headers: bearer(CHAT_ONLY),
        body: JSON.stringify({ model: 'chat-model', stream: true, temperature: 0, max_tokens: max, messages: [{ role: 'user', content: 'hi' }] }),
      });
      if (!r.headers.get('content-type')?.includes('text/event-stream')) throw new Error(`${r.status} ${await r.text()}`);
      const events = await readSse(r);
      const content = events
        .filter((e) => e.data !== '[DONE]')
        .map((e) => (JSON.parse(e.data) as { choices?: Array<{ delta?: { content?: string } }> }).choices?.[0]?.delta?.content ?? '');
      return { cache: r.headers.get('x-mcp-cache'), content, done: events.at(-1)?.data === '[DONE]', errored: events.some((e) => e.data.includes('"error"')) };
    };
    const before = calls();
    const first = await stream(51);
    expect(first).toMatchObject({ cache: 'miss', done: true, errored: false });
    const second = await stream(51);
    expect(second.cache).toBe('hit');
    // The same frames, one per chunk: replayed as a stream, not one blob.
    expect(second.content).toEqual(first.content);
    expect(second.content.filter((c) => c).length).toBeGreaterThan(1);
    expect(calls()).toBe(before + 1);
    // A non-streamed request is another entry (kept as one answer).
    expect((await chat({ temperature: 0, max_tokens: 51 })).cache).toBe('miss');

    s.openai.setBehavior({ tokens: ['Hello', ',', ' capy', 'bara', '!'], dropAfterTokens: 3, tokenDelayMs: 20 });
    const broken = await stream(52);
    expect(broken.cache).toBe('miss');
    expect(broken.errored).toBe(true);
    s.openai.setBehavior({ tokens: ['Hello', ',', ' capy', 'bara', '!'] });
    const after = await stream(52);
    expect(after).toMatchObject({ cache: 'miss', done: true, errored: false });
    expect((await stream(52)).cache).toBe('hit');
  });

  it('tensor models are cached over KServe v2', async () => {
    const infer = async (data: number[]) => {
      const r = await fetch(`${s.gw.url}/v2/models/doubler/infer`, {
        method: 'POST',
        headers: bearer(ADMIN),
        body: JSON.stringify({ inputs: [{ name: 'INPUT0', shape: [1, data.length], datatype: 'FP32', data }] }),
      });
      return { status: r.status, cache: r.headers.get('x-mcp-cache'), body: (await r.json()) as { outputs?: Array<{ data: number[] }> } };
    };
    const before = s.kserve.requests;
    const a = await infer([1, 2, 3, 4]);
    expect(a).toMatchObject({ status: 200, cache: 'miss' });
    const b = await infer([1, 2, 3, 4]);
    expect(b).toMatchObject({ status: 200, cache: 'hit' });
    expect(b.body.outputs).toEqual(a.body.outputs);
    expect((await infer([1, 2, 4, 4])).cache).toBe('miss');
    expect(s.kserve.requests - before).toBe(2);
  });

  it('counts hits, misses and bypasses per model in Prometheus', async () => {
    const text = await s.gw.services.metricsRegistry.getSingleMetricAsString('mcp_cache_requests_total');
    for (const outcome of ['hit', 'miss', 'bypass']) expect(text).toMatch(new RegExp(`model="chat-model",outcome="${outcome}"} [1-9]`));
    expect(text).toMatch(/model="doubler",outcome="hit"} [1-9]/);
  });
});
