import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import pino from 'pino';
import { McpError } from '../errors.ts';
import type { BackendCall, LoadedInstance } from '../plugin/contract.ts';
import type { InferenceChunk, InferenceInput } from '../inference/types.ts';
import { createWorkerHttpServer } from './http-server.ts';

/** Sleeps, rejecting with the signal's reason when it aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

interface FakeInstance extends LoadedInstance {
  calls: BackendCall[];
  aborts: unknown[];
}

const promptOf = (input: InferenceInput): string | undefined => (input.task === 'generate' ? input.prompt : undefined);

/** An in-memory instance whose behaviour is chosen by the prompt. */
function fakeInstance(): FakeInstance {
  const calls: BackendCall[] = [];
  const aborts: unknown[] = [];
  const watch = (call: BackendCall) => {
    calls.push(call);
    call.signal.addEventListener('abort', () => aborts.push(call.signal.reason), { once: true });
  };
  return {
    runtime: 'tfjs-node',
    device: 'cpu',
    tasks: ['generate', 'chat'],
    signature: { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1] }], outputs: [] },
    calls,
    aborts,
    async infer(input: InferenceInput, call: BackendCall) {
      watch(call);
      const prompt = promptOf(input);
      if (prompt === 'ratelimit') throw new McpError('MCP_UPSTREAM_RATE_LIMITED', 'slow down', { retryable: true, details: { retryAfterMs: 10 } });
      if (prompt === 'boom') throw new Error('secret internals');
      if (prompt === 'slow') await sleep(5_000, call.signal);
      return { text: `echo:${prompt ?? ''}`, finishReason: 'stop', usage: { promptTokens: 1, completionTokens: 1, totalTokens: 2 } };
    },
    async *stream(input: InferenceInput, call: BackendCall): AsyncGenerator<InferenceChunk> {
      watch(call);
      const prompt = promptOf(input);
      if (prompt === 'ratelimit') throw new McpError('MCP_UPSTREAM_RATE_LIMITED', 'slow down', { retryable: true });
      const n = input.parameters?.maxTokens ?? 3;
      for (let i = 0; i < n; i++) {
        if (i > 0 && prompt === 'slow') await sleep(60, call.signal);
        if (i === 2 && prompt === 'midfail') throw new McpError('MCP_UPSTREAM_UNAVAILABLE', 'model server went away', { retryable: true });
        yield { text: `t${i}` };
      }
      yield { text: '', finishReason: 'stop', usage: { promptTokens: 1, completionTokens: n, totalTokens: n + 1 } };
    },
    async health() {
      return { ok: true, detail: 'fine' };
    },
    async unload() {
      /* nothing */
    },
  };
}

const TOKEN = 'gateway-call-token-for-this-worker-process';
const AUTH = { authorization: `Bearer ${TOKEN}` };

