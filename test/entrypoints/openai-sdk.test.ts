import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSWER, TOKENS, startStack, type Stack } from './harness.ts';

describe('OpenAI-compatible /v1 through the official openai SDK', () => {
  let s: Stack;
  let client: OpenAI;
  beforeAll(async () => {
    s = await startStack();
    client = new OpenAI({ baseURL: `${s.gw.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 10_000 });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('chat completion, non-streamed', async () => {
    const r = await client.chat.completions.create({ model: 'chat-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16, temperature: 0.5 });
    expect(r.object).toBe('chat.completion');
    expect(r.model).toBe('chat-model');
    expect(r.choices[0]!.message.content).toBe(ANSWER);
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.usage).toMatchObject({ prompt_tokens: 5, completion_tokens: TOKENS.length });
    // Parameters reach the upstream under OpenAI names, for the upstream model name.
    expect(s.openai.lastRequest?.body).toMatchObject({ model: 'fake-model', max_tokens: 16, temperature: 0.5, messages: [{ role: 'user', content: 'hi' }] });
  });

  it('chat completion, streamed: several chunks arrive, joined they are the answer', async () => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS, tokenDelayMs: 20 });
    try {
      const stream = await client.chat.completions.create({
        model: 'chat-model',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
        stream_options: { include_usage: true },
      });
      const parts: string[] = [];
      const times: number[] = [];
      let finish: string | null = null;
      let usage: unknown;
      for await (const chunk of stream) {
        if (chunk.usage) usage = chunk.usage;
        const c = chunk.choices[0];
        if (!c) continue;
        if (c.delta.content) {
          parts.push(c.delta.content);
          times.push(performance.now());
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
      expect(parts.length).toBeGreaterThanOrEqual(TOKENS.length);
      expect(parts.join('')).toBe(ANSWER);
      expect(finish).toBe('stop');
      expect(usage).toMatchObject({ completion_tokens: TOKENS.length });
      // Incremental: the first token came well before the last (5 tokens, 20 ms apart upstream).
      expect(times.at(-1)! - times[0]!).toBeGreaterThan(40);
    } finally {
      s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS });
    }
  });

  it('completion, non-streamed and streamed', async () => {
    const r = await client.completions.create({ model: 'gen-model', prompt: 'Say hello', max_tokens: 8 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0]!.text).toBe(ANSWER);
    expect(s.openai.lastRequest).toMatchObject({ path: '/v1/completions', body: { prompt: 'Say hello', max_tokens: 8 } });
    const stream = await client.completions.create({ model: 'gen-model', prompt: 'Say hello', stream: true });
    const parts: string[] = [];
    for await (const chunk of stream) if (chunk.choices[0]?.text) parts.push(chunk.choices[0].text);
    expect(parts.length).toBeGreaterThanOrEqual(TOKENS.length);
    expect(parts.join('')).toBe(ANSWER);
  });

  it('GET /v1/models and /v1/models/{id}', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(expect.arrayContaining(['chat-model', 'gen-model', 'embed-model', 'doubler']));
    const one = await client.models.retrieve('chat-model');
    expect(one).toMatchObject({ id: 'chat-model', object: 'model' });
  });

  it('embeddings', async () => {
    const r = await client.embeddings.create({ model: 'embed-model', input: ['a', 'bcd'], encoding_format: 'float' });
    expect(r.data).toHaveLength(2);
    expect(r.data[0]!.embedding).toHaveLength(4);
    expect(r.data[1]!.index).toBe(1);
    // The SDK's default asks for base64 and decodes it: the same floats come out.
    const single = await client.embeddings.create({ model: 'embed-model', input: 'xyz' });
    expect(single.data).toHaveLength(1);
    const plain = await client.embeddings.create({ model: 'embed-model', input: 'xyz', encoding_format: 'float' });
    expect(single.data[0]!.embedding).toHaveLength(4);
    single.data[0]!.embedding.forEach((v, i) => expect(v).toBeCloseTo(plain.data[0]!.embedding[i]!, 6));
  });

  it('errors surface as APIError with our code and status', async () => {
    const unknown = await client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(APIError);
    expect((unknown as APIError).status).toBe(404);
    expect((unknown as APIError).code).toBe('MCP_MODEL_NOT_FOUND');
    const unknownStream = await client.chat.completions
      .create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }], stream: true })
      .catch((e: unknown) => e);
    expect((unknownStream as APIError).code).toBe('MCP_MODEL_NOT_FOUND');
    const badParam = await client.chat.completions
      .create({ model: 'chat-model', messages: [{ role: 'user', content: 'hi' }], logit_bias: { 1: 2 } })
      .catch((e: unknown) => e);
    expect((badParam as APIError).status).toBe(400);
    expect((badParam as APIError).code).toBe('MCP_UNSUPPORTED_PARAMETER');
    expect((badParam as APIError).param).toBe('logit_bias');
    const badTemp = await client.chat.completions
      .create({ model: 'chat-model', messages: [{ role: 'user', content: 'hi' }], temperature: 7 })
      .catch((e: unknown) => e);
    expect((badTemp as APIError).code).toBe('MCP_VALIDATION_FAILED');
    const wrongTask = await client.embeddings.create({ model: 'doubler', input: 'x' }).catch((e: unknown) => e);
    expect((wrongTask as APIError).status).toBe(400);
    expect((wrongTask as APIError).code).toBe('MCP_UNSUPPORTED_PARAMETER');
    const missingModel = await client.models.retrieve('ghost').catch((e: unknown) => e);
    expect((missingModel as APIError).code).toBe('MCP_MODEL_NOT_FOUND');
  });

  it('upstream failures map to coded 5xx/429 answers', async () => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS, status: 429 });
    try {
      const e = await client.chat.completions.create({ model: 'chat-model', messages: [{ role: 'user', content: 'hi' }] }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(APIError);
      expect((e as APIError).status).toBe(429);
      expect((e as APIError).code).toBe('MCP_UPSTREAM_RATE_LIMITED');
    } finally {
      s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS });
    }
  });
});
