import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpError } from '../errors.ts';
import { SseParser, parseSse } from './sse.ts';
import { parseNdjson } from './ndjson.ts';
import { mapHttpError, mapTransportError, parseRetryAfter } from './errors.ts';
import { UpstreamClient, joinUrl } from './client.ts';
import { upstreamPluginOptions } from './options.ts';
import { startFakeOpenAI, type FakeOpenAIServer } from '../testing/fake-openai-server.ts';
import { startFaultProxy, type FaultProxy } from '../testing/fault-proxy.ts';
import { listenOnLoopback, type LoopbackServer } from '../testing/loopback-server.ts';

async function* chunks(parts: Array<string | Uint8Array>): AsyncGenerator<string | Uint8Array> {
  for (const p of parts) yield p;
}
async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
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
function call(extra: { signal?: AbortSignal; deadline?: number } = {}) {
  return { requestId: 'req-1', signal: extra.signal ?? new AbortController().signal, deadline: extra.deadline };
}
/** A port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('SseParser', () => {
  it('parses events, comments, multi-line data, CRLF and [DONE]', async () => {
    const text = ': keep-alive\r\ndata: {"a":1}\r\n\r\nevent: x\ndata: line1\ndata: line2\nid: 7\n\ndata: [DONE]\n\n';
    const events = await collect(parseSse(chunks([text, 'data: after-done\n\n'])));
    expect(events).toEqual(
      [
        { event: 'message', data: '{"a":1}', id: undefined },
        { event: 'x', data: 'line1\nline2', id: '7' },
        { event: 'message', data: '[DONE]', id: '7' },
      ].map((e) => (e.id === undefined ? { event: e.event, data: e.data } : e)),
    );
  });

  it('gives the same events however the bytes are split (incl. inside UTF-8 characters and CRLF)', () => {
    const text = 'data: héllo wörld 🎉\r\n\r\ndata: {"x":"ü"}\r\rdata: a\n\nevent: e\ndata: b\r\n\r\n';
    const bytes = new TextEncoder().encode(text);
    const whole = new SseParser().push(bytes);
    expect(whole.map((e) => e.data)).toEqual(['héllo wörld 🎉', '{"x":"ü"}', 'a', 'b']);
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 8 }), (cuts) => {
        const sorted = [...cuts].sort((a, b) => a - b);
        const parser = new SseParser();
        const events = [];
        let prev = 0;
        for (const c of [...sorted, bytes.length]) {
          events.push(...parser.push(bytes.subarray(prev, c)));
          prev = c;
        }
        expect(events).toEqual(whole);
      }),
      { numRuns: 200 },
    );
  });
});

describe('parseNdjson', () => {
  it('splits lines across chunks', async () => {
    expect(await collect(parseNdjson(chunks(['{"a":', '1}\n{"b"', ':2}\n', '\n{"c":3}'])))).toEqual([{ a: 1 }, { b: 2 }, { c: 3 }]);
  });
});

describe('error mapping', () => {
  it('parses Retry-After in seconds and as an HTTP date', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter('0.5')).toBe(500);
    const now = Date.parse('2024-01-01T00:00:00Z');
    expect(parseRetryAfter('Mon, 01 Jan 2024 00:00:10 GMT', now)).toBe(10_000);
    expect(parseRetryAfter('Sun, 31 Dec 2023 00:00:10 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });

  it('maps statuses', () => {
    const rl = mapHttpError(429, { 'retry-after': '2' }, '{"error":{"message":"slow down"}}');
    expect([rl.code, rl.retryable, rl.details?.retryAfterMs, rl.message]).toEqual([
      'MCP_UPSTREAM_RATE_LIMITED',
      true,
      2000,
      'the model server is rate limiting us (upstream status 429)',
    ]);
    for (const s of [502, 504]) expect([mapHttpError(s, {}, '').code, mapHttpError(s, {}, '').retryable]).toEqual(['MCP_UPSTREAM_ERROR', true]);
    const u = mapHttpError(503, {}, 'overloaded');
    expect([u.code, u.retryable, u.details?.status, u.message]).toEqual([
      'MCP_UPSTREAM_UNAVAILABLE',
      true,
      503,
      'the model server is unavailable (upstream status 503)',
    ]);
    const nf = mapHttpError(404, {}, '{"error":"model foo not found"}');
    expect([nf.code, nf.retryable, nf.message]).toEqual(['MCP_MODEL_NOT_FOUND', false, 'the model server does not know this model (upstream status 404)']);
    const up = mapHttpError(400, {}, '{"error":{"message":"Unsupported parameter: top_k","param":"top_k"}}');
    expect([up.code, up.details?.param]).toEqual(['MCP_UNSUPPORTED_PARAMETER', 'top_k']);
    const br = mapHttpError(422, {}, '{"detail":"prompt too long"}');
    expect([br.code, br.retryable, br.message]).toEqual(['MCP_BAD_REQUEST', false, 'the model server rejected the request (upstream status 422)']);
    // the upstream's words never reach the error; only short identifiers do
    const leak = mapHttpError(500, {}, '{"error":{"message":"db password=hunter2","code":"internal error: hunter2 at /etc","type":"server_error"}}');
    expect(JSON.stringify(leak.toJSON())).not.toContain('hunter2');
    expect(leak.details?.upstreamType).toBe('server_error');
    expect(mapHttpError(401, {}, '').code).toBe('MCP_UPSTREAM_ERROR');
    expect(mapHttpError(500, {}, '').retryable).toBe(false);
  });

  it('maps transport errors', () => {
    const refused = mapTransportError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }));
    expect([refused.code, refused.retryable]).toEqual(['MCP_UPSTREAM_UNAVAILABLE', true]);
    const agg = mapTransportError(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })]));
    expect(agg.code).toBe('MCP_UPSTREAM_UNAVAILABLE');
    const ct = mapTransportError(Object.assign(new Error('x'), { code: 'UND_ERR_CONNECT_TIMEOUT' }), { connectMs: 10 });
    expect([ct.code, ct.retryable, ct.details?.timeout]).toEqual(['MCP_DEADLINE_EXCEEDED', true, 'connect']);
    const ht = mapTransportError(Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' }));
    expect([ht.code, ht.retryable, ht.details?.timeout]).toEqual(['MCP_DEADLINE_EXCEEDED', false, 'firstByte']);
    expect(mapTransportError(new DOMException('aborted', 'AbortError')).code).toBe('MCP_CANCELLED');
  });

  it('says whether the request may have run on the model (retry safety)', () => {
    const transport = (code: string) => mapTransportError(Object.assign(new Error('x'), { code })).mayHaveExecuted;
    expect(transport('ECONNREFUSED')).toBe(false);
    expect(transport('ENOTFOUND')).toBe(false);
    expect(transport('UND_ERR_CONNECT_TIMEOUT')).toBe(false);
    expect(transport('ECONNRESET')).toBe(true);
    expect(transport('UND_ERR_SOCKET')).toBe(true);
    expect(transport('UND_ERR_HEADERS_TIMEOUT')).toBe(true);
    const http = (status: number) => mapHttpError(status, {}, '').mayHaveExecuted;
    expect([http(429), http(503)]).toEqual([false, false]);
    expect([http(500), http(502), http(504), http(408), http(400)]).toEqual([true, true, true, true, true]);
    expect(new McpError('MCP_UPSTREAM_ERROR').mayHaveExecuted).toBe(true);
  });

  it('accepts default plugin options', () => {
    const o = upstreamPluginOptions.parse(undefined);
    expect(o.timeouts.connectMs).toBe(5000);
    expect(o.connections).toBe(32);
    expect(() => upstreamPluginOptions.parse({ timeout: {} })).toThrow();
  });
});

describe('UpstreamClient against real loopback servers', () => {
  let fake: FakeOpenAIServer;
  let proxy: FaultProxy;
  let client: UpstreamClient;
  beforeAll(async () => {
    fake = await startFakeOpenAI();
    proxy = await startFaultProxy({ target: fake.url, seed: 42 });
    client = new UpstreamClient({ connections: 4, timeouts: { connectMs: 500, firstByteMs: 300, idleMs: 300, totalMs: 2000, healthMs: 500 } });
  });
  afterAll(async () => {
    await client.close();
    await proxy.close();
    await fake.close();
  });

  it('reuses keep-alive connections', async () => {
    const before = fake.connections;
    for (let i = 0; i < 30; i++) await client.json({ url: joinUrl(fake.url, 'models'), call: call() });
    await Promise.all(Array.from({ length: 20 }, () => client.json({ url: joinUrl(fake.url, 'models'), call: call() })));
    expect(fake.connections - before).toBeLessThanOrEqual(4);
    expect(fake.lastRequest?.headers['x-request-id']).toBe('req-1');
  });

  it("sends the call's trace context (traceparent, tracestate) on JSON and streamed requests, and none when the call has none", async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await client.json({ url: joinUrl(fake.url, 'models'), call: { ...call(), traceparent, tracestate: 'vendor=1' } });
    expect(fake.lastRequest?.headers.traceparent).toBe(traceparent);
    expect(fake.lastRequest?.headers.tracestate).toBe('vendor=1');
    const s = await client.open({
      url: joinUrl(fake.url, 'chat/completions'),
      json: { model: 'm', stream: true, messages: [] },
      call: { ...call(), traceparent },
    });
    for await (const chunk of s.body) void chunk;
    expect(fake.lastRequest?.headers.traceparent).toBe(traceparent);
    await client.json({ url: joinUrl(fake.url, 'models'), call: call() });
    expect(fake.lastRequest?.headers.traceparent).toBeUndefined();
  });

  it('maps connection refused to a retryable UNAVAILABLE', async () => {
    const port = await closedPort();
    const e = await rejection(client.json({ url: `http://127.0.0.1:${port}/v1/models`, call: call() }));
    expect([e.code, e.retryable, e.mayHaveExecuted]).toEqual(['MCP_UPSTREAM_UNAVAILABLE', true, false]);
  });

  it('maps a reset connection to a retryable UNAVAILABLE', async () => {
    proxy.set({ reset: true });
    const e = await rejection(client.json({ url: joinUrl(proxy.url, 'models'), call: call() }));
    expect([e.code, e.retryable, e.mayHaveExecuted]).toEqual(['MCP_UPSTREAM_UNAVAILABLE', true, true]);
    proxy.set({});
  });

  it('maps a black hole to a first-byte timeout (not retryable)', async () => {
    proxy.set({ blackHole: true });
    const t0 = Date.now();
    const e = await rejection(client.json({ url: joinUrl(proxy.url, 'models'), call: call() }));
    expect([e.code, e.retryable, e.details?.timeout]).toEqual(['MCP_DEADLINE_EXCEEDED', false, 'firstByte']);
    expect(Date.now() - t0).toBeLessThan(1500);
    proxy.set({});
  });

  it('honours the call deadline before the total timeout', async () => {
    proxy.set({ latencyMs: 250 });
    const e = await rejection(client.json({ url: joinUrl(proxy.url, 'models'), call: call({ deadline: Date.now() + 80 }) }));
    expect([e.code, e.details?.timeout]).toEqual(['MCP_DEADLINE_EXCEEDED', 'deadline']);
    const past = await rejection(client.json({ url: joinUrl(proxy.url, 'models'), call: call({ deadline: Date.now() - 1 }) }));
    expect(past.code).toBe('MCP_DEADLINE_EXCEEDED');
    proxy.set({});
  });

  it('maps injected 503 and 429 answers', async () => {
    proxy.set({ errorRate: 1, errorStatus: 503 });
    const u = await rejection(client.json({ url: joinUrl(proxy.url, 'models'), call: call() }));
    expect([u.code, u.retryable, u.details?.status]).toEqual(['MCP_UPSTREAM_UNAVAILABLE', true, 503]);
    proxy.set({ errorRate: 1, errorStatus: 429, retryAfter: '7' });
    const r = await rejection(client.json({ url: joinUrl(proxy.url, 'models'), call: call() }));
    expect([r.code, r.retryable, r.details?.retryAfterMs]).toEqual(['MCP_UPSTREAM_RATE_LIMITED', true, 7000]);
    proxy.set({});
  });

  it('aborts the upstream request when the call signal aborts', async () => {
    fake.setBehavior({ tokens: ['a', 'b', 'c', 'd', 'e', 'f'], tokenDelayMs: 100 });
    const abortedBefore = fake.aborted;
    const ac = new AbortController();
    const s = await client.open({ url: joinUrl(fake.url, 'completions'), json: { prompt: 'x', stream: true }, call: call({ signal: ac.signal }) });
    const it = s.body[Symbol.asyncIterator]();
    await it.next();
    ac.abort();
    const e = await rejection(it.next());
    expect(e.code).toBe('MCP_CANCELLED');
    await expect.poll(() => fake.aborted, { timeout: 2000, interval: 20 }).toBe(abortedBefore + 1);
    fake.setBehavior({});
  });
});

describe('UpstreamClient: answers it cannot use', () => {
  let server: LoopbackServer;
  let client: UpstreamClient;
  const big = 'x'.repeat(300 * 1024);
  beforeAll(async () => {
    server = await listenOnLoopback((req, res) => {
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ big }));
        return;
      }
      if (req.url === '/big-error') {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`model crashed: ${big}`);
        return;
      }
      if (req.url === '/not-json') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"half": ');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    client = new UpstreamClient({ maxResponseBytes: 100 * 1024, timeouts: { totalMs: 2000 } });
  });
  afterAll(async () => {
    await client.close();
    await server.close();
  });

  it('refuses a 2xx answer larger than maxResponseBytes, and keeps working', async () => {
    const e = await rejection(client.json({ url: `${server.origin}/big`, call: call() }));
    expect([e.code, e.details?.limitBytes]).toEqual(['MCP_UPSTREAM_ERROR', 100 * 1024]);
    expect((await client.json<{ ok: boolean }>({ url: `${server.origin}/ok`, call: call() })).data).toEqual({ ok: true });
  });

  it('maps an error answer from its first 64 KiB without reading the rest', async () => {
    const e = await rejection(client.json({ url: `${server.origin}/big-error`, call: call() }));
    expect([e.code, e.details?.status]).toEqual(['MCP_UPSTREAM_ERROR', 500]);
    expect(e.message).toBe('the model server failed (upstream status 500)');
  });

  it('says so when a 2xx answer is not JSON', async () => {
    const e = await rejection(client.json({ url: `${server.origin}/not-json`, call: call() }));
    expect([e.code, e.details?.status]).toEqual(['MCP_UPSTREAM_ERROR', 200]);
  });
});
