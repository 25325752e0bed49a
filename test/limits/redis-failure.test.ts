/**
 * The Redis store behind a TCP fault proxy (the shared Redis is never stopped): while Redis is
 * unreachable (connections reset) or partitioned (bytes held), `failurePolicy: closed` answers 503
 * MCP_RATE_LIMIT_UNAVAILABLE and `open` lets requests through (counted, warned), both quickly; once
 * the proxy heals, both recover by themselves and the limit holds again.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from '../entrypoints/harness.ts';
import { dropRedisKeys } from '../support/redis.ts';
import { startTcpFaultProxy, type TcpFaultProxy } from '../support/tcp-fault-proxy.ts';

const PREFIX = `test:rlfail:${randomBytes(6).toString('hex')}:`;

describe('Redis store down: fail open / fail closed, then recovery', () => {
  let proxy: TcpFaultProxy;
  let closed: Stack;
  let open: Stack;

  const stack = (failurePolicy: 'open' | 'closed') =>
    startStack({
      plugins: [
        { use: 'ratelimit-redis', options: { url: `redis://127.0.0.1:${proxy.port}`, keyPrefix: `${PREFIX}${failurePolicy}:`, commandTimeoutMs: 200 } },
      ],
      limits: { store: 'ratelimit-redis', failurePolicy, rules: [{ name: 'per-ip', scope: 'ip', requests: 5, period: '1h' }] },
    });
  const infer = async (s: Stack) => {
    const started = performance.now();
    const r = await fetch(`${s.gw.url}/api/v1/models/gen-model/inference`, { method: 'POST', body: JSON.stringify({ input: 'hi' }) });
    const body = (await r.json()) as { error?: { code: string } };
    return { status: r.status, code: body.error?.code, ms: performance.now() - started, retryAfter: r.headers.get('retry-after') };
  };

  beforeAll(async () => {
    proxy = await startTcpFaultProxy({ host: '127.0.0.1', port: 6379 });
    // The first use happens while Redis is unreachable: the store must still connect once it is back.
    proxy.set('reset');
    closed = await stack('closed');
    open = await stack('open');
  }, 60_000);
  afterAll(async () => {
    await closed?.close();
    await open?.close();
    await proxy?.close();
    await dropRedisKeys(PREFIX);
  });

  async function until(s: Stack, status: number): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await infer(s);
      if (r.status === status) return;
      if (Date.now() > deadline) throw new Error(`still ${r.status} ${r.code} after 15 s`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  it('Redis unreachable from the start: closed → 503 MCP_RATE_LIMIT_UNAVAILABLE, open → 200, both fast', async () => {
    for (let i = 0; i < 3; i++) {
      const c = await infer(closed);
      expect(c).toMatchObject({ status: 503, code: 'MCP_RATE_LIMIT_UNAVAILABLE', retryAfter: '1' });
      expect(c.ms).toBeLessThan(3000);
      const o = await infer(open);
      expect(o.status).toBe(200);
      expect(o.ms).toBeLessThan(3000);
    }
  });

  it('heals by itself: both answer 200 and the limit holds again (5 per hour per IP)', async () => {
    proxy.set('pass');
    await until(closed, 200);
    await until(open, 200);
    // One was allowed by until(closed, 200).
    let allowed = 1;
    for (let i = 0; i < 6; i++) if ((await infer(closed)).status === 200) allowed++;
    expect(allowed).toBe(5);
    expect((await infer(closed)).status).toBe(429);
  });

  it('a partition (bytes held, nothing answered): no request waits long; closed → 503, open → 200; healed → back', async () => {
    proxy.set('stall');
    for (let i = 0; i < 4; i++) {
      const c = await infer(closed);
      expect(c).toMatchObject({ status: 503, code: 'MCP_RATE_LIMIT_UNAVAILABLE' });
      expect(c.ms).toBeLessThan(3000);
      const o = await infer(open);
      expect(o.status).toBe(200);
      expect(o.ms).toBeLessThan(3000);
    }
    proxy.set('pass');
    // The closed gateway's limit was spent before the partition: it answers 429 again (not 503) once Redis answers.
    await until(closed, 429);
    await until(open, 200);
  });

  it('Redis dies mid-way (connections reset): same policies; then recovery', async () => {
    proxy.set('reset');
    expect(await infer(closed)).toMatchObject({ status: 503, code: 'MCP_RATE_LIMIT_UNAVAILABLE' });
    expect((await infer(open)).status).toBe(200);
    proxy.set('pass');
    await until(closed, 429);
    await until(open, 200);
  });

  it('store errors and fail-open decisions are counted', async () => {
    const metrics = async (s: Stack) => (await fetch(`${s.gw.url}/metrics`)).text();
    expect(await metrics(open)).toMatch(/mcp_rate_limit_decisions_total\{rule="per-ip",outcome="store_error_open"\} [1-9]/);
    expect(await metrics(open)).toMatch(/mcp_rate_limit_store_errors_total\{op="spend"\} [1-9]/);
    expect(await metrics(closed)).toMatch(/mcp_rate_limit_decisions_total\{rule="per-ip",outcome="store_error_closed"\} [1-9]/);
  });
});
