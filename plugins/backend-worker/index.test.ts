import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import plugin, { type createWorkerBackend } from './index.ts';
import openaiPlugin from '../backend-openai/index.ts';
import { McpError, type BackendCall, type LoadedInstance, type InferenceChunk, type InferenceInput, createWorkerHttpServer } from 'capibara-mcp';
import { testPluginContext, startFakeOpenAI, type FakeOpenAIServer, startFaultProxy, type FaultProxy } from 'capibara-mcp/testing';

function call(extra: Partial<BackendCall> = {}): BackendCall {
  return { requestId: extra.requestId ?? 'req-w', signal: extra.signal ?? new AbortController().signal, deadline: extra.deadline };
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
async function drain(it: AsyncIterable<InferenceChunk>): Promise<InferenceChunk[]> {
  const out: InferenceChunk[] = [];
  for await (const c of it) out.push(c);
  return out;
}

/** A valid input for the scripted instance (the worker validates every input it receives). */
const X: InferenceInput = { task: 'tensor', tensors: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] };

/** A local instance with scripted failures. */
const scripted: LoadedInstance = {
  runtime: 'tfjs-node-gpu',
  device: 'gpu:0',
  tasks: ['tensor'],
  signature: { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }] },
  async infer(input: InferenceInput) {
    if (input.extra?.fail === 'shape') throw new McpError('MCP_INVALID_INPUT_SHAPE', 'bad shape', { details: { input: 'x', expected: { shape: [-1, 2] } } });
    if (input.extra?.fail === 'overloaded') throw new McpError('MCP_OVERLOADED', 'busy', { retryable: true });
    return { tensors: [{ name: 'y', shape: [1, 2], datatype: 'FP32', data: [2, 4] }] };
  },
  async *stream(input: InferenceInput) {
    yield { text: 'a' };
    yield { text: 'b' };
    if (input.extra?.fail === 'mid') throw new McpError('MCP_UPSTREAM_UNAVAILABLE', 'gone', { retryable: true });
    yield { text: '', finishReason: 'stop' };
  },
  async health() {
    return { ok: false, detail: 'warming up' };
  },
  async unload() {
    /* */
  },
};

const SESSION = 'session-of-this-worker-process';

