/**
 * The gateway protecting itself (server.overload): past maxInflight a request is refused at once with
 * 503 MCP_OVERLOADED and Retry-After, before its body is read, in the shape of each API; health,
 * readiness and metrics are exempt. Then 500 connections against the embedded default.
 */
import { execFile } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import type { LoadPlan, LoadReport } from '../support/overload-load.ts';

async function metricsText(gw: TestGateway): Promise<string> {
  const res = await request(`${gw.url}/metrics`);
  expect(res.statusCode).toBe(200);
  return res.body.text();
}

async function inflightGauge(gw: TestGateway): Promise<number> {
  const m = /^mcp_http_inflight_requests (\d+)$/m.exec(await metricsText(gw));
  return Number(m?.[1]);
}

describe('overload bound: who is refused, how, and who is exempt', () => {
  let gw: TestGateway;
  let held: Socket;

  beforeAll(async () => {
    gw = await startTestGateway({ server: { overload: { maxInflight: 1, retryAfterSeconds: 2 } } });
    // One request in flight: its headers are in, its body (declared 100 bytes) is still coming.
    const { port } = new URL(gw.url);
    held = connect(Number(port), '127.0.0.1');
    await new Promise((r) => held.once('connect', r));
    held.write('POST /api/v1/models/m/inference HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"in');
    for (let i = 0; i < 100 && (await inflightGauge(gw)) !== 1; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await inflightGauge(gw)).toBe(1);
  }, 60_000);

  afterAll(async () => {
    held?.destroy();
    await gw?.close();
  });

  it('answers 503 MCP_OVERLOADED with Retry-After on GraphQL, REST, OpenAI and KServe, each in its own error shape', async () => {
    const post = (path: string, body: unknown) =>
      request(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const gql = await post('/graphql', { query: '{ models { totalCount } }' });
    const rest = await post('/api/v1/models/m/inference', { input: 'x' });
    const openai = await post('/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'x' }] });
    const kserve = await post('/v2/models/m/infer', { inputs: [] });
    for (const r of [gql, rest, openai, kserve]) {
      expect(r.statusCode).toBe(503);
      expect(r.headers['retry-after']).toBe('2');
    }
    expect(((await gql.body.json()) as { errors: Array<{ extensions: { code: string } }> }).errors[0]!.extensions.code).toBe('MCP_OVERLOADED');
    expect(((await rest.body.json()) as { error: { code: string } }).error.code).toBe('MCP_OVERLOADED');
    expect(await openai.body.json()).toMatchObject({ error: { code: 'MCP_OVERLOADED', type: 'server_error' } });
    expect(await kserve.body.json()).toMatchObject({ code: 'MCP_OVERLOADED' });
  });

  it('refuses before reading the body: a large declared body is answered at once and the connection closed', async () => {
    const { port } = new URL(gw.url);
    const s = connect(Number(port), '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise((r) => s.once('close', r));
    // Headers only; 10 MB are promised (more than maxBodyBytes) and never sent.
    s.write('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n');
    await ended;
    const text = Buffer.concat(chunks).toString();
    expect(text).toMatch(/^HTTP\/1\.1 503 /);
    expect(text).toMatch(/\r\nretry-after: 2\r\n/i);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(text).toContain('"MCP_OVERLOADED"');
  });

  it('keeps /healthz, /readyz and /metrics answering, and counts refusals by entry point', async () => {
    expect((await request(`${gw.url}/healthz`)).statusCode).toBe(200);
    expect((await request(`${gw.url}/readyz`)).statusCode).toBe(200);
    const text = await metricsText(gw);
    for (const entry of ['graphql', 'rest', 'openai', 'kserve']) {
      expect(text).toMatch(new RegExp(`^mcp_overload_rejected_total\\{reason="inflight",entry="${entry}"\\} [1-9]`, 'm'));
    }
    expect(text).toMatch(/^mcp_overload_limit 1$/m);
  });

  it('admits again as soon as the request in flight is over', async () => {
    held.write(`put": 1}${' '.repeat(88)}`);
    await new Promise((r) => held.once('data', r));
    for (let i = 0; i < 100 && (await inflightGauge(gw)) !== 0; i++) await new Promise((r) => setTimeout(r, 20));
    const res = await request(`${gw.url}/api/v1/models`);
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });
});

/**
 * 500 connections against the embedded default (demo model capibara-mini on tfjs, default server.overload),
 * load generated in its own process. Without the bound the same load leaves requests waiting up to 10–20 s
 * (bench/RESULTS.md). The load phase runs 8 s here, not the bench's 20 s: the accept queue builds up
 * within the first second and the bound's effect shows in every second after it; CI time is short.
 */
describe('500 connections against the embedded default', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ demo: { enabled: true } });
  }, 120_000);

  afterAll(async () => {
    await gw?.close();
  });

  it('keeps admitted latency bounded, refuses the rest at once with Retry-After, and serves as fast after as before', async () => {
    const plan: LoadPlan = {
      url: `${gw.url}/v1/chat/completions`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'capibara-mini', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8 }),
      phases: [
        { name: 'before', connections: 4, seconds: 3 },
        { name: 'load', connections: 500, seconds: 8 },
        { name: 'after', connections: 4, seconds: 3 },
      ],
    };
    const script = fileURLToPath(new URL('../support/overload-load.ts', import.meta.url));
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--import', 'tsx', script, JSON.stringify(plan)], { timeout: 90_000, maxBuffer: 1 << 20 }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      ),
    );
    const [before, load, after] = (JSON.parse(out) as LoadReport).phases;
    const summary = JSON.stringify({ before, load, after });

    // Every request got an answer: admitted (200) or refused (503 MCP_OVERLOADED with Retry-After), nothing else.
    expect(load!.errors, summary).toBe(0);
    expect(load!.otherStatus, summary).toEqual({});
    expect(load!.ok, summary).toBeGreaterThan(0);
    expect(load!.rejected, summary).toBeGreaterThan(0);
    expect(load!.rejectedWithRetryAfter, summary).toBe(load!.rejected);
    expect(Object.keys(load!.rejectedCodes), summary).toEqual(['MCP_OVERLOADED']);
    // Admitted requests keep a bounded latency. With at most maxInflight admitted, an admitted request waits about
    // maxInflight / throughput (Little's law); without the bound ~500 would be in flight and waits ~8× longer. The
    // bound asserted is 3× that plus 0.5 s, relative to the throughput measured in this run, so a slow machine does
    // not fail it. A connection's first request also waits for the server to accept the connection (libuv accepts
    // one per event-loop iteration), which the bound does not remove: reported in firstAnswerMs, not asserted.
    const maxInflight = gw.config.server.overload.maxInflight;
    const bound = 3 * ((1000 * maxInflight) / load!.okPerSecond) + 500;
    expect(load!.okOnAcceptedMs.p99, `${summary} bound ${bound} ms`).toBeLessThan(bound);
    expect(load!.rejectedMs.p50, summary).toBeLessThan(1_000);
    // Throughput at low concurrency comes back as soon as the load stops (generous: the machine is shared).
    expect(before!.ok, summary).toBeGreaterThan(0);
    expect(after!.okPerSecond, summary).toBeGreaterThanOrEqual(0.7 * before!.okPerSecond);
    expect(after!.rejected + after!.errors, summary).toBe(0);
    expect(await inflightGauge(gw)).toBe(0);
  }, 120_000);
});
