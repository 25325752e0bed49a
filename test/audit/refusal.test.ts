import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

// A buffer that cannot drain (the window never closes, the batch is never full) and holds 6 items:
// three calls fit (a record and an audit row each), the fourth is refused — never answered unrecorded.
describe('a full inference-record buffer', () => {
  let openai: FakeOpenAIServer;
  let gw: TestGateway;
  beforeAll(async () => {
    openai = await startFakeOpenAI({ models: ['fake-model'], tokens: ['ok'] });
    gw = await startTestGateway({
      defaultPlugins: false,
      plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }],
      router: { healthCheck: { enabled: false }, recording: { flushIntervalMs: 3_600_000, maxBatch: 500, maxBuffered: 6 } },
      models: [
        { id: 'chat', task: 'chat', versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: openai.url, options: { model: 'fake-model' } }] }] },
      ],
    });
  });
  afterAll(async () => {
    await gw?.close();
    await openai?.close();
  });

  const call = async (stream = false) => {
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', stream, messages: [{ role: 'user', content: 'hi' }] }),
    });
    return { status: res.status, body: await res.text() };
  };

  it('refuses the call with 503 MCP_STORAGE_UNAVAILABLE, counts it, and serves again once the buffer is written', async () => {
    for (let i = 0; i < 3; i++) expect((await call()).status).toBe(200);
    const refused = await call();
    expect(refused.status).toBe(503);
    expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'MCP_STORAGE_UNAVAILABLE' } });
    // A stream has sent its tokens already: its last event is the error (the OpenAI adapter then closes it with [DONE]).
    const stream = await call(true);
    const events = stream.body.split('\n\n').filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]');
    expect(JSON.parse(events.at(-1)!.slice(6))).toMatchObject({ error: { code: 'MCP_STORAGE_UNAVAILABLE' } });
    const recorder = gw.services.traffic.recorder!;
    expect(recorder.stats.refused).toBeGreaterThanOrEqual(2);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/mcp_audit_refused_total\{buffer="inferences"\} [1-9]/);
    await recorder.flush();
    expect((await call()).status).toBe(200);
  });
});