describe('worker backend over the worker protocol', () => {
  let fake: FakeOpenAIServer;
  let proxy: FaultProxy;
  let server: Server;
  let workerUrl: string;
  let workerConnections = 0;
  const workerCtx = testPluginContext('openai');
  const ctx = testPluginContext('worker');
  let backend: ReturnType<typeof createWorkerBackend>;
  /** The call token the worker process accepts (learned from the gateway when it registers). */
  let accepted: string | undefined;
  const opts = (remoteInstanceId?: string) => ({ worker: 'w1', session: SESSION, ...(remoteInstanceId ? { remoteInstanceId } : {}) });
  let remoteLlm: LoadedInstance;
  let remoteTensor: LoadedInstance;

  beforeAll(async () => {
    fake = await startFakeOpenAI();
    // the worker process side: an openai instance and a scripted one, served over HTTP
    const openai = await openaiPlugin.setup(workerCtx, openaiPlugin.options.parse({}));
    const llm = await openai.load({ id: 'llm-1', model: 'fake-model', version: '1', endpoint: fake.url, options: {} }, workerCtx.signal);
    server = createWorkerHttpServer({
      instances: new Map([
        ['llm-1', llm],
        ['t/1', scripted],
      ]),
      callToken: () => accepted,
      logger: pino({ level: 'silent' }),
    });
    server.on('connection', () => {
      workerConnections++;
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    workerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    proxy = await startFaultProxy({ target: workerUrl });
    // the gateway side
    backend = (await plugin.setup(ctx, plugin.options.parse({ connections: 2, timeouts: { firstByteMs: 1000, totalMs: 3000 } }))) as typeof backend;
    accepted = await backend.workerCallToken('w1', SESSION, workerUrl);
    remoteLlm = await backend.load({ id: 'gw-llm', model: 'm', version: '1', endpoint: workerUrl, options: opts('llm-1') }, ctx.signal);
    remoteTensor = await backend.load({ id: 't/1', model: 't', version: '1', endpoint: workerUrl, options: opts() }, ctx.signal);
  });
  afterAll(async () => {
    await ctx.close();
    await proxy.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await workerCtx.close();
    await fake.close();
  });

  it('reports the remote instance runtime, device, tasks and signature', async () => {
    expect([remoteLlm.runtime, remoteLlm.device, remoteLlm.tasks]).toEqual(['remote', 'remote', ['chat', 'generate', 'embed']]);
    expect([remoteTensor.runtime, remoteTensor.device, remoteTensor.tasks]).toEqual(['tfjs-node-gpu', 'gpu:0', ['tensor']]);
    expect(remoteTensor.signature).toEqual(scripted.signature);
    expect(await remoteTensor.health(AbortSignal.timeout(1000))).toEqual({ ok: false, detail: 'warming up' });
    expect(await remoteLlm.health(AbortSignal.timeout(1000))).toEqual({ ok: true });
  });

  it('infers through the worker, passing x-request-id to the model server', async () => {
    const out = await remoteLlm.infer(
      { task: 'chat', messages: [{ role: 'user', content: 'hi' }], parameters: { maxTokens: 3 } },
      call({ requestId: 'trace-1' }),
    );
    expect(out).toEqual({ text: 'Hello, world!', finishReason: 'stop', usage: { promptTokens: 5, completionTokens: 4, totalTokens: 9 } });
    expect(fake.lastRequest?.headers['x-request-id']).toBe('trace-1');
    expect(fake.lastRequest?.body).toMatchObject({ max_tokens: 3 });
    expect(
      (await remoteTensor.infer({ task: 'tensor', tensors: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] }, call())).tensors?.[0]?.data,
    ).toEqual([2, 4]);
  });

  it('streams in order, token by token', async () => {
    fake.setBehavior({ tokens: ['x', 'y', 'z', 'w'], tokenDelayMs: 40 });
    const t0 = Date.now();
    const seen: Array<{ text: string; at: number }> = [];
    let last: InferenceChunk | undefined;
    for await (const c of remoteLlm.stream!({ task: 'generate', prompt: 'p' }, call())) {
      seen.push({ text: c.text, at: Date.now() - t0 });
      last = c;
    }
    fake.setBehavior({});
    expect(seen.map((s) => s.text)).toEqual(['x', 'y', 'z', 'w', '']);
    expect(last).toMatchObject({ finishReason: 'stop', usage: { completionTokens: 4 } });
    expect(seen[3]!.at - seen[0]!.at).toBeGreaterThanOrEqual(80);
  });

  it("rebuilds the worker's McpErrors, before and during a stream", async () => {
    const shape = await rejection(remoteTensor.infer({ ...X, extra: { fail: 'shape' } }, call()));
    expect([shape.code, shape.status, shape.retryable, shape.details]).toEqual([
      'MCP_INVALID_INPUT_SHAPE',
      400,
      false,
      { input: 'x', expected: { shape: [-1, 2] } },
    ]);
    const busy = await rejection(remoteTensor.infer({ ...X, extra: { fail: 'overloaded' } }, call()));
    expect([busy.code, busy.retryable]).toEqual(['MCP_OVERLOADED', true]);
    const texts: string[] = [];
    const mid = await rejection(
      (async () => {
        for await (const c of remoteTensor.stream!({ task: 'generate', prompt: 'p', extra: { fail: 'mid' } }, call())) texts.push(c.text);
      })(),
    );
    expect([mid.code, mid.retryable, texts]).toEqual(['MCP_UPSTREAM_UNAVAILABLE', true, ['a', 'b']]);
    fake.setBehavior({ status: 429, errorHeaders: { 'retry-after': '2' } });
    const rl = await rejection(remoteLlm.infer({ task: 'generate', prompt: 'x' }, call()));
    fake.setBehavior({});
    expect([rl.code, rl.retryable, rl.details?.retryAfterMs]).toEqual(['MCP_UPSTREAM_RATE_LIMITED', true, 2000]);
    const nf = await rejection(backend.load({ id: 'ghost', model: 'g', version: '1', endpoint: workerUrl, options: opts() }, ctx.signal));
    expect([nf.code, nf.retryable]).toEqual(['MCP_INSTANCE_NOT_FOUND', true]);
  });

  it('passes the deadline to the worker and the model server', async () => {
    fake.setBehavior({ delayMs: 1500 });
    const t0 = Date.now();
    const e = await rejection(remoteLlm.infer({ task: 'generate', prompt: 'x' }, call({ deadline: Date.now() + 100 })));
    fake.setBehavior({});
    expect(e.code).toBe('MCP_DEADLINE_EXCEEDED');
    expect(Date.now() - t0).toBeLessThan(1200);
  });

  it('a client going away aborts the worker call and the model server request', async () => {
    fake.setBehavior({ tokens: Array.from({ length: 30 }, (_, i) => `t${i}`), tokenDelayMs: 40 });
    const abortedBefore = fake.aborted;
    const ac = new AbortController();
    const seen: string[] = [];
    const e = await rejection(
      (async () => {
        for await (const c of remoteLlm.stream!({ task: 'generate', prompt: 'p' }, call({ signal: ac.signal }))) {
          seen.push(c.text);
          if (seen.length === 2) ac.abort();
        }
      })(),
    );
    expect(e.code).toBe('MCP_CANCELLED');
    await expect.poll(() => fake.aborted, { timeout: 2000, interval: 20 }).toBe(abortedBefore + 1);
    fake.setBehavior({});
  });

  it('maps an unreachable or resetting worker to retryable UNAVAILABLE', async () => {
    // through a proxy the endpoint differs from the one the token is bound to: the token is given as a header
    const viaProxy = await backend.load(
      { id: 'p', model: 'm', version: '1', endpoint: proxy.url, options: { remoteInstanceId: 'llm-1', headers: { authorization: `Bearer ${accepted!}` } } },
      ctx.signal,
    );
    proxy.set({ reset: true });
    const e = await rejection(viaProxy.infer({ task: 'generate', prompt: 'x' }, call()));
    expect([e.code, e.retryable]).toEqual(['MCP_UPSTREAM_UNAVAILABLE', true]);
    expect((await viaProxy.health(AbortSignal.timeout(1000))).ok).toBe(false);
    proxy.set({});
    expect((await viaProxy.infer({ task: 'generate', prompt: 'x' }, call())).text).toBe('Hello, world!');
  });

  it('sends a call token bound to worker, session and endpoint; the worker refuses any other (never a 401 to the client)', async () => {
    const token = await backend.workerCallToken('w1', SESSION, workerUrl);
    expect(token).toBe(accepted);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await backend.workerCallToken('w2', SESSION, workerUrl)).not.toBe(token);
    expect(await backend.workerCallToken('w1', 'another-session-value', workerUrl)).not.toBe(token);
    expect(await backend.workerCallToken('w1', SESSION, 'http://10.0.0.1:1')).not.toBe(token);
    const refused = [
      { id: 'anon', options: { remoteInstanceId: 'llm-1' } },
      { id: 'other-worker', options: { remoteInstanceId: 'llm-1', worker: 'w2', session: SESSION } },
      { id: 'other-session', options: { remoteInstanceId: 'llm-1', worker: 'w1', session: 'another-session-value' } },
    ];
    for (const r of refused) {
      const e = await rejection(backend.load({ id: r.id, model: 'm', version: '1', endpoint: workerUrl, options: r.options }, ctx.signal));
      expect([r.id, e.code, e.status, e.retryable]).toEqual([r.id, 'MCP_UPSTREAM_ERROR', 502, false]);
      expect(e.message).toContain('MCP_WORKER_CALL_KEY');
    }
    // a second gateway process with the same data folder (one key) computes the same token
    const again = (await plugin.setup(ctx, plugin.options.parse({}))) as typeof backend;
    expect(await again.workerCallToken('w1', SESSION, workerUrl)).toBe(token);
  });

  it('keeps connections to the worker alive', async () => {
    const before = workerConnections;
    for (let i = 0; i < 20; i++) await remoteTensor.infer(X, call());
    await Promise.all(Array.from({ length: 20 }, () => drain(remoteTensor.stream!({ task: 'generate', prompt: 'p' }, call()))));
    expect(workerConnections - before).toBeLessThanOrEqual(2);
  });
});
