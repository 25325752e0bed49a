import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import plugin, { checkTensors } from './index.ts';
import { McpError, parseInferenceInput, type Backend, type BackendCall, type LoadedInstance } from 'capibara-mcp';
import { testPluginContext, startFakeKServe, type FakeKServeServer, startFaultProxy, type FaultProxy } from 'capibara-mcp/testing';

function call(extra: Partial<BackendCall> = {}): BackendCall {
  return { requestId: extra.requestId ?? 'req-7', signal: extra.signal ?? new AbortController().signal, deadline: extra.deadline };
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
const input = (data: number[], shape = [data.length / 4, 4], datatype = 'FP32') => ({
  task: 'tensor' as const,
  tensors: [{ name: 'INPUT0', shape, datatype: datatype as 'FP32', data }],
});

describe('kserve-v2 backend', () => {
  let fake: FakeKServeServer;
  let proxy: FaultProxy;
  const ctx = testPluginContext('kserve-v2');
  let backend: Backend;
  let inst: LoadedInstance;

  beforeAll(async () => {
    fake = await startFakeKServe();
    proxy = await startFaultProxy({ target: fake.url, seed: 1 });
    backend = await plugin.setup(ctx, plugin.options.parse({ connections: 2, timeouts: { firstByteMs: 400, totalMs: 2000 } }));
    inst = await backend.load({ id: 'k1', model: 'my-doubler', version: 'v1', endpoint: fake.url, options: { model: 'doubler', version: '2' } }, ctx.signal);
  });
  afterAll(async () => {
    await ctx.close();
    await proxy.close();
    await fake.close();
  });

  it('builds the signature from metadata at load', () => {
    expect(fake.counts['/v2/models/doubler/versions/2']).toBe(1);
    expect(inst.signature).toEqual({
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'OUTPUT0', datatype: 'FP32', shape: [-1, 4] }],
    });
    expect(inst.tasks).toEqual(['tensor']);
  });

  it('infers and returns tensors', async () => {
    const out = await inst.infer({ ...input([1, 2, 3, 4, 5, 6, 7, 8]), outputs: ['OUTPUT0'], extra: { priority: 1 } }, call());
    expect(out.tensors).toEqual([{ name: 'OUTPUT0', shape: [2, 4], datatype: 'FP32', data: [2, 4, 6, 8, 10, 12, 14, 16] }]);
    expect(fake.lastRequest?.path).toBe('/v2/models/doubler/versions/2/infer');
    expect(fake.lastRequest?.body).toEqual({
      id: 'req-7',
      inputs: [{ name: 'INPUT0', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6, 7, 8] }],
      outputs: [{ name: 'OUTPUT0' }],
      parameters: { priority: 1 },
    });
    expect(fake.lastRequest?.headers['x-request-id']).toBe('req-7');
  });

  it('checks inputs against the signature before sending', async () => {
    const before = fake.requests;
    const rank = await rejection(inst.infer(input([1, 2, 3, 4], [4]), call()));
    expect(rank.code).toBe('MCP_INVALID_INPUT_SHAPE');
    expect(rank.details).toMatchObject({ input: 'INPUT0', expected: { shape: [-1, 4], datatype: 'FP32' }, given: { shape: [4], datatype: 'FP32' } });
    const dim = await rejection(inst.infer(input([1, 2, 3], [1, 3]), call()));
    expect(dim.details).toMatchObject({ expected: { shape: [-1, 4] }, given: { shape: [1, 3] } });
    const dtype = await rejection(inst.infer(input([1, 2, 3, 4], [1, 4], 'INT32'), call()));
    expect([dtype.code, (dtype.details?.given as { datatype: string }).datatype]).toEqual(['MCP_INVALID_INPUT_SHAPE', 'INT32']);
    // Data that does not fill its shape never reaches a backend: the input schema refuses it at every entry point.
    const count = await rejection((async () => parseInferenceInput(input([1, 2, 3], [1, 4])))());
    expect([count.code, count.message]).toEqual(['MCP_VALIDATION_FAILED', 'input.tensors.0: data has 3 elements, shape [1,4] needs 4']);
    const unknown = await rejection(inst.infer({ task: 'tensor', tensors: [{ name: 'X', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }, call()));
    expect(unknown.code).toBe('MCP_INVALID_INPUT_SHAPE');
    expect((await rejection(inst.infer({ ...input([1, 2, 3, 4]), outputs: ['NOPE'] }, call()))).code).toBe('MCP_BAD_REQUEST');
    expect((await rejection(inst.infer({ task: 'chat', messages: [] }, call()))).code).toBe('MCP_UNSUPPORTED_PARAMETER');
    expect(fake.requests).toBe(before);
    expect(() =>
      checkTensors(
        {
          inputs: [
            { name: 'A', datatype: 'FP32', shape: [1] },
            { name: 'B', datatype: 'FP32', shape: [1] },
          ],
          outputs: [],
        },
        [{ name: 'A', datatype: 'FP32', shape: [1], data: [1] }],
      ),
    ).toThrow(/missing input: B/);
  });

  it('maps unknown models and versions to MODEL_NOT_FOUND at load', async () => {
    const e = await rejection(backend.load({ id: 'k2', model: 'nope', version: '1', endpoint: fake.url, options: {} }, ctx.signal));
    expect([e.code, e.retryable]).toEqual(['MCP_MODEL_NOT_FOUND', false]);
    expect(e.message).toMatch(/nope/);
    const v = await rejection(backend.load({ id: 'k3', model: 'doubler', version: '1', endpoint: fake.url, options: { version: '9' } }, ctx.signal));
    expect(v.code).toBe('MCP_MODEL_NOT_FOUND');
  });

  it('maps upstream errors and faults', async () => {
    fake.setBehavior({ status: 400, errorBody: { error: 'unexpected shape for input INPUT0' } });
    const bad = await rejection(inst.infer(input([1, 2, 3, 4]), call()));
    // the upstream's own words go to the log, never to the caller
    expect([bad.code, bad.message]).toEqual(['MCP_BAD_REQUEST', 'the model server rejected the request (upstream status 400)']);
    fake.setBehavior({});
    const viaProxy = await backend.load({ id: 'k4', model: 'doubler', version: '1', endpoint: proxy.url, options: {} }, ctx.signal);
    proxy.set({ errorRate: 1, errorStatus: 503 });
    const un = await rejection(viaProxy.infer(input([1, 2, 3, 4]), call()));
    expect([un.code, un.retryable]).toEqual(['MCP_UPSTREAM_UNAVAILABLE', true]);
    expect(await viaProxy.health(AbortSignal.timeout(1000))).toMatchObject({ ok: false });
    proxy.set({ latencyMs: 300 });
    const dl = await rejection(viaProxy.infer(input([1, 2, 3, 4]), call({ deadline: Date.now() + 50 })));
    expect(dl.code).toBe('MCP_DEADLINE_EXCEEDED');
    proxy.set({});
    expect((await viaProxy.infer(input([1, 1, 1, 1]), call())).tensors?.[0]?.data).toEqual([2, 2, 2, 2]);
  });

  it('reports readiness through GET …/ready', async () => {
    expect(await inst.health(AbortSignal.timeout(1000))).toEqual({ ok: true });
    expect(fake.lastRequest?.path).toBe('/v2/models/doubler/versions/2/ready');
    fake.setBehavior({ ready: false });
    expect(await inst.health(AbortSignal.timeout(1000))).toMatchObject({ ok: false });
    fake.setBehavior({});
  });

  it('reuses connections', async () => {
    const before = fake.connections;
    await Promise.all(Array.from({ length: 30 }, (_, i) => inst.infer(input([i, i, i, i]), call())));
    expect(fake.connections - before).toBeLessThanOrEqual(2);
  });
});
