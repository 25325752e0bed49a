import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.ts';
import { codeOf, startStack, type Stack } from './harness.ts';

/** 5xx answers the router may legitimately give (no instance, upstream trouble, deadline); never 500. */
const ALLOWED_5XX = new Set([502, 503, 504]);
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

const KEYS = [
  'model',
  'messages',
  'prompt',
  'input',
  'inputs',
  'outputs',
  'texts',
  'parameters',
  'stream',
  'stream_options',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'top_k',
  'seed',
  'stop',
  'n',
  'user',
  'extra_body',
  'encoding_format',
  'version',
  'id',
  'name',
  'shape',
  'datatype',
  'data',
  'role',
  'content',
  'task',
  'maxTokens',
  '__proto__',
  'constructor',
];
const MODELS = ['chat-model', 'gen-model', 'embed-model', 'doubler', 'ghost', 'chat-model:v1', 'chat-model:v9', '', ':'];

const leaf = fc.oneof(
  fc.constantFrom(
    ...MODELS,
    'user',
    'assistant',
    'wizard',
    'FP32',
    'BYTES',
    'INT64',
    'text_input',
    'INPUT0',
    'float',
    'base64',
    true,
    false,
    null,
    0,
    -1,
    1,
    2.5,
    1e308,
    -0,
    4096,
  ),
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double({ noNaN: true }),
);
/** Objects made of plausible keys and plausibly-typed values, nested a little. */
const plausible: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('object'), fc.array(tie('value'), { maxLength: 4 })),
  object: fc.dictionary(fc.constantFrom(...KEYS), tie('value'), { maxKeys: 6 }),
})).object;
/** Almost-valid requests with one field replaced. */
const nearlyValid = fc
  .tuple(
    fc.constantFrom<Record<string, unknown>>(
      { model: 'chat-model', messages: [{ role: 'user', content: 'hi' }] },
      { model: 'gen-model', prompt: 'hi', max_tokens: 4 },
      { model: 'embed-model', input: ['a'] },
      { input: 'hello', parameters: { maxTokens: 3 } },
      { inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] },
      { inputs: [{ name: 'text_input', shape: [1], datatype: 'BYTES', data: ['hi'] }] },
    ),
    fc.constantFrom(...KEYS),
    leaf,
  )
  .map(([base, k, v]) => ({ ...base, [k]: v }));

const body = fc.oneof(
  fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null'),
  plausible.map((v) => JSON.stringify(v)),
  nearlyValid.map((v) => JSON.stringify(v)),
  fc.tuple(fc.oneof(plausible, nearlyValid), fc.nat()).map(([v, n]) => {
    const t = JSON.stringify(v);
    return t.slice(0, n % Math.max(1, t.length));
  }),
  fc.uint8Array({ maxLength: 200 }),
);

const ENDPOINTS = [
  '/api/v1/models/gen-model/inference',
  '/api/v1/models/doubler/inference',
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v2/models/doubler/infer',
  '/v2/models/gen-model/infer',
];

describe('fuzzing the REST, OpenAI and KServe endpoints with random bodies', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ server: { maxBodyBytes: 64 * 1024 } });
  });
  afterAll(async () => {
    await s?.close();
  });

  it.each(ENDPOINTS)(
    '%s: status < 500 (or a routing 502/503/504), a coded error body, and the gateway keeps answering',
    async (path) => {
      await fc.assert(
        fc.asyncProperty(body, async (b) => {
          const res = await fetch(`${s.gw.url}${path}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-mcp-timeout-ms': '5000' },
            body: b,
          });
          const text = await res.text();
          if (res.status >= 500 && !ALLOWED_5XX.has(res.status)) throw new Error(`status ${res.status}: ${text.slice(0, 300)}`);
          if (res.headers.get('content-type')?.includes('text/event-stream')) {
            // A streamed answer (stream: true): it ends with [DONE], and errors inside it are coded.
            expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
            for (const line of text.split('\n')) {
              if (line.startsWith('data: {') && line.includes('"error"')) expect(ERROR_CODES).toHaveProperty(codeOf(JSON.parse(line.slice(6)))!);
            }
            return;
          }
          const json = JSON.parse(text) as unknown;
          if (res.status >= 400) {
            const code = codeOf(json);
            if (!code || !(code in ERROR_CODES)) throw new Error(`status ${res.status} without a known code: ${text.slice(0, 300)}`);
            expect(ERROR_CODES[code as keyof typeof ERROR_CODES].status === res.status || code === 'MCP_BAD_REQUEST').toBe(true);
          }
        }),
        { numRuns: RUNS, interruptAfterTimeLimit: 20_000 },
      );
      expect((await fetch(`${s.gw.url}/healthz`)).status).toBe(200);
    },
    40_000,
  );
});
