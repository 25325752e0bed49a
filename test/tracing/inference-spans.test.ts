/**
 * Inference tracing through the real gateway: an OpenAI chat request to fake OpenAI upstreams
 * (one answering 503), spans exported over OTLP/HTTP to a receiver on loopback, the W3C trace
 * context continued from the client and passed upstream; and with tracing off, nothing at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { InferenceRequest } from '../../src/inference/types.ts';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver.ts';

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

/** A chat model with one instance per upstream (ids `chatty-v1-<i>`), round-robin. */
function chatModel(urls: string[]) {
  return {
    id: 'chatty',
    task: 'chat' as const,
    defaultVersion: 'v1',
    versions: [
      { version: 'v1', instances: urls.map((endpoint, i) => ({ id: `chatty-v1-${i}`, backend: 'openai', endpoint, options: { model: 'fake-model' } })) },
    ],
  };
}

async function chat(gw: TestGateway, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'chatty', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16, temperature: 0.5 }),
  });
  return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
}

async function until(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return cond();
}

/** The spans of one trace, and lookups by name and parent. */
function treeOf(spans: ReceivedSpan[], traceId: string) {
  const mine = spans.filter((s) => s.traceId === traceId);
  const named = (name: string) => mine.filter((s) => s.name === name);
  const childrenOf = (s: ReceivedSpan) => mine.filter((c) => c.parentSpanId === s.spanId);
  return { mine, named, childrenOf };
}

