import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSWER, startStack, type Stack } from './harness.ts';

const DOUBLE = { inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };

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
  it('checks every tensor shape against its data, flat or nested, naming the input', async () => {
    const bad = async (body: unknown, model = 'doubler') => {
      const r = await post(`/v2/models/${model}/infer`, body);
      const j = (await r.json()) as { error: string; code: string };
      return { status: r.status, code: j.code, error: j.error };
    };
    // a [2] shape with one element (the text path checked only the data)
    expect(await bad({ inputs: [{ name: 'text_input', shape: [2], datatype: 'BYTES', data: ['hi'] }] }, 'gen-model')).toEqual({
      status: 400,
      code: 'MCP_VALIDATION_FAILED',
      error: 'inputs[0].data: shape [2] holds 2 element(s), data has 1',
    });
    expect(
      await bad({
        inputs: [
          {
            name: 'INPUT0',
            shape: [2, 4],
            datatype: 'FP32',
            data: [
              [1, 2, 3, 4],
              [5, 6, 7],
            ],
          },
        ],
      }),
    ).toEqual({
      status: 400,
      code: 'MCP_VALIDATION_FAILED',
      error: 'inputs[0].data: shape [2,4] holds 8 element(s), data has 7',
    });
    expect(await bad({ inputs: [DOUBLE.inputs[0], { name: 'INPUT1', shape: [3], datatype: 'FP32', data: [1] }] })).toMatchObject({
      status: 400,
      error: 'inputs[1].data: shape [3] holds 3 element(s), data has 1',
    });
    expect(await bad({ inputs: [{ name: 'INPUT0', shape: [1, -4], datatype: 'FP32', data: [1, 2, 3, 4] }] })).toMatchObject({
      status: 400,
      error: 'inputs[0].shape: an array of non-negative integers',
    });
    expect(await bad({ inputs: [{ name: 'INPUT0', datatype: 'FP32', data: [1, 2, 3, 4] }] })).toMatchObject({ status: 400, code: 'MCP_VALIDATION_FAILED' });
    // schema refusals name the client's field too
    expect((await bad({ inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FLOAT', data: [1, 2, 3, 4] }] })).error).toMatch(/^inputs\[0\]\.datatype: /);
    const temp = await bad({ inputs: [{ name: 'text_input', shape: [1], datatype: 'BYTES', data: ['hi'] }], parameters: { temperature: 9 } }, 'gen-model');
    expect(temp).toMatchObject({ status: 400, code: 'MCP_VALIDATION_FAILED' });
    expect(temp.error).toMatch(/^parameters\.temperature: /);
    // nested along the shape: the same tensor as the flat one
    const nested = await post('/v2/models/doubler/infer', {
      inputs: [
        {
          name: 'INPUT0',
          shape: [2, 4],
          datatype: 'FP32',
          data: [
            [1, 2, 3, 4],
            [5, 6, 7, 8],
          ],
        },
      ],
    });
    expect(nested.status).toBe(200);
    expect((await nested.json()).outputs[0]).toMatchObject({ shape: [2, 4], data: [2, 4, 6, 8, 10, 12, 14, 16] });
    expect(s.kserve.lastRequest?.body).toMatchObject({ inputs: [{ name: 'INPUT0', shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] }] });
  });

  it('model repository extension: index, unload and load (the admin operations), errors as {"error": …}', async () => {
    expect((await (await get('/v2')).json()).extensions).toEqual(['model_repository']);
    const index = async (body?: unknown) => {
      const r = await fetch(`${s.gw.url}/v2/repository/index`, { method: 'POST', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      expect(r.status).toBe(200);
      return (await r.json()) as Array<{ name: string; version: string; state: string; reason: string }>;
    };
    const entry = async (name: string) => (await index()).find((e) => e.name === name);
    expect(await index()).toEqual(
      expect.arrayContaining([
        { name: 'doubler', version: '1', state: 'READY', reason: '' },
        { name: 'chat-model', version: 'v1', state: 'READY', reason: '' },
      ]),
    );

    const unload = await fetch(`${s.gw.url}/v2/repository/models/doubler/unload`, { method: 'POST' });
    expect(unload.status).toBe(200);
    expect(await unload.text()).toBe('');
    expect(await entry('doubler')).toEqual({ name: 'doubler', version: '1', state: 'UNAVAILABLE', reason: 'unloaded' });
    expect((await index({ ready: true })).map((e) => e.name)).not.toContain('doubler');
    expect((await get('/v2/models/doubler/ready')).status).toBe(400);
    const down = await post('/v2/models/doubler/infer', DOUBLE);
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({ error: expect.any(String), code: 'MCP_NO_HEALTHY_INSTANCE' });
    // the GraphQL view agrees: same instances, same code path
    const status = await s.gw.gql<{ model: { status: string } }>('{ model(id: "doubler") { status } }');
    expect(status.data?.model.status).toBe('UNLOADED');

    const load = await post('/v2/repository/models/doubler/load', {});
    expect(load.status).toBe(200);
    expect(await entry('doubler')).toEqual({ name: 'doubler', version: '1', state: 'READY', reason: '' });
    expect((await post('/v2/models/doubler/infer', DOUBLE)).status).toBe(200);

    // GraphQL's unloadModel / loadModel are the same operations
    const gqlUnload = await s.gw.gql<{ unloadModel: { status: string } }>('mutation { unloadModel(id: "doubler") { status } }');
    expect(gqlUnload.data?.unloadModel.status).toBe('UNLOADED');
    expect((await entry('doubler'))?.state).toBe('UNAVAILABLE');
    const gqlLoad = await s.gw.gql<{ loadModel: { status: string } }>('mutation { loadModel(id: "doubler", version: "1") { status } }');
    expect(gqlLoad.data?.loadModel.status).toBe('READY');
    expect((await post('/v2/models/doubler/infer', DOUBLE)).status).toBe(200);

    const empty = await s.gw.gql('mutation { registerModel(input: { id: "empty-model", task: GENERATE }) { id } }');
    expect(empty.errors).toBeUndefined();
    expect(await entry('empty-model')).toEqual({ name: 'empty-model', version: '', state: 'UNAVAILABLE', reason: 'no version' });
    const refusals: Array<[string, string, unknown, number, string]> = [
      ['POST', '/v2/repository/models/ghost/load', undefined, 404, 'MCP_MODEL_NOT_FOUND'],
      ['POST', '/v2/repository/models/empty-model/load', undefined, 409, 'MCP_CONFLICT'],
      ['POST', '/v2/repository/models/doubler/load', { parameters: { config: '{}' } }, 400, 'MCP_UNSUPPORTED_PARAMETER'],
      ['POST', '/v2/repository/models/doubler/load', { parameters: 1 }, 400, 'MCP_VALIDATION_FAILED'],
      ['POST', '/v2/repository/models/doubler/load', '[', 400, 'MCP_INVALID_JSON'],
      ['POST', '/v2/repository/index', { ready: 'yes' }, 400, 'MCP_VALIDATION_FAILED'],
      ['GET', '/v2/repository/index', undefined, 405, 'MCP_BAD_REQUEST'],
      ['POST', '/v2/repository/models/doubler/reload', undefined, 404, 'MCP_NOT_FOUND'],
      ['POST', '/v2/nowhere', undefined, 404, 'MCP_NOT_FOUND'],
    ];
    for (const [method, path, body, status, code] of refusals) {
      const r = await fetch(`${s.gw.url}${path}`, { method, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
      expect({ path, body, status: r.status, body_: await r.json() }).toEqual({ path, body, status, body_: { error: expect.any(String), code } });
    }
    // unload_dependents is Triton's own flag: accepted (nothing depends on a model here)
    expect((await post('/v2/repository/models/gen-model/unload', { parameters: { unload_dependents: true } })).status).toBe(200);
    expect((await post('/v2/repository/models/gen-model/load', {})).status).toBe(200);
  });

  it('an unload lets the requests in flight finish (as Triton does), then unloads; new requests are refused meanwhile', async () => {
    s.kserve.setBehavior({ inferDelayMs: 1500 });
    try {
      const inflight = post('/v2/models/doubler/infer', DOUBLE).then(async (r) => ({ status: r.status, at: Date.now(), body: await r.json() }));
      await new Promise((r) => setTimeout(r, 300)); // the request is at the upstream
      const unloading = post('/v2/repository/models/doubler/unload', {}).then((r) => ({ status: r.status, at: Date.now() }));
      await new Promise((r) => setTimeout(r, 200));
      const during = await post('/v2/models/doubler/infer', DOUBLE);
      expect(during.status).toBe(503); // out of routing at once
      const [done, unloaded] = await Promise.all([inflight, unloading]);
      expect(done.status).toBe(200);
      expect(done.body.outputs[0].data).toEqual([2, 4, 6, 8]);
      expect(unloaded.status).toBe(200);
      expect(unloaded.at).toBeGreaterThanOrEqual(done.at - 50); // answered after the request it waited for
    } finally {
      s.kserve.setBehavior({ inferDelayMs: 0 });
      expect((await post('/v2/repository/models/doubler/load', {})).status).toBe(200);
    }
  });
});

describe('KServe v2 with auth on: 401, 403 and 429 keep the {"error": …} body', () => {
  let s: Stack;
  const keys: Record<string, string> = {};
  const call = (method: string, path: string, who: string | undefined, body?: unknown) =>
    fetch(`${s.gw.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(who ? { authorization: `Bearer ${keys[who]}` } : {}) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  beforeAll(async () => {
    s = await startStack({
      auth: {},
      limits: { rules: [{ name: 'kserve-doubler', scope: 'principal', match: { models: ['doubler'], entries: ['kserve'] }, requests: 2, period: '1h' }] },
    });
    const admin = await s.gw.login();
    for (const role of ['viewer', 'developer', 'operator']) {
      const c = await s.gw.gql<{ createApiKey: { key: string } }>(
        'mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key } }',
        { input: { name: role, roles: [role] } },
        admin,
      );
      keys[role] = c.data!.createApiKey.key;
    }
    const limited = await s.gw.gql<{ createApiKey: { key: string } }>(
      'mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key } }',
      { input: { name: 'chat-operator', roles: ['operator'], models: ['chat-model'] } },
      admin,
    );
    keys['chat-operator'] = limited.data!.createApiKey.key;
  }, 60_000);
  afterAll(async () => {
    await s?.close();
  });

  it('refusals by credential and permission; index shows only readable models', async () => {
    const cases: Array<[string, string, string | undefined, unknown, number, string]> = [
      ['GET', '/v2', undefined, undefined, 401, 'MCP_UNAUTHENTICATED'],
      ['GET', '/v2/models/doubler', undefined, undefined, 401, 'MCP_UNAUTHENTICATED'],
      ['POST', '/v2/models/doubler/infer', undefined, DOUBLE, 401, 'MCP_UNAUTHENTICATED'],
      ['POST', '/v2/repository/index', undefined, {}, 401, 'MCP_UNAUTHENTICATED'],
      ['POST', '/v2/repository/models/doubler/load', undefined, {}, 401, 'MCP_UNAUTHENTICATED'],
      ['POST', '/v2/models/doubler/infer', 'viewer', DOUBLE, 403, 'MCP_FORBIDDEN'],
      // load and unload need models:write, like GraphQL's loadModel / loadInstance
      ['POST', '/v2/repository/models/doubler/load', 'viewer', {}, 403, 'MCP_FORBIDDEN'],
      ['POST', '/v2/repository/models/doubler/unload', 'developer', {}, 403, 'MCP_FORBIDDEN'],
      ['POST', '/v2/repository/models/doubler/unload', 'chat-operator', {}, 403, 'MCP_FORBIDDEN'],
    ];
    for (const [method, path, who, body, status, code] of cases) {
      const r = await call(method, path, who, body);
      expect({ path, who, status: r.status, body: await r.json() }).toEqual({ path, who, status, body: { error: expect.any(String), code } });
    }
    const viewerIndex = await call('POST', '/v2/repository/index', 'viewer', {});
    expect(viewerIndex.status).toBe(200);
    expect(((await viewerIndex.json()) as Array<{ name: string }>).map((e) => e.name)).toEqual(
      expect.arrayContaining(['chat-model', 'gen-model', 'embed-model', 'doubler']),
    );
    const limitedIndex = (await (await call('POST', '/v2/repository/index', 'chat-operator')).json()) as Array<{ name: string }>;
    expect(limitedIndex.map((e) => e.name)).toEqual(['chat-model']);
    expect((await call('POST', '/v2/repository/models/chat-model/unload', 'chat-operator', {})).status).toBe(200);
    expect((await call('POST', '/v2/repository/models/chat-model/load', 'chat-operator')).status).toBe(200);
    // audited with who did it
    const audit = await s.gw.gql<{ auditLog: { nodes: Array<{ action: string; target: string; outcome: string; actor: string | null }> } }>(
      '{ auditLog(filter: { action: "model.unload" }) { nodes { action target outcome actor } } }',
      {},
      await s.gw.login(),
    );
    expect(audit.errors).toBeUndefined();
    expect(audit.data?.auditLog.nodes).toEqual(
      expect.arrayContaining([{ action: 'model.unload', target: 'chat-model', outcome: 'OK', actor: expect.any(String) }]),
    );
  });

  it('429 from a rate limit', async () => {
    for (let i = 0; i < 2; i++) expect((await call('POST', '/v2/models/doubler/infer', 'developer', DOUBLE)).status).toBe(200);
    const r = await call('POST', '/v2/models/doubler/infer', 'developer', DOUBLE);
    expect(r.status).toBe(429);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await r.json()).toEqual({ error: expect.any(String), code: 'MCP_RATE_LIMITED' });
  });
});
