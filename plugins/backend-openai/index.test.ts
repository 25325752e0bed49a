import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import plugin, { mapUsage } from './index.ts';
import { McpError, parseInferenceInput, type Backend, type BackendCall, type LoadedInstance, type InferenceChunk } from 'capibara-mcp';
import { testPluginContext, startFakeOpenAI, type FakeOpenAIServer, startFaultProxy, type FaultProxy } from 'capibara-mcp/testing';

function call(extra: Partial<BackendCall> = {}): BackendCall {
  return { requestId: extra.requestId ?? 'req-42', signal: extra.signal ?? new AbortController().signal, deadline: extra.deadline };
}
async function rejection(p: Promise<unknown>): Promise<McpError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(McpError);
    return err as McpError;
  }
  throw new Error('expected a rejection');
}

describe('mapUsage', () => {
  it('makes what an upstream reports as token counts integers in 0 … 2³¹−1, anything else 0', () => {
    expect(mapUsage({ prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 })).toEqual({ promptTokens: 5, completionTokens: 4, totalTokens: 9 });
    expect(mapUsage({ prompt_tokens: 3.5, completion_tokens: 1e12 })).toEqual({ promptTokens: 4, completionTokens: 2_147_483_647, totalTokens: 2_147_483_647 });
    const odd = { prompt_tokens: 'abc', completion_tokens: -3, total_tokens: Number.NaN } as unknown as Parameters<typeof mapUsage>[0];
    expect(mapUsage(odd)).toEqual({ promptTokens: 0, completionTokens: 0, totalTokens: 0 });
    expect(mapUsage(null)).toBeUndefined();
  });
});

