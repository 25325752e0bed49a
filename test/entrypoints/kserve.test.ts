import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSWER, startStack, type Stack } from './harness.ts';

describe('KServe v2 / Open Inference Protocol under /v2', () => {
  let s: Stack;
  const get = (path: string) => fetch(`${s.gw.url}${path}`);
  const post = (path: string, body: unknown) =>
    fetch(`${s.gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  beforeAll(async () => {
    s = await startStack();
  });
  afterAll(async () => {
    await s?.close();
  });

  it('server health, metadata, model metadata and readiness', async () => {
    expect(await (await get('/v2/health/live')).json()).toEqual({ live: true });
    const ready = await get('/v2/health/ready');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true });
    expect(await (await get('/v2')).json()).toMatchObject({ name: 'capibara-mcp' });
    const meta = await (await get('/v2/models/doubler')).json();
    // The tensor model's signature comes from the upstream's metadata.
    expect(meta).toMatchObject({
      name: 'doubler',
      versions: ['1'],
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'OUTPUT0' }],
    });
    const genMeta = await (await get('/v2/models/gen-model')).json();
    expect(genMeta).toMatchObject({ inputs: [{ name: 'text_input', datatype: 'BYTES' }], outputs: [{ name: 'text_output', datatype: 'BYTES' }] });
    const modelReady = await get('/v2/models/doubler/ready');
    expect(modelReady.status).toBe(200);
    expect(await modelReady.json()).toEqual({ name: 'doubler', ready: true });
    expect((await get('/v2/models/doubler/versions/1/ready')).status).toBe(200);
  });

  it('infers a tensor model through the kserve-v2 backend', async () => {
    const r = await post('/v2/models/doubler/infer', {
      id: 'req-1',
      inputs: [{ name: 'INPUT0', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6, 7, 8] }],
    });
    expect(r.status).toBe(200);
    const body = await r.json();
    expect(body).toMatchObject({
      model_name: 'doubler',
      model_version: '1',
      id: 'req-1',
      outputs: [{ name: 'OUTPUT0', shape: [2, 4], datatype: 'FP32', data: [2, 4, 6, 8, 10, 12, 14, 16] }],
    });
    const v = await post('/v2/models/doubler/versions/1/infer', { inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [0, 0, 0, 1] }] });
    expect((await v.json()).outputs[0].data).toEqual([0, 0, 0, 2]);
  });

  it('infers a generative model from a BYTES text_input', async () => {
    const r = await post('/v2/models/gen-model/infer', {
      inputs: [{ name: 'text_input', shape: [1], datatype: 'BYTES', data: ['Say hello'] }],
      parameters: { max_tokens: 7 },
    });
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ model_name: 'gen-model', outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [1], data: [ANSWER] }] });
    expect(s.openai.lastRequest?.body).toMatchObject({ prompt: 'Say hello', max_tokens: 7 });
  });

  it('answers bad requests with coded 4xx errors', async () => {
    const cases: Array<[string, unknown, number, string]> = [
      ['/v2/models/ghost/infer', { inputs: [] }, 404, 'MCP_MODEL_NOT_FOUND'],
      [
        '/v2/models/doubler/versions/9/infer',
        { inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] },
        404,
        'MCP_VERSION_NOT_FOUND',
      ],
      ['/v2/models/doubler/infer', { inputs: [] }, 400, 'MCP_VALIDATION_FAILED'],
      ['/v2/models/doubler/infer', { inputs: [{ name: 'INPUT0', shape: [2, 4], datatype: 'FP32', data: [1, 2, 3] }] }, 400, 'MCP_VALIDATION_FAILED'],
      ['/v2/models/doubler/infer', { inputs: [{ name: 'INPUT0', shape: [1, 3], datatype: 'FP32', data: [1, 2, 3] }] }, 400, 'MCP_INVALID_INPUT_SHAPE'],
      ['/v2/models/doubler/infer', { inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'INT64', data: [1, 2, 3, 4] }] }, 400, 'MCP_INVALID_INPUT_SHAPE'],
      ['/v2/models/doubler/infer', { inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FLOAT', data: [1, 2, 3, 4] }] }, 400, 'MCP_VALIDATION_FAILED'],
      ['/v2/models/doubler/infer', { inputs: [{ name: 'WRONG', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }, 400, 'MCP_INVALID_INPUT_SHAPE'],
      ['/v2/models/doubler/infer', [1, 2], 400, 'MCP_VALIDATION_FAILED'],
    ];
    for (const [path, body, status, code] of cases) {
      const r = await post(path, body);
      const j = (await r.json()) as { error: string; code: string };
      expect({ path, body, status: r.status, code: j.code }).toEqual({ path, body, status, code });
      expect(typeof j.error).toBe('string');
    }
    const notFound = await get('/v2/models/ghost');
    expect(notFound.status).toBe(404);
    expect((await notFound.json()).code).toBe('MCP_MODEL_NOT_FOUND');
    const badJson = await fetch(`${s.gw.url}/v2/models/doubler/infer`, { method: 'POST', body: '{"inputs": [' });
    expect(badJson.status).toBe(400);
    expect((await badJson.json()).code).toBe('MCP_INVALID_JSON');
    const wrongMethod = await fetch(`${s.gw.url}/v2/models/doubler/infer`);
    expect(wrongMethod.status).toBe(405);
  });
});
