/**
 * The HTTP surface under attack, on loopback with raw sockets: slow-header (slowloris), idle and
 * idle keep-alive sockets are closed; oversized headers are refused; one address cannot hold more
 * than its share of sockets; SSE answers (OpenAI streams, GraphQL subscriptions) outlive the
 * request timeout. Ids with control characters are 4xx on every entry point, and pass-through
 * parameters (`extra_body`, `extra`) obey the bounds of the named ones.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { codeOf, startStack, type Stack } from '../entrypoints/harness.ts';

/** Opens a raw TCP socket to the gateway; resolves when connected. */
function rawSocket(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect({ host: hostname, port: Number(port) }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves with what the server sent and how long it took to close the socket, or rejects after `withinMs`. */
function closedWithin(s: Socket, withinMs: number): Promise<{ ms: number; received: string }> {
  const started = performance.now();
  let received = '';
  s.on('data', (d: Buffer) => (received += d.toString('latin1')));
  s.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`the socket was still open after ${withinMs} ms`));
    }, withinMs);
    s.once('close', () => {
      clearTimeout(t);
      resolve({ ms: performance.now() - started, received });
    });
  });
}

describe('HTTP timeouts and socket limits', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      auth: { enabled: false },
      server: { headersTimeoutMs: 1000, requestTimeoutMs: 2000, keepAliveTimeoutMs: 500, maxHeaderBytes: 8 * 1024 },
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('a slow-header (slowloris) socket is closed after the headers timeout, with 408', async () => {
    const s = await rawSocket(gw.url);
    s.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n');
    // One header line every 200 ms, forever: never finishing the headers.
    let i = 0;
    const drip = setInterval(() => {
      if (!s.destroyed) s.write(`x-drip-${i++}: 1\r\n`);
    }, 200);
    try {
      const { ms, received } = await closedWithin(s, 10_000);
      expect(received).toMatch(/^HTTP\/1\.1 408/);
      expect(ms).toBeGreaterThan(800);
    } finally {
      clearInterval(drip);
    }
  });

  it('a socket that connects and sends nothing is closed', async () => {
    const s = await rawSocket(gw.url);
    const { ms } = await closedWithin(s, 10_000);
    expect(ms).toBeGreaterThan(400);
  });

  it('a slow body (headers sent, body dripping) is closed after the request timeout', async () => {
    const s = await rawSocket(gw.url);
    s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{');
    const drip = setInterval(() => {
      if (!s.destroyed) s.write(' ');
    }, 200);
    try {
      const { ms } = await closedWithin(s, 12_000);
      expect(ms).toBeGreaterThan(1500);
    } finally {
      clearInterval(drip);
    }
  });

  it('an idle keep-alive connection is closed after keepAliveTimeoutMs', async () => {
    const s = await rawSocket(gw.url);
    const closed = closedWithin(s, 10_000);
    s.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n');
    const { received } = await closed;
    expect(received).toMatch(/^HTTP\/1\.1 200/);
  });

  it('headers over maxHeaderBytes are refused with 431', async () => {
    const r = await fetch(`${gw.url}/healthz`, { headers: { 'x-big': 'a'.repeat(16 * 1024) } }).catch((e: unknown) => e);
    // Node answers 431 and closes; fetch may see the status or a closed socket.
    if (r instanceof Response) expect(r.status).toBe(431);
    else expect(r).toBeInstanceOf(Error);
    const s = await rawSocket(gw.url);
    const closed = closedWithin(s, 5000);
    s.write(`GET /healthz HTTP/1.1\r\nHost: localhost\r\nx-big: ${'a'.repeat(16 * 1024)}\r\n\r\n`);
    expect((await closed).received).toMatch(/^HTTP\/1\.1 431/);
  });
});

describe('sockets per IP address', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ auth: { enabled: false }, server: { maxSocketsPerIp: 5, headersTimeoutMs: 30_000 } });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('past maxSocketsPerIp a new connection is closed at once; a slot frees when one closes', async () => {
    const held = await Promise.all(Array.from({ length: 5 }, () => rawSocket(gw.url)));
    try {
      const extra = await rawSocket(gw.url);
      const { ms } = await closedWithin(extra, 5000);
      expect(ms).toBeLessThan(4000);
      held.pop()!.destroy();
      await new Promise((r) => setTimeout(r, 100));
      const r = await fetch(`${gw.url}/healthz`, { headers: { connection: 'close' } });
      expect(r.status).toBe(200);
    } finally {
      for (const s of held) s.destroy();
    }
  });
});