describe('openai backend', () => {
  let fake: FakeOpenAIServer;
  let proxy: FaultProxy;
  const ctx = testPluginContext('openai');
  let backend: Backend;
  let inst: LoadedInstance;
  let viaProxy: LoadedInstance;

  beforeAll(async () => {
    fake = await startFakeOpenAI();
    proxy = await startFaultProxy({ target: fake.url, seed: 7 });
    const options = plugin.options.parse({ connections: 4, timeouts: { firstByteMs: 400, idleMs: 400, totalMs: 3000 }, headers: { 'x-team': 'ml' } });
    backend = await plugin.setup(ctx, options);
    inst = await backend.load({ id: 'i1', model: 'llama', version: '1', endpoint: fake.url, options: { model: 'fake-model', apiKey: 'sk-test' } }, ctx.signal);
    viaProxy = await backend.load({ id: 'i2', model: 'fake-model', version: '1', endpoint: proxy.url, options: {} }, ctx.signal);
  });
  afterAll(async () => {
    await ctx.close();
    await proxy.close();
    await fake.close();
  });

  it('serves chat and maps parameters, extra, headers and usage', async () => {
    const out = await inst.infer(
      {
        task: 'chat',
        messages: [{ role: 'user', content: 'hi' }],
        parameters: { maxTokens: 16, temperature: 0.2, topP: 0.9, seed: 3, stop: ['\n'] },
        extra: { repetition_penalty: 1.1, model: 'hijack' },
      },
      call(),
    );
    expect(out).toEqual({ text: 'Hello, world!', finishReason: 'stop', usage: { promptTokens: 5, completionTokens: 4, totalTokens: 9 } });
    const req = fake.lastRequest!;
    expect(req.path).toBe('/v1/chat/completions');
    expect(req.body).toEqual({
      repetition_penalty: 1.1,
      max_tokens: 16,
      temperature: 0.2,
      top_p: 0.9,
      seed: 3,
      stop: ['\n'],
      model: 'fake-model',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(req.headers['x-request-id']).toBe('req-42');
    expect(req.headers.authorization).toBe('Bearer sk-test');
    expect(req.headers['x-team']).toBe('ml');
  });

  it('serves generate (top_k only when set) and embed', async () => {
    fake.setBehavior({ finishReason: 'length' });
    const gen = await inst.infer({ task: 'generate', prompt: 'Once', parameters: { topK: 5 } }, call());
    expect(gen.text).toBe('Hello, world!');
    expect(gen.finishReason).toBe('length');
    expect(fake.lastRequest?.body).toEqual({ top_k: 5, model: 'fake-model', prompt: 'Once' });
    fake.setBehavior({});
    const emb = await inst.infer({ task: 'embed', texts: ['a', 'bb'] }, call());
    expect(emb.embeddings).toHaveLength(2);
    expect(emb.embeddings?.[0]).toHaveLength(4);
    expect(emb.usage?.promptTokens).toBe(3);
    expect(fake.lastRequest?.body).toEqual({ encoding_format: 'float', model: 'fake-model', input: ['a', 'bb'] });
  });

  it('rejects bad input before calling upstream', async () => {
    const before = fake.requests;
    // An empty conversation never reaches a backend: the input schema refuses it at every entry point.
    expect((await rejection((async () => parseInferenceInput({ task: 'chat', messages: [] }))())).code).toBe('MCP_VALIDATION_FAILED');
    expect((await rejection(inst.infer({ task: 'tensor', tensors: [] }, call()))).code).toBe('MCP_UNSUPPORTED_PARAMETER');
    expect(fake.requests).toBe(before);
  });

  it('streams token by token, in order, with a final chunk carrying finishReason and usage', async () => {
    fake.setBehavior({ tokens: ['a', 'b', 'c', 'd', 'e'], tokenDelayMs: 40 });
    const t0 = Date.now();
    const got: Array<InferenceChunk & { at: number }> = [];
    for await (const c of inst.stream!({ task: 'chat', messages: [{ role: 'user', content: 'x' }] }, call())) got.push({ ...c, at: Date.now() - t0 });
    fake.setBehavior({});
    expect(got.map((c) => c.text)).toEqual(['a', 'b', 'c', 'd', 'e', '']);
    expect(got.at(-1)).toMatchObject({ finishReason: 'stop', usage: { promptTokens: 5, completionTokens: 5, totalTokens: 10 } });
    // the first token arrived well before the last one was produced: no buffering
    expect(got[4]!.at - got[0]!.at).toBeGreaterThanOrEqual(100);
    expect(fake.lastRequest?.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    const gen: string[] = [];
    for await (const c of inst.stream!({ task: 'generate', prompt: 'x' }, call())) gen.push(c.text);
    expect(gen.join('')).toBe('Hello, world!');
  });

  it('reuses keep-alive connections for many requests, streamed or not', async () => {
    const before = fake.connections;
    for (let i = 0; i < 20; i++) await inst.infer({ task: 'generate', prompt: 'x' }, call());
    for (let i = 0; i < 10; i++)
      for await (const _ of inst.stream!({ task: 'generate', prompt: 'x' }, call())) {
        /* drain */
      }
    await Promise.all(Array.from({ length: 24 }, () => inst.infer({ task: 'chat', messages: [{ role: 'user', content: 'x' }] }, call())));
    expect(fake.connections - before).toBeLessThanOrEqual(4);
  });

  it('aborts the upstream stream when the client goes away', async () => {
    fake.setBehavior({ tokens: Array.from({ length: 20 }, (_, i) => `t${i}`), tokenDelayMs: 50 });
    const abortedBefore = fake.aborted;
    const ac = new AbortController();
    const seen: string[] = [];
    const e = await rejection(
      (async () => {
        for await (const c of inst.stream!({ task: 'generate', prompt: 'x' }, call({ signal: ac.signal }))) {
          seen.push(c.text);
          if (seen.length === 2) ac.abort();
        }
      })(),
    );
    expect(e.code).toBe('MCP_CANCELLED');
    expect(seen).toEqual(['t0', 't1']);
    await expect.poll(() => fake.aborted, { timeout: 2000, interval: 20 }).toBe(abortedBefore + 1);
    // breaking out of the loop also ends the upstream request
    for await (const _ of inst.stream!({ task: 'generate', prompt: 'x' }, call())) break;
    await expect.poll(() => fake.aborted, { timeout: 2000, interval: 20 }).toBe(abortedBefore + 2);
    fake.setBehavior({});
  });

  it('maps a stream cut mid-way to an upstream error', async () => {
    fake.setBehavior({ dropAfterTokens: 2 });
    const e = await rejection(
      (async () => {
        for await (const _ of inst.stream!({ task: 'generate', prompt: 'x' }, call())) {
          /* */
        }
      })(),
    );
    expect(['MCP_UPSTREAM_UNAVAILABLE', 'MCP_UPSTREAM_ERROR']).toContain(e.code);
    fake.setBehavior({});
  });

  it('maps upstream statuses and faults', async () => {
    fake.setBehavior({ status: 400, errorBody: { error: { message: "Unsupported parameter: 'top_k'", type: 'invalid_request_error' } } });
    const bad = await rejection(inst.infer({ task: 'generate', prompt: 'x' }, call()));
    // the upstream's own words go to the log, never to the caller
    expect([bad.code, bad.retryable, bad.message]).toEqual([
      'MCP_UNSUPPORTED_PARAMETER',
      false,
      'the model server does not support a parameter (upstream status 400)',
    ]);
    fake.setBehavior({ status: 404, errorBody: { error: { message: 'The model `x` does not exist.' } } });
    expect((await rejection(inst.infer({ task: 'generate', prompt: 'x' }, call()))).code).toBe('MCP_MODEL_NOT_FOUND');
    fake.setBehavior({ status: 429, errorHeaders: { 'retry-after': '1' } });
    const rl = await rejection(inst.stream!({ task: 'generate', prompt: 'x' }, call())[Symbol.asyncIterator]().next());
    expect([rl.code, rl.retryable, rl.details?.retryAfterMs]).toEqual(['MCP_UPSTREAM_RATE_LIMITED', true, 1000]);
    fake.setBehavior({});

    proxy.set({ errorRate: 1, errorStatus: 502 });
    const bg = await rejection(viaProxy.infer({ task: 'generate', prompt: 'x' }, call()));
    expect([bg.code, bg.retryable]).toEqual(['MCP_UPSTREAM_ERROR', true]);
    proxy.set({ blackHole: true });
    const to = await rejection(viaProxy.infer({ task: 'generate', prompt: 'x' }, call()));
    expect([to.code, to.retryable]).toEqual(['MCP_DEADLINE_EXCEEDED', false]);
    proxy.set({ latencyMs: 200 });
    const dl = await rejection(viaProxy.infer({ task: 'generate', prompt: 'x' }, call({ deadline: Date.now() + 50 })));
    expect(dl.code).toBe('MCP_DEADLINE_EXCEEDED');
    proxy.set({});
    expect((await viaProxy.infer({ task: 'generate', prompt: 'x' }, call())).text).toBe('Hello, world!');
  });

  it('applies a seeded error rate deterministically', async () => {
    const run = async () => {
      proxy.set({ errorRate: 0.5, errorStatus: 503 }, 123);
      const outcomes: string[] = [];
      for (let i = 0; i < 12; i++) {
        outcomes.push(
          await viaProxy.infer({ task: 'generate', prompt: 'x' }, call()).then(
            () => 'ok',
            (e: McpError) => e.code,
          ),
        );
      }
      return outcomes;
    };
    const a = await run();
    const b = await run();
    proxy.set({});
    expect(a).toEqual(b);
    expect(a).toContain('ok');
    expect(a).toContain('MCP_UPSTREAM_UNAVAILABLE');
  });

  it('health probes GET /models without any inference', async () => {
    const completions = fake.counts['/v1/completions'] ?? 0;
    const chats = fake.counts['/v1/chat/completions'] ?? 0;
    expect(await inst.health(AbortSignal.timeout(2000))).toEqual({ ok: true });
    expect(fake.lastRequest?.path).toBe('/v1/models');
    proxy.set({ reset: true });
    const h = await viaProxy.health(AbortSignal.timeout(2000));
    expect(h.ok).toBe(false);
    expect(h.detail).toMatch(/MCP_UPSTREAM_UNAVAILABLE/);
    proxy.set({});
    expect(fake.counts['/v1/completions'] ?? 0).toBe(completions);
    expect(fake.counts['/v1/chat/completions'] ?? 0).toBe(chats);
  });

  it('the fake server speaks enough OpenAI for the official SDK', async () => {
    const sdk = new OpenAI({ baseURL: fake.url, apiKey: 'x', maxRetries: 0 });
    const r = await sdk.chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'x' }] });
    expect(r.choices[0]?.message.content).toBe('Hello, world!');
    const parts: string[] = [];
    const s = await sdk.chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'x' }], stream: true });
    for await (const c of s) parts.push(c.choices[0]?.delta.content ?? '');
    expect(parts.join('')).toBe('Hello, world!');
  });
});
