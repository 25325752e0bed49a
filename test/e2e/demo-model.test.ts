import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { AUTO_RUNTIME } from '../../plugins/backend-tfjs/auto-runtime.ts';

/** What a new user does after `npm start`: the shipped capibara-mini answers on every entry point. */
describe('the demo model capibara-mini on a default gateway', () => {
  let gw: TestGateway;
  let openai: OpenAI;
  beforeAll(async () => {
    gw = await startTestGateway({ demo: { enabled: true } });
    openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
  });

  it('is registered and ready on the tfjs backend, reporting its runtime', async () => {
    const r = await gw.gql<{ model: { status: string; versions: Array<{ instances: Array<{ backend: string; runtime: string; device: string }> }> } }>(
      '{ model(id: "capibara-mini") { status versions { instances { backend runtime device } } } }',
    );
    expect(r.data?.model.status).toBe('READY');
    expect(r.data?.model.versions[0]?.instances[0]).toMatchObject({ backend: 'tfjs', runtime: AUTO_RUNTIME, device: expect.stringMatching(/^(cpu|gpu:0)$/) });
  });

  it('answers GraphQL infer, the same text for the same seed', async () => {
    const q =
      'mutation { infer(model: "capibara-mini", input: { prompt: "The capybara", parameters: { maxTokens: 40, seed: 11, temperature: 0.8 } }) ' +
      '{ text finishReason usage { completionTokens } } }';
    const a = await gw.gql<{ infer: { text: string; finishReason: string; usage: { completionTokens: number } } }>(q);
    const b = await gw.gql<{ infer: { text: string } }>(q);
    expect(a.errors).toBeUndefined();
    expect(a.data!.infer.text.length).toBeGreaterThan(0);
    expect(a.data!.infer.usage.completionTokens).toBeLessThanOrEqual(40);
    expect(b.data!.infer.text).toBe(a.data!.infer.text);
  });

  it('answers REST in the seed shape', async () => {
    const res = await fetch(`${gw.url}/api/v1/models/capibara-mini/inference`, {
      method: 'POST',
      body: JSON.stringify({ input: 'Capybaras eat', parameters: { maxTokens: 20 } }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { result: string; model_id: string };
    expect(body.model_id).toBe('capibara-mini');
    expect(typeof body.result).toBe('string');
    expect(body.result.length).toBeGreaterThan(0);
  });

  it('answers the OpenAI SDK, streamed and not', async () => {
    const one = await openai.chat.completions.create({
      model: 'capibara-mini',
      messages: [{ role: 'user', content: 'What do capybaras eat?' }],
      max_tokens: 40,
      seed: 3,
    });
    expect(one.choices[0]!.message.content!.length).toBeGreaterThan(0);
    const stream = await openai.chat.completions.create({
      model: 'capibara-mini',
      messages: [{ role: 'user', content: 'Hello' }],
      max_tokens: 30,
      seed: 3,
      stream: true,
    });
    const parts: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c?.delta.content) parts.push(c.delta.content);
      if (c?.finish_reason) finish = c.finish_reason;
    }
    expect(parts.length).toBeGreaterThan(1);
    expect(['stop', 'length']).toContain(finish);
  });

  it('answers KServe v2 with a BYTES text_input', async () => {
    const meta = (await (await fetch(`${gw.url}/v2/models/capibara-mini`)).json()) as { inputs: Array<{ name: string }> };
    expect(meta.inputs[0]?.name).toBe('text_input');
    expect((await fetch(`${gw.url}/v2/models/capibara-mini/ready`)).status).toBe(200);
    const res = await fetch(`${gw.url}/v2/models/capibara-mini/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'text_input', shape: [1], datatype: 'BYTES', data: ['The capybara'] }], parameters: { max_tokens: 20 } }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { model_name: string; outputs: Array<{ name: string; data: string[] }> };
    expect(body.model_name).toBe('capibara-mini');
    expect(body.outputs[0]?.name).toBe('text_output');
    expect(body.outputs[0]?.data[0]?.length).toBeGreaterThan(0);
  });
});