describe('SSE answers are not cut by the request timeout', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ auth: { enabled: false }, server: { requestTimeoutMs: 1000, headersTimeoutMs: 500 } });
    s.openai.setBehavior({ tokens: ['a', 'b', 'c', 'd', 'e', 'f'], tokenDelayMs: 500 });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('an OpenAI stream lasting ~3 s (3× the request timeout) arrives whole', async () => {
    const started = performance.now();
    const r = await fetch(`${s.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat-model', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(performance.now() - started).toBeGreaterThan(2000);
    const content = text
      .split('\n\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => (JSON.parse(l.slice(6)) as { choices: Array<{ delta?: { content?: string } }> }).choices[0]?.delta?.content ?? '')
      .join('');
    expect(content).toBe('abcdef');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('a GraphQL subscription over SSE lasting ~3 s arrives whole', async () => {
    const started = performance.now();
    const r = await fetch(`${s.gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({
        query: 'subscription { inferStream(model: "chat-model", input: { messages: [{ role: "user", content: "hi" }] }) { type text } }',
      }),
    });
    const text = await r.text();
    expect(r.status, text).toBe(200);
    expect(performance.now() - started).toBeGreaterThan(2000);
    const events = text
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)) as { data?: { inferStream: { type: string; text: string } } });
    expect(events.map((e) => e.data?.inferStream.text ?? '').join('')).toBe('abcdef');
    expect(events.at(-1)?.data?.inferStream.type).toBe('DONE');
  });

  it('a WebSocket stays open past the request timeout and still answers', async () => {
    const ws = new WebSocket(`${s.gw.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    const received: Array<{ type: string; payload?: unknown }> = [];
    let closed: number | undefined;
    ws.on('message', (d) => received.push(JSON.parse(String(d)) as { type: string }));
    ws.on('close', (code) => (closed = code));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ type: 'connection_init' }));
    await new Promise((r) => setTimeout(r, 3000));
    expect(closed).toBeUndefined();
    ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: '{ __typename }' } }));
    const deadline = Date.now() + 5000;
    while (!received.some((m) => m.type === 'complete') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(received.map((m) => m.type)).toEqual(['connection_ack', 'next', 'complete']);
    ws.terminate();
  });
});

describe('ids with control characters and pass-through parameters', () => {
  let s: Stack;
  const post = (path: string, body: unknown) =>
    fetch(`${s.gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const expect4xx = async (r: Response, code: string, label: string) => {
    const body: unknown = await r.json();
    expect({ label, status: r.status, code: codeOf(body) }).toEqual({ label, status: 400, code });
  };
  beforeAll(async () => {
    s = await startStack({ auth: { enabled: false } });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('a NUL byte in a model id is a 400 on REST, OpenAI and KServe (it was a 500 from PostgreSQL)', async () => {
    for (const path of ['/api/v1/models/chat%00model', '/v1/models/chat%00model', '/v2/models/chat%00model', '/v2/models/doubler/versions/1%00']) {
      await expect4xx(await fetch(`${s.gw.url}${path}`), 'MCP_VALIDATION_FAILED', path);
    }
    await expect4xx(await post('/api/v1/models/gen%00model/inference', { input: 'hi' }), 'MCP_VALIDATION_FAILED', 'rest inference');
    await expect4xx(await post('/api/v1/models/gen-model/inference', { input: 'hi', version: 'v\u0000' }), 'MCP_VALIDATION_FAILED', 'rest version');
    await expect4xx(
      await post('/v1/chat/completions', { model: 'chat\u0000model', messages: [{ role: 'user', content: 'hi' }] }),
      'MCP_VALIDATION_FAILED',
      'openai model',
    );
    await expect4xx(await post('/v1/embeddings', { model: 'embed\u0001model', input: 'hi' }), 'MCP_VALIDATION_FAILED', 'openai embeddings');
    await expect4xx(
      await post('/v2/models/doubler%00/infer', { inputs: [{ name: 'x', shape: [1], datatype: 'FP32', data: [1] }] }),
      'MCP_VALIDATION_FAILED',
      'kserve infer',
    );
  });

  it('max_tokens in extra_body obeys the max_tokens cap; a small one reaches the model as the named parameter', async () => {
    const chat = (extra: unknown, more: Record<string, unknown> = {}) =>
      post('/v1/chat/completions', { model: 'chat-model', messages: [{ role: 'user', content: 'hi' }], extra_body: extra, ...more });
    await expect4xx(await chat({ max_tokens: 1_000_000 }), 'MCP_VALIDATION_FAILED', 'extra max_tokens');
    await expect4xx(await chat({ max_completion_tokens: 1_000_000 }), 'MCP_VALIDATION_FAILED', 'extra max_completion_tokens');
    await expect4xx(await chat({ temperature: 99 }), 'MCP_VALIDATION_FAILED', 'extra temperature');
    await expect4xx(await chat({ n: 50 }), 'MCP_VALIDATION_FAILED', 'extra n');
    await expect4xx(await chat({ model: 'another-upstream-model' }), 'MCP_VALIDATION_FAILED', 'extra model');
    await expect4xx(await chat({ blob: 'x'.repeat(64 * 1024) }), 'MCP_VALIDATION_FAILED', 'extra too large');
    await expect4xx(await chat(JSON.parse(`${'{"a":'.repeat(20)}1${'}'.repeat(20)}`)), 'MCP_VALIDATION_FAILED', 'extra too deep');
    await expect4xx(await chat('max_tokens=1000000'), 'MCP_VALIDATION_FAILED', 'extra not an object');

    const ok = await chat({ max_completion_tokens: 7, logit_bias: { '42': 1 } });
    expect(ok.status).toBe(200);
    const sent = s.openai.lastRequest!.body as Record<string, unknown>;
    expect(sent.max_tokens).toBe(7);
    expect(sent.max_completion_tokens).toBeUndefined();
    expect(sent.logit_bias).toEqual({ '42': 1 });
    // Given both ways, the named parameter wins (and is the one checked).
    expect((await chat({ max_tokens: 9 }, { max_tokens: 3 })).status).toBe(200);
    expect((s.openai.lastRequest!.body as Record<string, unknown>).max_tokens).toBe(3);
  });

  it('the same bounds for `extra` on GraphQL and REST', async () => {
    const g = await s.gw.gql('mutation { infer(model: "gen-model", input: { prompt: "hi", extra: { max_tokens: 1000000 } }) { text } }');
    expect(g.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    await expect4xx(
      await post('/api/v1/models/gen-model/inference', { input: { task: 'generate', prompt: 'hi', extra: { max_new_tokens: 1_000_000 } } }),
      'MCP_VALIDATION_FAILED',
      'rest extra',
    );
    const fine = await s.gw.gql('mutation { infer(model: "gen-model", input: { prompt: "hi", extra: { max_tokens: 5 } }) { text } }');
    expect(fine.errors).toBeUndefined();
    expect((s.openai.lastRequest!.body as Record<string, unknown>).max_tokens).toBe(5);
  });
});