describe('tracing on: the spans of an OpenAI chat request with a failover', () => {
  let bad: FakeOpenAIServer;
  let good: FakeOpenAIServer;
  let otlp: OtlpReceiver;
  let gw: TestGateway;

  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    bad = await startFakeOpenAI({ models: ['fake-model'], status: 503, errorBody: { error: { message: 'overloaded' } } });
    good = await startFakeOpenAI({ models: ['fake-model'], tokens: ['Hel', 'lo'], promptTokens: 7 });
    process.env.TRACING_TEST_TOKEN = 'otlp-secret-123';
    gw = await startTestGateway({
      defaultPlugins: false,
      plugins: [{ use: 'openai', options: { timeouts: { connectMs: 2000 } } }, { use: 'round-robin' }],
      // No active health probes: each upstream's last request is an inference (its traceparent is checked).
      router: { balancer: 'round-robin', maxAttempts: 3, healthCheck: { enabled: false } },
      models: [chatModel([bad.url, good.url])],
      tracing: { enabled: true, otlp: { endpoint: otlp.url, headers: { 'x-api-key': 'env:TRACING_TEST_TOKEN' } }, batch: { delayMs: 50 } },
    });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await bad?.close();
    await good?.close();
    await otlp?.close();
    delete process.env.TRACING_TEST_TOKEN;
  });

  it('exports entry, auth, routing, both attempts and backend calls with GenAI attributes; the caller trace continues; the upstream sees the call span as traceparent', async () => {
    const clientTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const clientSpan = '00f067aa0ba902b7';
    // Round-robin: of two requests one goes to the failing instance first and fails over to the good one.
    const answers = [];
    for (let i = 0; i < 2; i++) {
      const a = await chat(gw, { traceparent: `00-${clientTrace}-${clientSpan}-01` });
      expect(a.status).toBe(200);
      answers.push(a);
    }
    await gw.services.tracing!.flush();
    expect(await until(() => otlp.spans.filter((s) => s.kind === SERVER).length >= 2)).toBe(true);
    // The export carried the resolved secret header, and the resource names the service.
    expect(otlp.headers[0]!['x-api-key']).toBe('otlp-secret-123');
    expect(otlp.spans[0]!.resource['service.name']).toBe('capibara-mcp');

    const { mine, named, childrenOf } = treeOf(otlp.spans, clientTrace);
    // Both requests continue the client's trace: their entry spans are children of the client's span.
    const entries = named('POST /v1/chat/completions');
    expect(entries).toHaveLength(2);
    for (const e of entries) {
      expect(e.kind).toBe(SERVER);
      expect(e.parentSpanId).toBe(clientSpan);
      expect(e.attributes['gen_ai.operation.name']).toBe('chat');
      expect(e.attributes['gen_ai.request.model']).toBe('chatty');
      expect(e.attributes['gen_ai.request.max_tokens']).toBe(16);
      expect(e.attributes['gen_ai.request.temperature']).toBe(0.5);
      expect(e.attributes['gen_ai.response.model']).toBe('chatty:v1');
      expect(e.attributes['gen_ai.usage.input_tokens']).toBe(7);
      expect(e.attributes['gen_ai.usage.output_tokens']).toBe(2);
      expect(e.attributes['gen_ai.response.finish_reasons']).toEqual(['stop']);
      expect(e.attributes['http.request.method']).toBe('POST');
      expect(e.status).not.toBe(ERROR);
      const kids = childrenOf(e)
        .map((s) => s.name)
        .sort();
      expect(kids).toEqual(['auth', 'route chatty']);
    }

    // The request that failed over: its routing span has two attempts, the first an error on the 503 instance.
    const routes = named('route chatty');
    expect(routes).toHaveLength(2);
    const failover = routes.find((r) => r.attributes['capibara.routing.attempts'] === 2);
    expect(failover).toBeDefined();
    expect(failover!.attributes['capibara.instance.id']).toBe('chatty-v1-1');
    expect(failover!.attributes['capibara.routing.balancer']).toBe('round-robin');
    const attempts = childrenOf(failover!).sort((a, b) => Number(a.attributes['capibara.attempt']) - Number(b.attributes['capibara.attempt']));
    expect(attempts.map((a) => a.name)).toEqual(['attempt 1', 'attempt 2']);
    expect(attempts[0]!.attributes['capibara.instance.id']).toBe('chatty-v1-0');
    expect(attempts[0]!.status).toBe(ERROR);
    expect(attempts[0]!.attributes['error.type']).toBe('MCP_UPSTREAM_UNAVAILABLE');
    expect(attempts[1]!.attributes['capibara.instance.id']).toBe('chatty-v1-1');
    expect(attempts[1]!.status).not.toBe(ERROR);
    // Each attempt has one backend call: a CLIENT span with the GenAI attributes.
    const calls = attempts.map((a) => childrenOf(a));
    for (const c of calls) {
      expect(c).toHaveLength(1);
      expect(c[0]!.kind).toBe(CLIENT);
      expect(c[0]!.name).toBe('chat chatty');
      expect(c[0]!.attributes['gen_ai.provider.name']).toBe('openai');
      expect(c[0]!.attributes['gen_ai.operation.name']).toBe('chat');
    }
    expect(calls[0]![0]!.status).toBe(ERROR);
    expect(calls[1]![0]!.attributes['gen_ai.usage.input_tokens']).toBe(7);
    expect(calls[1]![0]!.attributes['gen_ai.response.finish_reasons']).toEqual(['stop']);

    // Both upstreams saw the trace context of their backend-call span.
    const sent = (h: unknown) => String(h).split('-');
    const [, badTrace, badParent] = sent(bad.lastRequest!.headers.traceparent);
    const [, goodTrace, goodParent] = sent(good.lastRequest!.headers.traceparent);
    expect(badTrace).toBe(clientTrace);
    expect(goodTrace).toBe(clientTrace);
    // (each upstream's last request: the 503 one's was a failed backend call, the good one's a successful one)
    const callById = new Map(mine.filter((s) => s.kind === CLIENT).map((s) => [s.spanId, s]));
    expect(callById.get(badParent!)?.status).toBe(ERROR);
    expect(callById.get(goodParent!)?.attributes['gen_ai.usage.output_tokens']).toBe(2);
    // Nothing secret in the spans: no prompt text, no export header.
    expect(JSON.stringify(otlp.spans)).not.toContain('otlp-secret-123');
  });

  it('a new trace without traceparent; a refused request ends its entry span with the error', async () => {
    const before = new Set(otlp.spans.map((s) => s.traceId));
    const r = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(r.statusCode).toBe(404);
    await r.body.dump();
    await gw.services.tracing!.flush();
    expect(await until(() => otlp.spans.some((s) => !before.has(s.traceId) && s.kind === SERVER))).toBe(true);
    const entry = otlp.spans.find((s) => !before.has(s.traceId) && s.kind === SERVER)!;
    expect(entry.parentSpanId).toBeUndefined();
    expect(entry.status).toBe(ERROR);
    expect(entry.attributes['error.type']).toBe('MCP_MODEL_NOT_FOUND');
    expect(entry.attributes['gen_ai.request.model']).toBe('no-such-model');
  });
  it('every entry point starts the trace: REST, GraphQL and a streamed OpenAI chat (usage at the end of the stream)', async () => {
    const traceIds = ['11111111111111111111111111111111', '22222222222222222222222222222222', '33333333333333333333333333333333'];
    const tp = (t: string) => ({ traceparent: `00-${t}-00f067aa0ba902b7-01` });
    const rest = await request(`${gw.url}/api/v1/models/chatty/inference`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...tp(traceIds[0]!) },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(rest.statusCode).toBe(200);
    await rest.body.dump();
    const gql = await gw.gql('mutation { infer(model: "chatty", input: { messages: [{ role: "user", content: "hi" }] }) { text } }', {}, tp(traceIds[1]!));
    expect(gql.errors).toBeUndefined();
    const sse = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...tp(traceIds[2]!) },
      body: JSON.stringify({ model: 'chatty', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(sse.statusCode).toBe(200);
    expect(await sse.body.text()).toContain('[DONE]');
    await gw.services.tracing!.flush();
    const entryOf = (t: string) => otlp.spans.find((s) => s.traceId === t && s.kind === SERVER);
    expect(await until(() => traceIds.every((t) => entryOf(t) !== undefined))).toBe(true);
    const [r, g, st] = traceIds.map((t) => entryOf(t)!);
    expect(r!.name).toBe('POST /api/v1/models/{id}/inference');
    expect(r!.attributes['capibara.entry']).toBe('rest');
    expect(g!.name).toBe('graphql infer');
    expect(g!.attributes['capibara.entry']).toBe('graphql');
    expect(st!.attributes['gen_ai.request.stream']).toBe(true);
    expect(st!.attributes['gen_ai.usage.output_tokens']).toBe(2);
    expect(st!.attributes['gen_ai.response.finish_reasons']).toEqual(['stop']);
    for (const e of [r!, g!, st!]) {
      expect(e.attributes['gen_ai.operation.name']).toBe('chat');
      const { childrenOf } = treeOf(otlp.spans, e.traceId);
      // GraphQL authenticates with the context, before the field: its auth span is recorded afterwards, inside the entry's time.
      expect(
        childrenOf(e)
          .map((c) => c.name)
          .sort(),
      ).toEqual(['auth', 'route chatty']);
      const route = childrenOf(e).find((c) => c.name === 'route chatty');
      expect(route).toBeDefined();
      const attempts = childrenOf(route!);
      expect(attempts.length).toBeGreaterThanOrEqual(1);
      expect(childrenOf(attempts.at(-1)!)[0]!.kind).toBe(CLIENT);
    }
  });
});