describe('worker http server', () => {
  let server: Server;
  let base: string;
  const inst = fakeInstance();
  const agent = new Agent({ connections: 2 });
  let token: string | undefined = TOKEN;
  beforeAll(async () => {
    server = createWorkerHttpServer({ instances: new Map([['i1', inst]]), callToken: () => token, logger: pino({ level: 'silent' }), maxBodyBytes: 1024 });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/worker/v1`;
  });
  afterAll(async () => {
    await agent.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const post = (path: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
    request(`${base}${path}`, {
      method: 'POST',
      body: typeof body === 'string' ? body : JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...AUTH, ...headers },
      dispatcher: agent,
      signal,
    });

  it("refuses every instance route without the gateway's call token (401), before touching the instance; liveness stays open", async () => {
    const callsBefore = inst.calls.length;
    const attempts: Array<Record<string, string>> = [
      { authorization: '' },
      { authorization: 'Bearer wrong-token' },
      { authorization: `Basic ${TOKEN}` },
      { authorization: `Bearer ${TOKEN}x` },
    ];
    for (const headers of attempts) {
      const r = await post('/instances/i1/infer', { task: 'generate', prompt: 'steal' }, headers);
      const body = (await r.body.json()) as { error: { code: string; message: string } };
      expect([r.statusCode, body.error.code, r.headers['www-authenticate']]).toEqual([401, 'MCP_UNAUTHENTICATED', expect.stringContaining('Bearer')]);
      expect(body.error.message).not.toContain(TOKEN);
    }
    const stream = await post('/instances/i1/stream', { task: 'generate', prompt: 'steal' }, { authorization: 'Bearer nope' });
    expect(stream.statusCode).toBe(401);
    await stream.body.dump();
    const health = await request(`${base}/instances/i1/health`, { dispatcher: agent });
    expect(health.statusCode).toBe(401);
    await health.body.dump();
    // an unknown instance is not revealed either
    const ghost = await request(`${base}/instances/ghost/health`, { dispatcher: agent });
    expect(ghost.statusCode).toBe(401);
    await ghost.body.dump();
    expect(inst.calls.length).toBe(callsBefore);
    const live = await request(`${base}/health`, { dispatcher: agent });
    expect([live.statusCode, await live.body.json()]).toEqual([200, { ok: true }]);
    // a worker that has not learned its token yet serves nobody, not even a correct-looking token
    token = undefined;
    const early = await post('/instances/i1/infer', { task: 'generate', prompt: 'x' });
    expect(early.statusCode).toBe(401);
    await early.body.dump();
    token = TOKEN;
    const ok = await post('/instances/i1/infer', { task: 'generate', prompt: 'x' });
    expect(ok.statusCode).toBe(200);
    await ok.body.dump();
  });

  it('serves health routes with runtime and device', async () => {
    const w = await request(`${base}/health`, { dispatcher: agent });
    expect([w.statusCode, await w.body.json()]).toEqual([200, { ok: true }]);
    const h = await request(`${base}/instances/i1/health`, { dispatcher: agent, headers: AUTH });
    expect(await h.body.json()).toEqual({
      ok: true,
      detail: 'fine',
      runtime: 'tfjs-node',
      device: 'cpu',
      tasks: ['generate', 'chat'],
      signature: inst.signature,
    });
  });

  it('infers, echoing x-request-id and passing the deadline', async () => {
    const deadline = Date.now() + 10_000;
    const r = await post('/instances/i1/infer', { task: 'generate', prompt: 'hi' }, { 'x-request-id': 'abc', 'x-mcp-deadline': String(deadline) });
    expect(r.statusCode).toBe(200);
    expect(r.headers['x-request-id']).toBe('abc');
    expect(await r.body.json()).toEqual({ text: 'echo:hi', finishReason: 'stop', usage: { promptTokens: 1, completionTokens: 1, totalTokens: 2 } });
    expect(inst.calls.at(-1)).toMatchObject({ requestId: 'abc', deadline });
  });

  it('streams NDJSON, one chunk per line, flushed as produced', async () => {
    const r = await post('/instances/i1/stream', { task: 'generate', prompt: 'slow', parameters: { maxTokens: 4 } });
    expect(r.headers['content-type']).toBe('application/x-ndjson');
    const arrivals: number[] = [];
    let text = '';
    const t0 = Date.now();
    for await (const c of r.body) {
      text += String(c);
      arrivals.push(Date.now() - t0);
    }
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as InferenceChunk);
    expect(lines.map((l) => l.text)).toEqual(['t0', 't1', 't2', 't3', '']);
    expect(lines.at(-1)?.finishReason).toBe('stop');
    expect(arrivals.length).toBeGreaterThanOrEqual(3);
  });

  it('sends errors with code, status and retryable; masks internal errors', async () => {
    const rl = await post('/instances/i1/infer', { task: 'generate', prompt: 'ratelimit' });
    expect(rl.statusCode).toBe(429);
    expect(await rl.body.json()).toEqual({
      error: { code: 'MCP_UPSTREAM_RATE_LIMITED', message: 'slow down', details: { retryAfterMs: 10 }, retryable: true, mayHaveExecuted: true },
    });
    const boom = await post('/instances/i1/infer', { task: 'generate', prompt: 'boom' });
    const body = (await boom.body.json()) as { error: { code: string; message: string } };
    expect([boom.statusCode, body.error.code]).toEqual([500, 'MCP_INTERNAL']);
    expect(body.error.message).not.toMatch(/secret/);
    const nf = await post('/instances/nope/infer', { task: 'generate', prompt: 'x' });
    expect([nf.statusCode, ((await nf.body.json()) as { error: { code: string } }).error.code]).toEqual([404, 'MCP_INSTANCE_NOT_FOUND']);
    const bad = await post('/instances/i1/infer', '{nope');
    expect([bad.statusCode, ((await bad.body.json()) as { error: { code: string } }).error.code]).toEqual([400, 'MCP_INVALID_JSON']);
    const task = await post('/instances/i1/infer', { task: 'dance' });
    expect(((await task.body.json()) as { error: { code: string } }).error.code).toBe('MCP_VALIDATION_FAILED');
    const noPrompt = await post('/instances/i1/infer', { task: 'generate' });
    expect([noPrompt.statusCode, ((await noPrompt.body.json()) as { error: { code: string; details: { path: string } } }).error]).toEqual([
      400,
      expect.objectContaining({ code: 'MCP_VALIDATION_FAILED', details: expect.objectContaining({ path: 'input.prompt' }) }),
    ]);
    const big = await post('/instances/i1/infer', { task: 'generate', prompt: 'x'.repeat(2000) });
    expect([big.statusCode, ((await big.body.json()) as { error: { code: string } }).error.code]).toEqual([413, 'MCP_PAYLOAD_TOO_LARGE']);
    const past = await post('/instances/i1/infer', { task: 'generate', prompt: 'x' }, { 'x-mcp-deadline': String(Date.now() - 1) });
    expect([past.statusCode, ((await past.body.json()) as { error: { code: string } }).error.code]).toEqual([504, 'MCP_DEADLINE_EXCEEDED']);
    const route = await request(`${base}/nothing`, { dispatcher: agent, headers: AUTH });
    expect(route.statusCode).toBe(404);
    await route.body.dump();
  });

  it('aborts the instance call at the deadline', async () => {
    const r = await post('/instances/i1/infer', { task: 'generate', prompt: 'slow' }, { 'x-mcp-deadline': String(Date.now() + 80) });
    expect([r.statusCode, ((await r.body.json()) as { error: { code: string } }).error.code]).toEqual([504, 'MCP_DEADLINE_EXCEEDED']);
  });

  it('reports a failure after the stream started as the last line', async () => {
    const r = await post('/instances/i1/stream', { task: 'generate', prompt: 'midfail', parameters: { maxTokens: 5 } });
    expect(r.statusCode).toBe(200);
    const lines = (await r.body.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toEqual([
      { text: 't0' },
      { text: 't1' },
      { error: { code: 'MCP_UPSTREAM_UNAVAILABLE', message: 'model server went away', retryable: true, mayHaveExecuted: true } },
    ]);
    const early = await post('/instances/i1/stream', { task: 'generate', prompt: 'ratelimit' });
    expect(early.statusCode).toBe(429);
    await early.body.dump();
  });

  it('aborts the instance call when the client disconnects', async () => {
    const before = inst.aborts.length;
    const callsBefore = inst.calls.length;
    const ac = new AbortController();
    const pending = post('/instances/i1/infer', { task: 'generate', prompt: 'slow' }, {}, ac.signal).catch((e: unknown) => e);
    await expect.poll(() => inst.calls.length, { timeout: 1000, interval: 10 }).toBe(callsBefore + 1);
    ac.abort();
    await pending;
    await expect.poll(() => inst.aborts.length, { timeout: 1000, interval: 10 }).toBe(before + 1);
    expect((inst.aborts.at(-1) as McpError).code).toBe('MCP_CANCELLED');

    const ac2 = new AbortController();
    const r = await post('/instances/i1/stream', { task: 'generate', prompt: 'slow', parameters: { maxTokens: 50 } }, {}, ac2.signal);
    const it = r.body[Symbol.asyncIterator]();
    await it.next();
    ac2.abort();
    await it.next().catch(() => undefined);
    await expect.poll(() => inst.aborts.length, { timeout: 1000, interval: 10 }).toBe(before + 2);
  });
});
