/**
 * OpenAI-compatible errors name the client's parameter (`temperature`, `messages[0].content`,
 * `extra_body.top_k`), never the internal input's path (`input.parameters.temperature`), in the
 * error body's `param` and at the start of its `message`.
 */
import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type Stack } from './harness.ts';

describe('OpenAI errors name the parameter the client sent', () => {
  let s: Stack;
  let client: OpenAI;
  beforeAll(async () => {
    s = await startStack();
    client = new OpenAI({ baseURL: `${s.gw.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 10_000 });
  });
  afterAll(async () => {
    await s?.close();
  });

  const post = async (path: string, body: Record<string, unknown>) => {
    const r = await fetch(`${s.gw.url}/v1/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const j = (await r.json()) as { error: { message: string; type: string; code: string; param: string | null } };
    return { status: r.status, ...j.error };
  };
  const chat = (extra: Record<string, unknown>) => post('chat/completions', { model: 'chat-model', messages: [{ role: 'user', content: 'hi' }], ...extra });
  const completion = (extra: Record<string, unknown>) => post('completions', { model: 'gen-model', prompt: 'hi', ...extra });

  it('every generation parameter, on chat and completions', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ temperature: 7 }, 'temperature'],
      [{ temperature: 'hot' }, 'temperature'],
      [{ top_p: 0 }, 'top_p'],
      [{ top_k: -1 }, 'top_k'],
      [{ seed: 1.5 }, 'seed'],
      [{ max_tokens: 0 }, 'max_tokens'],
      [{ max_completion_tokens: 10 ** 9 }, 'max_completion_tokens'],
      [{ max_tokens: 5, max_completion_tokens: 0 }, 'max_completion_tokens'],
      [{ stop: '' }, 'stop'],
      [{ stop: ['a', ''] }, 'stop[1]'],
      [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
      // lifted from extra_body: named where the client put it
      [{ extra_body: { top_k: 5000 } }, 'extra_body.top_k'],
      [{ extra_body: { max_new_tokens: 0 } }, 'extra_body.max_new_tokens'],
      [{ extra_body: { messages: [] } }, 'extra_body.messages'],
    ];
    for (const send of [chat, completion]) {
      for (const [extra, param] of cases) {
        const e = await send(extra);
        expect({ extra, status: e.status, code: e.code, type: e.type, param: e.param }).toEqual({
          extra,
          status: 400,
          code: 'MCP_VALIDATION_FAILED',
          type: 'invalid_request_error',
          param,
        });
        expect(e.message.startsWith(`${param}: `), e.message).toBe(true);
        expect(e.message).not.toContain('input.');
      }
    }
  });

  it('messages, prompt, embedding input and model', async () => {
    const cases: Array<[Promise<{ status: number; param: string | null; message: string }>, string]> = [
      [
        post('chat/completions', {
          model: 'chat-model',
          messages: [
            { role: 'user', content: 'hi' },
            { role: 'robot', content: 'x' },
          ],
        }),
        'messages[1].role',
      ],
      [post('chat/completions', { model: 'chat-model', messages: [{ role: 'user', content: 5 }] }), 'messages[0].content'],
      [post('chat/completions', { model: 'chat-model', messages: [] }), 'messages'],
      [post('chat/completions', { model: 'chat-model' }), 'messages'],
      [post('completions', { model: 'gen-model', prompt: 5 }), 'prompt'],
      [post('completions', { model: 'gen-model', prompt: [5] }), 'prompt[0]'],
      [post('embeddings', { model: 'embed-model', input: 5 }), 'input'],
      [post('embeddings', { model: 'embed-model', input: ['a', 7] }), 'input[1]'],
      [post('embeddings', { model: 'embed-model', input: [] }), 'input'],
      [post('chat/completions', { model: 'chat-model:', messages: [{ role: 'user', content: 'hi' }] }), 'model'],
    ];
    for (const [p, param] of cases) {
      const e = await p;
      expect({ status: e.status, param: e.param }).toEqual({ status: 400, param });
      expect(e.message.startsWith(`${param}: `), e.message).toBe(true);
    }
  });

  it('the official SDK sees the parameter in APIError.param', async () => {
    const e = await client.chat.completions
      .create({ model: 'chat-model', messages: [{ role: 'user', content: 'hi' }], temperature: 7 })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(APIError);
    expect((e as APIError).param).toBe('temperature');
    expect((e as APIError).message).toContain('temperature: ');
    expect((e as APIError).message).not.toContain('input.parameters');
  });
});