describe('tracing off (the default)', () => {
  let up: FakeOpenAIServer;
  let otlp: OtlpReceiver;
  let gw: TestGateway;

  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    up = await startFakeOpenAI({ models: ['fake-model'] });
    // The OTLP endpoint is configured but tracing is not enabled.
    gw = await startTestGateway({
      defaultPlugins: false,
      plugins: [{ use: 'openai' }, { use: 'round-robin' }],
      router: { balancer: 'round-robin', healthCheck: { enabled: false } },
      models: [chatModel([up.url])],
      tracing: { otlp: { endpoint: otlp.url } },
    });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await up?.close();
    await otlp?.close();
  });

  it('creates no trace, sends no traceparent upstream and exports nothing', async () => {
    expect(gw.services.tracing).toBeUndefined();
    const seen: Array<InferenceRequest['trace']> = [];
    gw.services.inference.observe({ onFinished: (req) => void seen.push(req.trace) });
    const a = await chat(gw, { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
    expect(a.status).toBe(200);
    expect(seen).toEqual([undefined]);
    expect(up.lastRequest!.headers.traceparent).toBeUndefined();
    await new Promise((r) => setTimeout(r, 300));
    expect(otlp.posts).toBe(0);
  });
});

describe('tracing on with sampleRatio 0', () => {
  let up: FakeOpenAIServer;
  let otlp: OtlpReceiver;
  let gw: TestGateway;

  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    up = await startFakeOpenAI({ models: ['fake-model'] });
    gw = await startTestGateway({
      defaultPlugins: false,
      plugins: [{ use: 'openai' }, { use: 'round-robin' }],
      router: { balancer: 'round-robin', healthCheck: { enabled: false } },
      models: [chatModel([up.url])],
      tracing: { enabled: true, sampleRatio: 0, otlp: { endpoint: otlp.url }, batch: { delayMs: 50 } },
    });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await up?.close();
    await otlp?.close();
  });

  it('records no new trace but passes an unsampled traceparent upstream; a caller that sampled its trace is followed', async () => {
    expect((await chat(gw)).status).toBe(200);
    const [version, traceId, , flags] = String(up.lastRequest!.headers.traceparent).split('-');
    expect(version).toBe('00');
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(flags).toBe('00');
    await gw.services.tracing!.flush();
    expect(otlp.spans).toHaveLength(0);

    const sampled = '5bf92f3577b34da6a3ce929d0e0e4736';
    expect((await chat(gw, { traceparent: `00-${sampled}-00f067aa0ba902b7-01` })).status).toBe(200);
    expect(String(up.lastRequest!.headers.traceparent).split('-')[3]).toBe('01');
    await gw.services.tracing!.flush();
    expect(await until(() => otlp.spans.length >= 5)).toBe(true);
    expect(new Set(otlp.spans.map((s) => s.traceId))).toEqual(new Set([sampled]));
    expect(otlp.spans.map((s) => s.name).sort()).toEqual(['POST /v1/chat/completions', 'attempt 1', 'auth', 'chat chatty', 'route chatty']);
  });
});
