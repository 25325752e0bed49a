/**
 * Issue 10: "an upstream error body is returned to the client verbatim (an internal service's
 * secret came back in the answer)". A model server answering 500 with a secret in its body: no
 * entry point (GraphQL, REST, OpenAI, KServe) shows it; the log has the body cut to 512 bytes.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeKServe, type FakeKServeServer } from '../../src/testing/fake-kserve-server.ts';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

const SECRET = 'sk-internal-7f3a9c1e5b';
const LATE_SECRET = 'late-secret-2d8e4f6a0c';
/** An internal service's error page: the secret early, another one past the first 512 bytes. */
const ERROR_BODY = {
  error: { message: `database login failed for user admin password=${SECRET}; ${'trace '.repeat(150)} token=${LATE_SECRET}`, type: 'server_error' },
};

describe('upstream error bodies never reach clients', () => {
  let gw: TestGateway;
  let openai: FakeOpenAIServer;
  let kserve: FakeKServeServer;
  const logLines: string[] = [];

  beforeAll(async () => {
    openai = await startFakeOpenAI();
    kserve = await startFakeKServe();
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    gw = await startTestGateway(
      { defaultPlugins: false, plugins: [{ use: 'openai' }, { use: 'kserve-v2' }, { use: 'p2c-ewma' }], router: { maxAttempts: 1 } },
      { logger: pino({ level: 'debug' }, sink) },
    );
    const reg = await gw.gql(
      `mutation ($a: RegisterModelInput!, $b: RegisterModelInput!) { a: registerModel(input: $a) { status } b: registerModel(input: $b) { status } }`,
      {
        a: {
          id: 'chatty',
          task: 'CHAT',
          versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: openai.url, options: { model: 'fake-model' } }] }],
        },
        b: { id: 'doubler', task: 'TENSOR', versions: [{ version: '1', instances: [{ backend: 'kserve-v2', endpoint: kserve.url }] }] },
      },
    );
    expect(reg.errors).toBeUndefined();
    openai.setBehavior({ status: 500, errorBody: ERROR_BODY });
    kserve.setBehavior({ status: 500, errorBody: ERROR_BODY });
  });
  afterAll(async () => {
    await gw?.close();
    await openai?.close();
    await kserve?.close();
  });

  const post = async (path: string, body: unknown) => {
    const r = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, text: await r.text() };
  };
  const expectClean = (text: string) => {
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(LATE_SECRET);
    expect(text).not.toContain('password');
  };

  it('GraphQL infer: MCP_UPSTREAM_ERROR with the upstream status, not its words', async () => {
    const r = await gw.gql(`mutation { infer(model: "chatty", input: { messages: [{ role: "user", content: "hi" }] }) { text } }`);
    expectClean(JSON.stringify(r));
    expect(r.errors?.[0]?.extensions?.code).toBe('MCP_UPSTREAM_ERROR');
    expect(r.errors?.[0]?.message).toBe('the model server failed (upstream status 500)');
  });

  it('REST inference', async () => {
    const r = await post('/api/v1/models/chatty/inference', { messages: [{ role: 'user', content: 'hi' }] });
    expect(r.status).toBe(502);
    expectClean(r.text);
    expect(r.text).toContain('MCP_UPSTREAM_ERROR');
  });

  it('OpenAI chat completions, plain and streamed', async () => {
    const plain = await post('/v1/chat/completions', { model: 'chatty', messages: [{ role: 'user', content: 'hi' }] });
    expect(plain.status).toBe(502);
    expectClean(plain.text);
    const streamed = await post('/v1/chat/completions', { model: 'chatty', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    expectClean(streamed.text);
    expect(streamed.text).toContain('upstream status 500');
  });

  it('KServe v2: a generative model through text_input, and a tensor model', async () => {
    const gen = await post('/v2/models/chatty/infer', { inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1], data: ['hi'] }] });
    expect(gen.status).toBeGreaterThanOrEqual(400);
    expectClean(gen.text);
    const tensor = await post('/v2/models/doubler/infer', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] });
    expect(tensor.status).toBe(502);
    expectClean(tensor.text);
    expect(kserve.counts['/v2/models/doubler/infer'] ?? Object.keys(kserve.counts).length).toBeGreaterThan(0);
  });

  it('the log keeps the body cut to 512 bytes', () => {
    const logged = logLines
      .map((l) => JSON.parse(l) as { msg?: string; body?: string; status?: number })
      .filter((l) => l.msg === 'upstream answered with an error');
    expect(logged.length).toBeGreaterThan(0);
    for (const l of logged) {
      expect(l.status).toBe(500);
      expect(Buffer.byteLength(l.body ?? '')).toBeLessThanOrEqual(512 + 3);
      expect(l.body).toContain(SECRET);
      expect(l.body).not.toContain(LATE_SECRET);
    }
  });
});
