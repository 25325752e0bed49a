import { createClient } from 'graphql-ws';
import OpenAI from 'openai';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSWER, TOKENS, readSse, startStack, type Stack } from './harness.ts';

const INFER = /* GraphQL */ `
  mutation ($model: ID!, $input: InferInput!, $timeoutMs: Int) {
    infer(model: $model, input: $input, timeoutMs: $timeoutMs) {
      id
      model
      version
      instanceId
      text
      finishReason
      tensors {
        name
        shape
        datatype
        data
      }
      embeddings
      usage {
        promptTokens
        completionTokens
        totalTokens
      }
      latencyMs
    }
  }
`;
const STREAM = /* GraphQL */ `
  subscription ($model: ID!, $input: InferInput!) {
    inferStream(model: $model, input: $input) {
      type
      text
      finishReason
      usage {
        completionTokens
      }
      version
      instanceId
    }
  }
`;

type StreamEvent = { type: 'TOKEN' | 'DONE'; text: string; finishReason: string | null; usage: { completionTokens: number } | null };

describe('GraphQL infer / inferStream and REST inference on the same models', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack();
  });
  afterAll(async () => {
    await s?.close();
  });

  it('infer: chat, generate, embed and tensor', async () => {
    const chat = await s.gw.gql<{ infer: Record<string, unknown> }>(INFER, {
      model: 'chat-model',
      input: { messages: [{ role: 'user', content: 'hi' }], parameters: { maxTokens: 5 } },
    });
    expect(chat.errors).toBeUndefined();
    expect(chat.data?.infer).toMatchObject({
      model: 'chat-model',
      version: 'v1',
      text: ANSWER,
      finishReason: 'stop',
      usage: { completionTokens: TOKENS.length },
    });
    const gen = await s.gw.gql<{ infer: Record<string, unknown> }>(INFER, { model: 'gen-model', input: { prompt: 'p' } });
    expect(gen.data?.infer.text).toBe(ANSWER);
    const emb = await s.gw.gql<{ infer: { embeddings: number[][] } }>(INFER, { model: 'embed-model', input: { texts: ['a', 'b'] } });
    expect(emb.data?.infer.embeddings).toHaveLength(2);
    const t = await s.gw.gql<{ infer: { tensors: unknown[] } }>(INFER, {
      model: 'doubler',
      input: { tensors: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] },
    });
    expect(t.errors).toBeUndefined();
    expect(t.data?.infer.tensors).toEqual([{ name: 'OUTPUT0', shape: [1, 4], datatype: 'FP32', data: [2, 4, 6, 8] }]);
  });

  it('infer errors carry our codes', async () => {
    const unknown = await s.gw.gql(INFER, { model: 'ghost', input: { prompt: 'x' } });
    expect(unknown.errors?.[0]?.extensions?.code).toBe('MCP_MODEL_NOT_FOUND');
    const shape = await s.gw.gql(INFER, { model: 'doubler', input: { tensors: [{ name: 'INPUT0', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] } });
    expect(shape.errors?.[0]?.extensions?.code).toBe('MCP_INVALID_INPUT_SHAPE');
    const dtype = await s.gw.gql(INFER, { model: 'doubler', input: { tensors: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FLOAT99', data: [1, 2, 3, 4] }] } });
    expect(dtype.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const param = await s.gw.gql(INFER, { model: 'chat-model', input: { messages: [{ role: 'user', content: 'x' }], parameters: { temperature: 9 } } });
    expect(param.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const role = await s.gw.gql(INFER, { model: 'chat-model', input: { messages: [{ role: 'wizard', content: 'x' }] } });
    expect(role.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const task = await s.gw.gql(INFER, { model: 'doubler', input: { prompt: 'x' } });
    expect(task.errors?.[0]?.extensions?.code).toBe('MCP_UNSUPPORTED_PARAMETER');
    const badVar = await s.gw.gql(INFER, { model: 'chat-model', input: { nope: 1 } });
    expect(badVar.errors?.[0]?.extensions?.code).toBe('MCP_BAD_REQUEST');
  });

  it('inferStream over graphql-ws: tokens arrive before DONE', async () => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS, tokenDelayMs: 15 });
    const client = createClient({ url: `${s.gw.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    try {
      const events: Array<StreamEvent & { at: number }> = [];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no DONE within 5 s')), 5000);
        client.subscribe<{ inferStream: StreamEvent }>(
          { query: STREAM, variables: { model: 'chat-model', input: { messages: [{ role: 'user', content: 'hi' }] } } },
          {
            next: (v) => {
              if (v.errors) {
                clearTimeout(timer);
                reject(new Error(JSON.stringify(v.errors)));
                return;
              }
              events.push({ ...v.data!.inferStream, at: performance.now() });
            },
            error: (e) => {
              clearTimeout(timer);
              reject(e instanceof Error ? e : new Error(JSON.stringify(e)));
            },
            complete: () => {
              clearTimeout(timer);
              resolve();
            },
          },
        );
      });
      const tokens = events.filter((e) => e.type === 'TOKEN');
      expect(tokens.length).toBeGreaterThanOrEqual(TOKENS.length);
      expect(tokens.map((e) => e.text).join('')).toBe(ANSWER);
      expect(events.at(-1)).toMatchObject({ type: 'DONE', finishReason: 'stop', usage: { completionTokens: TOKENS.length } });
      expect(events.findIndex((e) => e.type === 'DONE')).toBe(events.length - 1);
      expect(events.at(-1)!.at - tokens[0]!.at).toBeGreaterThan(30);
    } finally {
      await client.dispose();
      s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS });
    }
  });

  it('inferStream over SSE (POST /graphql, accept: text/event-stream): tokens arrive before DONE', async () => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS, tokenDelayMs: 15 });
    try {
      const res = await fetch(`${s.gw.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query: STREAM, variables: { model: 'gen-model', input: { prompt: 'hi' } } }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/event-stream');
      const frames = (await readSse(res)).map((f) => ({ ...(JSON.parse(f.data) as { data?: { inferStream: StreamEvent }; errors?: unknown }), at: f.at }));
      expect(frames.every((f) => !f.errors)).toBe(true);
      const events = frames.filter((f) => f.data).map((f) => ({ ...f.data!.inferStream, at: f.at }));
      const tokens = events.filter((e) => e.type === 'TOKEN');
      expect(tokens.length).toBeGreaterThanOrEqual(TOKENS.length);
      expect(tokens.map((e) => e.text).join('')).toBe(ANSWER);
      expect(events.at(-1)).toMatchObject({ type: 'DONE', finishReason: 'stop' });
      expect(events.at(-1)!.at - tokens[0]!.at).toBeGreaterThan(30);
      // An error before the first token arrives as a coded GraphQL error in the stream.
      const bad = await fetch(`${s.gw.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query: STREAM, variables: { model: 'ghost', input: { prompt: 'hi' } } }),
      });
      const badFrames = (await readSse(bad)).map((f) => JSON.parse(f.data) as { errors?: Array<{ extensions?: { code?: string } }> });
      expect(badFrames.find((f) => f.errors)?.errors?.[0]?.extensions?.code).toBe('MCP_MODEL_NOT_FOUND');
    } finally {
      s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS });
    }
  });

  it('REST POST /api/v1/models/{id}/inference → { result, model_id }', async () => {
    const post = (id: string, body: unknown) =>
      fetch(`${s.gw.url}/api/v1/models/${id}/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const r = await post('gen-model', { input: 'hello' });
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ result: ANSWER, model_id: 'gen-model', version: 'v1', finish_reason: 'stop' });
    const chat = await post('chat-model', { messages: [{ role: 'user', content: 'hi' }] });
    expect((await chat.json()).result).toBe(ANSWER);
    const tensor = await post('doubler', { inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [1, 1, 1, 1] }] });
    expect((await tensor.json()).result).toEqual([{ name: 'OUTPUT0', shape: [1, 4], datatype: 'FP32', data: [2, 2, 2, 2] }]);
    const emb = await post('embed-model', { texts: ['x'] });
    expect((await emb.json()).result).toHaveLength(1);
    const missing = await post('ghost', { input: 'x' });
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toBe('MCP_MODEL_NOT_FOUND');
  });

  it('all four entry points give the same answer for the same model, through the same path', async () => {
    const before = s.openai.counts['/v1/completions'] ?? 0;
    const prompt = 'same question';
    const rest = (
      await (
        await fetch(`${s.gw.url}/api/v1/models/gen-model/inference`, { method: 'POST', body: JSON.stringify({ input: prompt, parameters: { maxTokens: 9 } }) })
      ).json()
    ).result;
    const gql = (await s.gw.gql<{ infer: { text: string } }>(INFER, { model: 'gen-model', input: { prompt, parameters: { maxTokens: 9 } } })).data?.infer.text;
    const oa = (await new OpenAI({ baseURL: `${s.gw.url}/v1`, apiKey: 'x', maxRetries: 0 }).completions.create({ model: 'gen-model', prompt, max_tokens: 9 }))
      .choices[0]!.text;
    const ks = (
      await (
        await fetch(`${s.gw.url}/v2/models/gen-model/infer`, {
          method: 'POST',
          body: JSON.stringify({ inputs: [{ name: 'text_input', shape: [1], datatype: 'BYTES', data: [prompt] }], parameters: { max_tokens: 9 } }),
        })
      ).json()
    ).outputs[0].data[0];
    expect([rest, gql, oa, ks]).toEqual([ANSWER, ANSWER, ANSWER, ANSWER]);
    // Each call reached the upstream once, with the same upstream body.
    expect((s.openai.counts['/v1/completions'] ?? 0) - before).toBe(4);
    expect(s.openai.lastRequest?.body).toEqual({ model: 'fake-model', prompt, max_tokens: 9 });
    // Every entry point is counted by the one inference service's metrics, labelled by entry.
    const metrics = await (await fetch(`${s.gw.url}/metrics`)).text();
    for (const entry of ['rest', 'graphql', 'openai', 'kserve']) expect(metrics).toContain(`entry="${entry}"`);
  });
});
