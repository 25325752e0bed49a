/**
 * Rate and token limits on a real gateway on loopback (memory store), through every entry point:
 * 429 with Retry-After and RateLimit-Policy / RateLimit headers on REST, OpenAI (streamed or not) and
 * KServe, MCP_RATE_LIMITED with the wait on GraphQL; token reservations reconciled with the usage the
 * model reports (charges and refunds), streams cut short reconciled with what was produced; the
 * failed-auth limit per IP; rules on every request; the decisions metric.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../../plugins/auth-api-key/index.ts';
import { McpError } from '../../src/errors.ts';
import { readSse, startStack, type Stack } from '../entrypoints/harness.ts';

const KEYS = Object.fromEntries(
  ['rest', 'rest2', 'openai', 'stream', 'kserve', 'graphql', 'charge', 'refund', 'cut', 'model'].map((n) => [n, generateApiKey()]),
);

describe('rate and token limits through every entry point', () => {
  let s: Stack;
  const auth = (name: string) => ({ authorization: `Bearer ${KEYS[name]!.key}`, 'content-type': 'application/json' });
  const post = (path: string, name: string, body: unknown, signal?: AbortSignal) =>
    fetch(`${s.gw.url}${path}`, { method: 'POST', headers: auth(name), body: JSON.stringify(body), signal });
  const rest = (name: string, body: unknown = { input: 'hi', parameters: { maxTokens: 5 } }, model = 'gen-model') =>
    post(`/api/v1/models/${model}/inference`, name, body);

  beforeAll(async () => {
    s = await startStack({
      auth: { enabled: true, strategies: ['api-key'] },
      plugins: [{ use: 'api-key', options: { keys: Object.entries(KEYS).map(([id, k]) => ({ id, sha256: k.sha256, roles: ['admin'] })) } }],
      limits: {
        rules: [
          { name: 'per-key', scope: 'apiKey', match: { models: ['gen-model', 'doubler'] }, requests: 3, period: '1m' },
          // A token budget: 100 tokens per hour per principal on the chat model.
          { name: 'tok', scope: 'principal', match: { models: ['chat-model'] }, tokens: 100, period: '1h' },
          { name: 'per-model', scope: ['principal', 'model'], match: { models: ['embed-model'] }, requests: 2, period: '1h' },
          { name: 'everything', scope: 'ip', on: 'all', match: { entries: ['probe'] }, requests: 2, period: '1h' },
        ],
      },
    });
  }, 60_000);
  afterAll(async () => {
    await s?.close();
  });

  async function expect429(r: Response, policy: string): Promise<Record<string, unknown>> {
    expect(r.status).toBe(429);
    const retryAfter = Number(r.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 3600).toBe(true);
    expect(r.headers.get('ratelimit-policy')).toContain(policy);
    expect(r.headers.get('ratelimit')).toMatch(/^"[\w-]+";r=\d+;t=\d+/);
    return (await r.json()) as Record<string, unknown>;
  }

  it('REST: a key gets its 3 requests a minute, then 429 with Retry-After and the IETF headers; another key is unaffected', async () => {
    const first = await rest('rest');
    expect(first.status).toBe(200);
    // Successful limited calls carry the headers too.
    expect(first.headers.get('ratelimit-policy')).toBe('"per-key";q=3;w=60');
    expect(first.headers.get('ratelimit')).toBe('"per-key";r=2;t=20');
    for (let i = 0; i < 2; i++) expect((await rest('rest')).status).toBe(200);
    const r = await rest('rest');
    const body = await expect429(r, '"per-key";q=3;w=60');
    expect(r.headers.get('ratelimit')).toMatch(/^"per-key";r=0;t=(1[0-9]|[2-9][0-9])$/);
    expect(body).toMatchObject({ error: { code: 'MCP_RATE_LIMITED' } });
    expect((await rest('rest2')).status).toBe(200);
  });

  it('OpenAI: completions, streamed or not, share the key limit and get 429 before any SSE', async () => {
    const chat = (stream: boolean) => post('/v1/completions', 'openai', { model: 'gen-model', stream, prompt: 'hi', max_tokens: 5 });
    expect((await chat(false)).status).toBe(200);
    const streamed = await chat(true);
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get('content-type')).toContain('text/event-stream');
    expect(streamed.headers.get('ratelimit')).toMatch(/^"per-key";r=1;t=(39|40)$/);
    await streamed.text();
    expect((await chat(true)).status).toBe(200);
    const r = await chat(true);
    expect(r.headers.get('content-type')).toContain('application/json');
    const body = await expect429(r, '"per-key";q=3;w=60');
    expect(body).toMatchObject({ error: { code: 'MCP_RATE_LIMITED' } });
  });

  it('KServe v2: the tensor model is limited the same way', async () => {
    const infer = () => post('/v2/models/doubler/infer', 'kserve', { inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    for (let i = 0; i < 3; i++) expect((await infer()).status).toBe(200);
    await expect429(await infer(), '"per-key";q=3;w=60');
  });

  it('GraphQL: MCP_RATE_LIMITED with extensions.details.retryAfterMs', async () => {
    const q = 'mutation ($input: InferInput!) { infer(model: "gen-model", input: $input) { text } }';
    const call = () => s.gw.gql<{ infer: { text: string } }>(q, { input: { prompt: 'hi', parameters: { maxTokens: 5 } } }, auth('graphql'));
    for (let i = 0; i < 3; i++) expect((await call()).data?.infer.text).toBeTruthy();
    const r = await call();
    expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'MCP_RATE_LIMITED', details: { rule: 'per-key', limit: 'requests' } });
    const wait = (r.errors![0]!.extensions!.details as { retryAfterMs: number }).retryAfterMs;
    expect(wait).toBeGreaterThan(10_000);
    expect(wait).toBeLessThanOrEqual(60_000);
    // The streaming subscription (GraphQL over SSE) shares the limit: a coded error in the stream, before any token.
    const res = await fetch(`${s.gw.url}/graphql`, {
      method: 'POST',
      headers: { ...auth('graphql'), accept: 'text/event-stream' },
      body: JSON.stringify({ query: 'subscription { inferStream(model: "gen-model", input: { prompt: "hi" }) { type } }' }),
    });
    const frames = (await readSse(res)).map((f) => JSON.parse(f.data) as { data?: unknown; errors?: Array<{ extensions?: Record<string, unknown> }> });
    expect(frames.some((f) => f.data)).toBe(false);
    expect(frames.find((f) => f.errors)?.errors?.[0]?.extensions).toMatchObject({ code: 'MCP_RATE_LIMITED', details: { rule: 'per-key' } });
  });

  it('a rule per principal and model counts each pair on its own', async () => {
    const embed = () => post('/v1/embeddings', 'model', { model: 'embed-model', input: 'x' });
    expect((await embed()).status).toBe(200);
    expect((await embed()).status).toBe(200);
    await expect429(await embed(), '"per-model";q=2;w=3600');
    expect((await post('/v1/embeddings', 'charge', { model: 'embed-model', input: 'x' })).status).toBe(200);
  });

  // The fake model reports usage: 5 prompt tokens + 4 answer tokens (startStack's TOKENS has 5) → 10 per call.
  const chatCall = (name: string, maxTokens: number, stream = false, signal?: AbortSignal) =>
    post('/v1/chat/completions', name, { model: 'chat-model', stream, messages: [{ role: 'user', content: 'hi' }], max_tokens: maxTokens }, signal);

  // A one-message chat prompt "hi" is estimated at 1 + 4 × 2 (template) = 9 tokens.
  it('tokens: a small reservation is charged up to the real usage (10 calls of 10 tokens fill 100, the 11th is refused)', async () => {
    // Each call reserves 9 (prompt) + 0 … (max_tokens 1 → 10) and is charged 10: with max_tokens 1, 1 more afterwards.
    for (let i = 0; i < 10; i++) {
      const r = await chatCall('charge', 1, i % 2 === 1);
      expect(r.status).toBe(200);
      await r.text();
    }
    const r = await chatCall('charge', 1);
    const body = await expect429(r, '"tok-tokens";q=100;w=3600');
    expect(body).toMatchObject({ error: { code: 'MCP_RATE_LIMITED', message: expect.stringContaining('"tok" (tokens)') } });
  });

  it('tokens: a large reservation is refunded down to the real usage', async () => {
    // Each call reserves 9 + 72 = 81 of 100 and is refunded to 10: the second fits only because the first was refunded.
    expect((await chatCall('refund', 72)).status).toBe(200);
    expect((await chatCall('refund', 72)).status).toBe(200);
    await expect429(await chatCall('refund', 72), '"tok-tokens"');
    // 20 used: 80 still fit.
    expect((await chatCall('refund', 71)).status).toBe(200);
  });

  it('a stream cut short by the client is reconciled with what was produced, not with its reservation', async () => {
    s.openai.setBehavior({ models: ['fake-model'], tokens: Array.from({ length: 60 }, (_, i) => `w${i % 10} `), tokenDelayMs: 40 });
    try {
      const ac = new AbortController();
      // Reserves 9 + 60 = 69 of 100.
      const r = await chatCall('cut', 60, true, ac.signal);
      expect(r.status).toBe(200);
      const reader = r.body!.getReader();
      let seen = '';
      while ((seen.match(/"content":"w/g) ?? []).length < 2) seen += new TextDecoder().decode((await reader.read()).value);
      ac.abort();
      // Once the gateway has seen the client go, the reservation shrinks to the prompt (9) + the few tokens produced: a 79-token
      // reservation fits (without the reconciliation, 31 would be left). A refused call spends nothing, so asking again until it fits is
      // safe; refilling alone would take 36 s per token.
      const deadline = Date.now() + 20_000;
      let status = 0;
      s.openai.setBehavior({ models: ['fake-model'], tokens: ['ok'] });
      while (Date.now() < deadline) {
        const again = await chatCall('cut', 70);
        status = again.status;
        await again.text();
        if (status === 200) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(status).toBe(200);
    } finally {
      s.openai.setBehavior({ models: ['fake-model'], tokens: ['Hello', ',', ' capy', 'bara', '!'] });
    }
  });

  it('failed authentication is limited per client IP (a /64 for IPv6) and spends nothing of a user’s quota', async () => {
    const limits = s.gw.services.limits;
    for (let i = 0; i < 9; i++) {
      expect((await limits.failedAuth('198.51.100.7')).allowed).toBe(true);
      limits.assertAuthAllowed('198.51.100.7');
    }
    expect(await limits.failedAuth('198.51.100.7')).toMatchObject({ allowed: true, remaining: 0 });
    let thrown: unknown;
    try {
      limits.assertAuthAllowed('::ffff:198.51.100.7');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(McpError);
    expect(thrown).toMatchObject({ code: 'MCP_RATE_LIMITED', status: 429, details: { rule: 'failed-auth' } });
    expect((thrown as McpError).details!.retryAfterMs).toBeGreaterThan(1000);
    expect((await limits.failedAuth('198.51.100.7')).allowed).toBe(false);
    expect(() => limits.assertAuthAllowed('198.51.100.8')).not.toThrow();
    // IPv6: one /64 is one client.
    for (let i = 0; i < 10; i++) await limits.failedAuth(`2001:db8:1:2::${i + 1}`);
    expect(() => limits.assertAuthAllowed('2001:db8:1:2:ffff::9')).toThrow(/too many failed authentications/);
    expect(() => limits.assertAuthAllowed('2001:db8:1:3::1')).not.toThrow();
    // The user behind that address still has their quota (the key's per-key budget is untouched).
    expect((await rest('rest2')).status).toBe(200);
  });

  it('rules `on: all` are checked by checkRequest (what the HTTP layer calls for every request)', async () => {
    const subject = { ip: '192.0.2.44', entry: 'probe' };
    const first = await s.gw.services.limits.checkRequest(subject);
    expect(first).toEqual([{ name: 'everything', q: 2, w: 3600, r: 1, t: 1800 }]);
    await s.gw.services.limits.checkRequest(subject);
    await expect(s.gw.services.limits.checkRequest(subject)).rejects.toMatchObject({ code: 'MCP_RATE_LIMITED', details: { rule: 'everything' } });
    expect(await s.gw.services.limits.checkRequest({ ip: '192.0.2.44', entry: 'rest' })).toEqual([]);
  });

  it('decisions are counted in mcp_rate_limit_decisions_total{rule,outcome}', async () => {
    const text = await (await fetch(`${s.gw.url}/metrics`, { headers: auth('rest') })).text();
    expect(text).toMatch(/mcp_rate_limit_decisions_total\{rule="per-key",outcome="limited"\} [1-9]/);
    expect(text).toMatch(/mcp_rate_limit_decisions_total\{rule="tok",outcome="allowed"\} [1-9]/);
    expect(text).toMatch(/mcp_rate_limit_decisions_total\{rule="failed-auth",outcome="limited"\} [1-9]/);
  });
});
