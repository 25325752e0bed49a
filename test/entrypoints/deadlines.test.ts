import { createClient } from 'graphql-ws';
import OpenAI, { APIError } from 'openai';
import WebSocket from 'ws';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { stallMeter } from '../support/stall-meter.ts';
import { TOKENS, startStack, until, type Stack } from './harness.ts';

const INFER = 'mutation ($m: ID!, $i: InferInput!, $t: Int) { infer(model: $m, input: $i, timeoutMs: $t) { text } }';
const LONG = Array.from({ length: 60 }, (_, i) => `t${i} `);

describe('deadlines and cancellation on every entry point', () => {
  let s: Stack;
  let client: OpenAI;
  beforeAll(async () => {
    // Probes stay off (harness default): the slow-upstream cases would otherwise (rightly) mark the instance unhealthy.
    s = await startStack();
    client = new OpenAI({ baseURL: `${s.gw.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 10_000 });
  });
  beforeEach(() => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS });
    s.kserve.setBehavior({});
  });
  afterAll(async () => {
    await s?.close();
  });

  /** A GraphQL POST returning the HTTP status too (Yoga turns extensions.http into the status). */
  async function gqlWithStatus(variables: Record<string, unknown>, headers: Record<string, string> = {}) {
    const r = await fetch(`${s.gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', ...headers },
      body: JSON.stringify({ query: INFER, variables }),
    });
    return { status: r.status, body: (await r.json()) as { errors?: Array<{ extensions?: { code?: string } }> } };
  }

  /** Asserts a 504 MCP_DEADLINE_EXCEEDED arriving close to the deadline, and that the upstream call was abandoned. */
  async function expectDeadline(call: () => Promise<{ status: number; code: string | undefined }>, deadlineMs: number, upstream: { aborted: number }) {
    const aborted = upstream.aborted;
    const stall = stallMeter(); // the upper bound is the gateway's own time (see stall-meter.ts)
    const t0 = performance.now();
    const r = await call();
    const took = performance.now() - t0;
    expect(r).toEqual({ status: 504, code: 'MCP_DEADLINE_EXCEEDED' });
    expect(took).toBeGreaterThanOrEqual(deadlineMs - 5);
    expect(took).toBeLessThan(deadlineMs + 400 + stall.stop());
    // The gateway hung up on the slow upstream instead of leaving the call running.
    expect(await until(() => upstream.aborted > aborted, 1000)).toBe(true);
  }

  it('REST: x-mcp-timeout-ms past a slow upstream → 504 close to the deadline', async () => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS, delayMs: 3000 });
    await expectDeadline(
      async () => {
        const r = await fetch(`${s.gw.url}/api/v1/models/gen-model/inference`, {
          method: 'POST',
          headers: { 'x-mcp-timeout-ms': '250' },
          body: '{"input":"x"}',
        });
        return { status: r.status, code: ((await r.json()) as { error?: { code?: string } }).error?.code };
      },
      250,
      s.openai,
    );
  });

  it('OpenAI: header deadline → APIError 504 MCP_DEADLINE_EXCEEDED', async () => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS, delayMs: 3000 });
    await expectDeadline(
      async () => {
        const e = await client.chat.completions
          .create({ model: 'chat-model', messages: [{ role: 'user', content: 'x' }] }, { headers: { 'x-mcp-timeout-ms': '200' } })
          .catch((x: unknown) => x);
        expect(e).toBeInstanceOf(APIError);
        return { status: (e as APIError).status ?? 0, code: (e as APIError).code ?? undefined };
      },
      200,
      s.openai,
    );
    // Streamed requests time out the same way before their first token.
    await expectDeadline(
      async () => {
        const e = await client.chat.completions
          .create({ model: 'chat-model', messages: [{ role: 'user', content: 'x' }], stream: true }, { headers: { 'x-mcp-timeout-ms': '200' } })
          .catch((x: unknown) => x);
        return { status: (e as APIError).status ?? 0, code: (e as APIError).code ?? undefined };
      },
      200,
      s.openai,
    );
  });

  it('KServe: header deadline on a slow tensor model → 504', async () => {
    s.kserve.setBehavior({ hang: true });
    const before = s.kserve.aborted;
    const stall = stallMeter(); // the upper bound is the gateway's own time (see stall-meter.ts)
    const t0 = performance.now();
    const r = await fetch(`${s.gw.url}/v2/models/doubler/infer`, {
      method: 'POST',
      headers: { 'x-mcp-timeout-ms': '200' },
      body: JSON.stringify({ inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }),
    });
    expect(r.status).toBe(504);
    expect((await r.json()).code).toBe('MCP_DEADLINE_EXCEEDED');
    expect(performance.now() - t0).toBeLessThan(600 + stall.stop());
    expect(await until(() => s.kserve.aborted > before, 1000)).toBe(true);
  });

  it('GraphQL: timeoutMs argument and x-mcp-timeout-ms header', async () => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS, delayMs: 3000 });
    await expectDeadline(
      async () => {
        const r = await gqlWithStatus({ m: 'gen-model', i: { prompt: 'x' }, t: 200 });
        return { status: r.status, code: r.body.errors?.[0]?.extensions?.code };
      },
      200,
      s.openai,
    );
    await expectDeadline(
      async () => {
        const r = await gqlWithStatus({ m: 'gen-model', i: { prompt: 'x' } }, { 'x-mcp-timeout-ms': '200' });
        return { status: r.status, code: r.body.errors?.[0]?.extensions?.code };
      },
      200,
      s.openai,
    );
  });

  it('a bad deadline is a coded 400, not ignored', async () => {
    for (const v of ['abc', '-5', '0', '99999999999']) {
      const r = await fetch(`${s.gw.url}/api/v1/models/gen-model/inference`, { method: 'POST', headers: { 'x-mcp-timeout-ms': v }, body: '{"input":"x"}' });
      expect(r.status).toBe(400);
      expect((await r.json()).error.code).toBe('MCP_VALIDATION_FAILED');
    }
    // GraphQL: out-of-range deadlines are refused by the shared request builder.
    const huge = await s.gw.gql(INFER, { m: 'gen-model', i: { prompt: 'x' } }, { 'x-mcp-timeout-ms': '99999999999' });
    expect(huge.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    for (const t of [-1, 3_600_001]) {
      const g = await s.gw.gql(INFER, { m: 'gen-model', i: { prompt: 'x' }, t });
      expect(g.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    }
  });

  it('a client that disconnects mid-request aborts the upstream call (REST, OpenAI, KServe, GraphQL)', async () => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: TOKENS, delayMs: 5000 });
    s.kserve.setBehavior({ hang: true });
    const calls: Array<[string, string, unknown, { aborted: number; requests: number }]> = [
      ['rest', '/api/v1/models/gen-model/inference', { input: 'x' }, s.openai],
      ['openai', '/v1/chat/completions', { model: 'chat-model', messages: [{ role: 'user', content: 'x' }] }, s.openai],
      ['kserve', '/v2/models/doubler/infer', { inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }, s.kserve],
      ['graphql', '/graphql', { query: INFER, variables: { m: 'gen-model', i: { prompt: 'x' } } }, s.openai],
    ];
    for (const [name, path, body, upstream] of calls) {
      const before = upstream.aborted;
      const ctl = new AbortController();
      const p = fetch(`${s.gw.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: ctl.signal,
      }).catch((e: Error) => e);
      // Wait until the call reached the upstream, then hang up.
      const requests = upstream.requests;
      expect(await until(() => upstream.requests > requests, 2000)).toBe(true);
      ctl.abort();
      expect(await p).toBeInstanceOf(Error);
      expect({ name, aborted: await until(() => upstream.aborted > before, 2000) }).toEqual({ name, aborted: true });
    }
    // Nothing left outstanding on any instance.
    expect(await until(() => outstanding() === 0, 2000)).toBe(true);
  });

  function outstanding(): number {
    let n = 0;
    for (const id of ['gen-model', 'chat-model', 'doubler']) {
      for (const hs of s.gw.services.instances.view(id)?.versions.values() ?? []) for (const h of hs) n += h.outstanding;
    }
    return n;
  }

  it('a streamed request aborted by the client stops the upstream stream (OpenAI SSE, GraphQL SSE, graphql-ws)', async () => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: LONG, tokenDelayMs: 30 });
    // OpenAI SDK stream: read three chunks, then abort.
    {
      const before = s.openai.aborted;
      const stream = await client.chat.completions.create({ model: 'chat-model', messages: [{ role: 'user', content: 'x' }], stream: true });
      let n = 0;
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content && ++n === 3) break; // breaking out aborts the HTTP request
      }
      expect(n).toBe(3);
      expect(await until(() => s.openai.aborted > before, 2000)).toBe(true);
    }
    // GraphQL over SSE.
    {
      const before = s.openai.aborted;
      const ctl = new AbortController();
      const res = await fetch(`${s.gw.url}/graphql`, {
        method: 'POST',
        signal: ctl.signal,
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query: 'subscription { inferStream(model: "gen-model", input: { prompt: "x" }) { type text } }' }),
      });
      const reader = res.body!.getReader();
      let got = '';
      while (!got.includes('t2')) {
        const r = await reader.read();
        if (r.done) break;
        got += new TextDecoder().decode(r.value);
      }
      expect(got).toContain('TOKEN');
      ctl.abort();
      expect(await until(() => s.openai.aborted > before, 2000)).toBe(true);
    }
    // graphql-ws: unsubscribing (complete) stops the upstream stream.
    {
      const before = s.openai.aborted;
      const ws = createClient({ url: `${s.gw.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
      let n = 0;
      await new Promise<void>((resolve, reject) => {
        const unsubscribe = ws.subscribe<{ inferStream: { type: string } }>(
          { query: 'subscription { inferStream(model: "gen-model", input: { prompt: "x" }) { type text } }' },
          {
            next: () => {
              if (++n === 3) {
                unsubscribe();
                resolve();
              }
            },
            error: reject,
            complete: () => resolve(),
          },
        );
      });
      expect(n).toBe(3);
      expect(await until(() => s.openai.aborted > before, 2000)).toBe(true);
      await ws.dispose();
    }
    // Every abandoned stream released its instance.
    expect(await until(() => outstanding() === 0, 2000)).toBe(true);
  });
});
