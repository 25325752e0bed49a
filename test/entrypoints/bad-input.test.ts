import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.ts';
import { codeOf, startStack, type Stack } from './harness.ts';

const LIMIT = 16 * 1024;

describe('bad input on every entry point → coded 4xx, never a 500', () => {
  let s: Stack;
  const post = (path: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
    fetch(`${s.gw.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : Buffer.from(body),
    });
  beforeAll(async () => {
    s = await startStack({ server: { maxBodyBytes: LIMIT } });
  });
  afterAll(async () => {
    await s?.close();
  });

  async function expectCode(res: Response, status: number, code: string) {
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    expect({ status: res.status, code: codeOf(body) }).toEqual({ status, code });
    expect(ERROR_CODES[code as keyof typeof ERROR_CODES]).toBeDefined();
  }

  const ENDPOINTS = ['/api/v1/models/gen-model/inference', '/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v2/models/doubler/infer'];

  it('invalid JSON, empty bodies and non-object bodies', async () => {
    for (const path of ENDPOINTS) {
      await expectCode(await post(path, '{"model": "chat-model", '), 400, 'MCP_INVALID_JSON');
      await expectCode(await post(path, ''), 400, 'MCP_INVALID_JSON');
      await expectCode(await post(path, new Uint8Array([0xff, 0xfe, 0x00, 0x7b])), 400, 'MCP_INVALID_JSON');
      for (const body of ['[]', '"text"', '42', 'null', 'true']) await expectCode(await post(path, body), 400, 'MCP_VALIDATION_FAILED');
    }
    // GraphQL: a 400 with a GraphQL error (its code is Yoga's BAD_REQUEST; recoding it belongs to src/graphql/yoga.ts).
    const gql = await post('/graphql', '{"query": ');
    expect(gql.status).toBe(400);
    expect(codeOf(await gql.json())).toMatch(/BAD_REQUEST$/);
  });

  it('bodies over server.maxBodyBytes → 413 MCP_PAYLOAD_TOO_LARGE (declared length and chunked)', async () => {
    const big = JSON.stringify({ model: 'chat-model', messages: [{ role: 'user', content: 'x'.repeat(LIMIT) }] });
    for (const path of [...ENDPOINTS, '/graphql']) await expectCode(await post(path, big), 413, 'MCP_PAYLOAD_TOO_LARGE');
    // Without content-length (chunked upload).
    const chunked = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 8; i++) c.enqueue(new TextEncoder().encode(i === 0 ? '{"input":"' : 'y'.repeat(4096)));
        c.enqueue(new TextEncoder().encode('"}'));
        c.close();
      },
    });
    const [a, b] = chunked.tee();
    const res = await fetch(`${s.gw.url}/api/v1/models/gen-model/inference`, { method: 'POST', body: a, duplex: 'half' } as RequestInit);
    await expectCode(res, 413, 'MCP_PAYLOAD_TOO_LARGE');
    // GraphQL bodies are limited by their declared length, so one of unknown length is refused outright.
    const gql = await fetch(`${s.gw.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: b, duplex: 'half' } as RequestInit);
    await expectCode(gql, 411, 'MCP_LENGTH_REQUIRED');
    // The gateway still answers on fresh connections.
    expect((await fetch(`${s.gw.url}/healthz`)).status).toBe(200);
  });

  it('unknown models and versions', async () => {
    await expectCode(await post('/api/v1/models/ghost/inference', '{"input":"x"}'), 404, 'MCP_MODEL_NOT_FOUND');
    await expectCode(await post('/api/v1/models/gen-model/inference', '{"input":"x","version":"v9"}'), 404, 'MCP_VERSION_NOT_FOUND');
    await expectCode(await post('/v1/chat/completions', '{"model":"ghost","messages":[{"role":"user","content":"x"}]}'), 404, 'MCP_MODEL_NOT_FOUND');
    await expectCode(await post('/v1/chat/completions', '{"model":"chat-model:v9","messages":[{"role":"user","content":"x"}]}'), 404, 'MCP_VERSION_NOT_FOUND');
    await expectCode(await post('/v1/embeddings', '{"model":"ghost","input":"x"}'), 404, 'MCP_MODEL_NOT_FOUND');
    await expectCode(await post('/v2/models/ghost/infer', '{"inputs":[]}'), 404, 'MCP_MODEL_NOT_FOUND');
    await expectCode(await fetch(`${s.gw.url}/api/v1/models/ghost`), 404, 'MCP_MODEL_NOT_FOUND');
    await expectCode(await fetch(`${s.gw.url}/api/v1/nothing-here`), 404, 'MCP_NOT_FOUND');
    await expectCode(await fetch(`${s.gw.url}/v1/nothing-here`), 404, 'MCP_NOT_FOUND');
    await expectCode(await fetch(`${s.gw.url}/v2/nothing-here`), 404, 'MCP_NOT_FOUND');
    // A percent-encoding that does not decode is a client error, not a 500.
    await expectCode(await post('/api/v1/models/%E0%A4%A/inference', '{"input":"x"}'), 400, 'MCP_BAD_REQUEST');
    await expectCode(await fetch(`${s.gw.url}/v1/models/%E0%A4%A`), 400, 'MCP_BAD_REQUEST');
    await expectCode(await fetch(`${s.gw.url}/v2/models/%E0%A4%A`), 400, 'MCP_BAD_REQUEST');
  });

  it('wrong shapes, dtypes and field types', async () => {
    await expectCode(
      await post('/api/v1/models/doubler/inference', JSON.stringify({ inputs: [{ name: 'INPUT0', shape: [1, 5], datatype: 'FP32', data: [1, 2, 3, 4, 5] }] })),
      400,
      'MCP_INVALID_INPUT_SHAPE',
    );
    await expectCode(
      await post('/api/v1/models/doubler/inference', JSON.stringify({ inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'complex', data: [1, 2, 3, 4] }] })),
      400,
      'MCP_VALIDATION_FAILED',
    );
    await expectCode(
      await post('/api/v1/models/doubler/inference', JSON.stringify({ inputs: [{ name: 'INPUT0', shape: 'x', datatype: 'FP32', data: [1] }] })),
      400,
      'MCP_VALIDATION_FAILED',
    );
    await expectCode(
      await post('/api/v1/models/doubler/inference', JSON.stringify({ inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [[1, 2, 3, 4]] }] })),
      400,
      'MCP_VALIDATION_FAILED',
    );
    await expectCode(
      await post('/v2/models/gen-model/infer', JSON.stringify({ inputs: [{ name: 'text_input', shape: [1], datatype: 'BYTES', data: null }] })),
      400,
      'MCP_VALIDATION_FAILED',
    );
    await expectCode(
      await post('/v2/models/gen-model/infer', JSON.stringify({ inputs: [{ name: 'text_input', shape: [1], datatype: 'BYTES', data: [{ a: 1 }] }] })),
      400,
      'MCP_VALIDATION_FAILED',
    );
    await expectCode(await post('/api/v1/models/gen-model/inference', JSON.stringify({ input: 5 })), 400, 'MCP_VALIDATION_FAILED');
    await expectCode(await post('/api/v1/models/gen-model/inference', JSON.stringify({ input: 'x', version: 5 })), 400, 'MCP_VALIDATION_FAILED');
    await expectCode(
      await post('/api/v1/models/gen-model/inference', JSON.stringify({ input: 'x', parameters: { maxTokens: -1 } })),
      400,
      'MCP_VALIDATION_FAILED',
    );
    await expectCode(await post('/v1/chat/completions', JSON.stringify({ model: 'chat-model', messages: 'hi' })), 400, 'MCP_VALIDATION_FAILED');
    await expectCode(
      await post('/v1/chat/completions', JSON.stringify({ model: 'chat-model', messages: [{ role: 'user', content: 'x' }], stream: 'yes' })),
      400,
      'MCP_VALIDATION_FAILED',
    );
    await expectCode(
      await post('/v1/chat/completions', JSON.stringify({ model: 'chat-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 'many' })),
      400,
      'MCP_VALIDATION_FAILED',
    );
    await expectCode(
      await post('/v1/chat/completions', JSON.stringify({ model: 42, messages: [{ role: 'user', content: 'x' }] })),
      400,
      'MCP_VALIDATION_FAILED',
    );
    await expectCode(await post('/v1/embeddings', JSON.stringify({ model: 'embed-model', input: [1, 2] })), 400, 'MCP_VALIDATION_FAILED');
  });

  it('unsupported parameters and tasks', async () => {
    await expectCode(
      await post('/v1/chat/completions', JSON.stringify({ model: 'chat-model', messages: [{ role: 'user', content: 'x' }], tools: [] })),
      400,
      'MCP_UNSUPPORTED_PARAMETER',
    );
    await expectCode(
      await post('/v1/chat/completions', JSON.stringify({ model: 'chat-model', messages: [{ role: 'user', content: 'x' }], n: 3 })),
      400,
      'MCP_UNSUPPORTED_PARAMETER',
    );
    await expectCode(await post('/v1/completions', JSON.stringify({ model: 'gen-model', prompt: ['a', 'b'] })), 400, 'MCP_UNSUPPORTED_PARAMETER');
    await expectCode(await post('/v1/embeddings', JSON.stringify({ model: 'embed-model', input: 'x', dimensions: 3 })), 400, 'MCP_UNSUPPORTED_PARAMETER');
    await expectCode(await post('/api/v1/models/gen-model/inference', JSON.stringify({ input: 'x', parameters: { beam: 4 } })), 400, 'MCP_VALIDATION_FAILED');
    await expectCode(
      await post('/v1/embeddings', JSON.stringify({ model: 'embed-model', input: 'x', encoding_format: 'int8' })),
      400,
      'MCP_UNSUPPORTED_PARAMETER',
    );
    await expectCode(
      await post('/v1/chat/completions', JSON.stringify({ model: 'doubler', messages: [{ role: 'user', content: 'x' }] })),
      400,
      'MCP_UNSUPPORTED_PARAMETER',
    );
    await expectCode(
      await post('/v1/chat/completions', JSON.stringify({ model: 'doubler', messages: [{ role: 'user', content: 'x' }], stream: true })),
      400,
      'MCP_UNSUPPORTED_PARAMETER',
    );
  });

  it('GraphQL: bad arguments are coded errors', async () => {
    const r1 = await s.gw.gql('mutation { infer(model: "gen-model", input: { prompt: 5 }) { text } }');
    expect(r1.errors?.[0]?.extensions?.code).toBe('MCP_BAD_REQUEST');
    const r2 = await s.gw.gql(
      'mutation { infer(model: "doubler", input: { tensors: [{ name: "INPUT0", shape: [1, 4], datatype: "FP32", data: "nope" }] }) { text } }',
    );
    expect(r2.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const r3 = await s.gw.gql('mutation { infer(model: "gen-model", input: {}) { text } }');
    expect(r3.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
  });
});
