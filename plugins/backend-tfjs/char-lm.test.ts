import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import plugin, { type CharLmInstance } from './index.ts';
import { CharTokenizer, sampleLogits, seededRandom, StopMatcher } from './char-lm.ts';
import { testPluginContext } from 'capibara-mcp/testing';
import { AUTO_RUNTIME } from './auto-runtime.ts';
import { McpError, parseInferenceInput, type Backend, type BackendCall, type LoadedInstance, type InferenceChunk, type InferenceInput } from 'capibara-mcp';

const MODEL_DIR = fileURLToPath(new URL('../../models/capibara-mini/', import.meta.url));
const call = (over: Partial<BackendCall> = {}): BackendCall => ({ requestId: 'r', signal: new AbortController().signal, ...over });
const gen = (prompt: string, parameters: InferenceInput['parameters'] = {}): InferenceInput => ({ task: 'generate', prompt, parameters });

async function collect(it: AsyncIterable<InferenceChunk>): Promise<InferenceChunk[]> {
  const out: InferenceChunk[] = [];
  for await (const c of it) out.push(c);
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return err instanceof McpError ? err.code : String(err);
  }
}
/** What the inference input schema says of an input. */
const schemaCode = (raw: unknown): Promise<string> => codeOf((async () => parseInferenceInput(raw))());

const ctx = testPluginContext('tfjs');
let backend: Backend;
let inst: CharLmInstance & LoadedInstance;

beforeAll(async () => {
  backend = await plugin.setup(ctx, plugin.options.parse({}));
  inst = (await backend.load(
    { id: 'capibara-mini-1', model: 'capibara-mini', version: '1', endpoint: MODEL_DIR, options: {} },
    new AbortController().signal,
  )) as CharLmInstance & LoadedInstance;
});

afterAll(async () => {
  await ctx.close();
});

describe('capibara-mini on the tfjs backend', () => {
  it('is detected as a char-lm and serves generate and chat with streaming', () => {
    expect(inst.tasks).toEqual(['generate', 'chat']);
    expect(typeof inst.stream).toBe('function');
    expect(inst.signature?.inputs[0]).toMatchObject({ name: 'context', datatype: 'INT32', shape: [-1, 48] });
    expect(inst.runtime).toBe(AUTO_RUNTIME);
  });

  it('generates recognisable text; same seed ⇒ same text, other seeds differ', async () => {
    const a = await inst.infer(gen('The capybara', { seed: 42, maxTokens: 80 }), call());
    const b = await inst.infer(gen('The capybara', { seed: 42, maxTokens: 80 }), call());
    const c = await inst.infer(gen('The capybara', { seed: 43, maxTokens: 80, temperature: 1.2 }), call());
    expect(a.text).toBe(b.text);
    expect(c.text).not.toBe(a.text);
    expect(a.text!.length).toBeGreaterThan(10);
    // Mostly real words from the corpus.
    const words = a.text!.toLowerCase().match(/[a-z]+/g) ?? [];
    const corpusWords = new Set(
      (await import('node:fs'))
        .readFileSync(`${MODEL_DIR}corpus.txt`, 'utf8')
        .toLowerCase()
        .match(/[a-z]+/g) ?? [],
    );
    expect(words.filter((w) => corpusWords.has(w)).length / words.length).toBeGreaterThan(0.7);
  });

  it('temperature 0 is greedy and deterministic without a seed', async () => {
    const a = await inst.infer(gen('Capybaras live in', { temperature: 0, maxTokens: 40 }), call());
    const b = await inst.infer(gen('Capybaras live in', { temperature: 0, maxTokens: 40 }), call());
    expect(a.text).toBe(b.text);
    expect(a.text).toMatch(/south america|rivers|groups|water/i);
  });

  it("stops at maxTokens with finishReason 'length' and counts usage in characters", async () => {
    const out = await inst.infer(gen('The capybara', { maxTokens: 7, seed: 1 }), call());
    expect(out.finishReason).toBe('length');
    expect(out.usage).toEqual({ promptTokens: 12, completionTokens: 7, totalTokens: 19 });
    expect([...out.text!].length).toBeLessThanOrEqual(7);
  });

  it("stops at a stop sequence (not included) with finishReason 'stop'", async () => {
    const out = await inst.infer(gen('The capybara is the largest', { temperature: 0, maxTokens: 200, stop: ['.'] }), call());
    expect(out.finishReason).toBe('stop');
    expect(out.text).not.toContain('.');
    expect(out.text!.length).toBeGreaterThan(3);
  });

  it('answers a chat in the assistant role and ends the turn', async () => {
    const out = await inst.infer(
      { task: 'chat', messages: [{ role: 'user', content: 'What do capybaras eat?' }], parameters: { temperature: 0, maxTokens: 300 } },
      call(),
    );
    expect(out.finishReason).toBe('stop');
    expect(out.text).not.toMatch(/^\s|\s$/);
    expect(out.text).not.toContain('User:');
    expect(out.text).toMatch(/grass|plants|eat/i);
  });

  it('streams chunks as tokens are produced; the concatenation equals infer() for the same seed', async () => {
    const input = gen('Once upon a time', { seed: 7, maxTokens: 60, stop: ['!'] });
    const chunks = await collect(inst.stream!(input, call()));
    expect(chunks.length).toBeGreaterThan(5);
    const last = chunks[chunks.length - 1]!;
    expect(last.finishReason).toBeDefined();
    expect(chunks.slice(0, -1).every((c) => c.finishReason === undefined)).toBe(true);
    const whole = await inst.infer(input, call());
    expect(chunks.map((c) => c.text).join('')).toBe(whole.text);
    expect(last.usage).toEqual(whole.usage);
  });

  it('never streams a part of a stop sequence', async () => {
    const input = gen('User: What do capybaras eat?\nAssistant:', { temperature: 0, maxTokens: 300, stop: ['\nUser:'] });
    const chunks = await collect(inst.stream!(input, call()));
    const text = chunks.map((c) => c.text).join('');
    expect(text).toMatch(/grass/);
    expect(text).not.toContain('\nUser');
    expect(text).not.toMatch(/\n$/);
    expect(chunks.at(-1)!.finishReason).toBe('stop');
  });

  it('stops streaming and frees everything when the signal aborts', async () => {
    const baseline = tf.memory().numTensors;
    const ac = new AbortController();
    const chunks: InferenceChunk[] = [];
    for await (const c of inst.stream!(gen('The capybara', { maxTokens: 2000, seed: 3 }), call({ signal: ac.signal }))) {
      chunks.push(c);
      if (chunks.length === 5) ac.abort();
    }
    expect(chunks.length).toBeLessThanOrEqual(7);
    expect(chunks.at(-1)!.finishReason).toBe('cancelled');
    expect(inst.activeGenerations).toBe(0);
    expect(tf.memory().numTensors).toBe(baseline);
    expect(await codeOf(inst.infer(gen('x', { maxTokens: 50 }), call({ signal: AbortSignal.abort() })))).toBe('MCP_CANCELLED');
  });

  it('fails with MCP_DEADLINE_EXCEEDED when the deadline passes mid-generation', async () => {
    // Seed 2 at temperature 1 writes ~950 characters before its end-of-text (hundreds of ms).
    expect(await codeOf(inst.infer(gen('The capybara', { maxTokens: 2000, seed: 2, temperature: 1 }), call({ deadline: Date.now() + 40 })))).toBe(
      'MCP_DEADLINE_EXCEEDED',
    );
  });

  it('batches the decoding steps of concurrent generations, with the same text as alone', async () => {
    const prompts = ['The capybara', 'Capybaras eat', 'User: Hello!\nAssistant:', 'A capybara named Pip', 'Birds', 'In the evening', 'Luna', 'The river'];
    const alone = [];
    for (const [i, p] of prompts.entries()) alone.push((await inst.infer(gen(p, { seed: i, maxTokens: 40 }), call())).text);
    const before = inst.batcherStats();
    const together = await Promise.all(prompts.map((p, i) => inst.infer(gen(p, { seed: i, maxTokens: 40 }), call())));
    const after = inst.batcherStats();
    const rows = after.rowsRun - before.rowsRun;
    const batches = after.batchesRun - before.batchesRun;
    expect(rows / batches).toBeGreaterThan(4);
    expect(together.map((o) => o.text)).toEqual(alone);
  });

  it('validates parameters before generating', async () => {
    expect(await codeOf(inst.infer(gen('x', { maxTokens: 0 }), call()))).toBe('MCP_VALIDATION_FAILED');
    expect(await codeOf(inst.infer(gen('x', { maxTokens: 1e6 }), call()))).toBe('MCP_VALIDATION_FAILED');
    // The input schema refuses these at every entry point (and the worker protocol), before any backend runs.
    expect(await schemaCode(gen('x', { temperature: -1 }))).toBe('MCP_VALIDATION_FAILED');
    expect(await schemaCode(gen('x', { topP: 0 }))).toBe('MCP_VALIDATION_FAILED');
    expect(await schemaCode(gen('x', { topK: 1.5 }))).toBe('MCP_VALIDATION_FAILED');
    expect(await schemaCode(gen('x', { stop: [''] }))).toBe('MCP_VALIDATION_FAILED');
    expect(await schemaCode({ task: 'generate' })).toBe('MCP_VALIDATION_FAILED');
    expect(await schemaCode({ task: 'chat', messages: [] })).toBe('MCP_VALIDATION_FAILED');
    expect(await codeOf(inst.infer({ task: 'embed', texts: ['a'] }, call()))).toBe('MCP_BAD_REQUEST');
  });

  it('does not leak tensors across many concurrent generations, and unload frees the model', async () => {
    const baseline = tf.memory().numTensors;
    await Promise.all(Array.from({ length: 16 }, (_, i) => inst.infer(gen('The', { seed: i, maxTokens: 30 }), call())));
    expect(tf.memory().numTensors).toBe(baseline);
    const other = await backend.load(
      { id: 'cm-2', model: 'capibara-mini', version: '1', endpoint: MODEL_DIR, options: { kind: 'char-lm', warmup: false } },
      new AbortController().signal,
    );
    expect(tf.memory().numTensors).toBeGreaterThan(baseline);
    await other.unload();
    expect(tf.memory().numTensors).toBe(baseline);
  });
});

describe('char-lm helpers', () => {
  it('sampling: greedy at temperature 0, topK 1 and tiny topP; seeded sampling is reproducible', () => {
    const logits = [0.1, 2, 1.9, -3];
    expect(sampleLogits(logits, { temperature: 0, topK: 0, topP: 1 }, Math.random)).toBe(1);
    expect(sampleLogits(logits, { temperature: 1, topK: 1, topP: 1 }, Math.random)).toBe(1);
    expect(sampleLogits(logits, { temperature: 1, topK: 0, topP: 0.01 }, Math.random)).toBe(1);
    expect(sampleLogits(logits, { temperature: 0, topK: 0, topP: 1, banned: [1] }, Math.random)).toBe(2);
    const draw = (seed: number) => {
      const r = seededRandom(seed);
      return Array.from({ length: 50 }, () => sampleLogits(logits, { temperature: 1, topK: 0, topP: 1 }, r));
    };
    expect(draw(5)).toEqual(draw(5));
    expect(draw(5)).not.toEqual(draw(6));
    const counts = [0, 0, 0, 0];
    const r = seededRandom(1);
    for (let i = 0; i < 4000; i++) counts[sampleLogits(logits, { temperature: 1, topK: 2, topP: 1 }, r)]!++;
    expect(counts[0]).toBe(0);
    expect(counts[3]).toBe(0);
    expect(counts[1]! / 4000).toBeCloseTo(Math.exp(2) / (Math.exp(2) + Math.exp(1.9)), 1);
  });

  it('StopMatcher holds back possible stop prefixes and cuts at the stop', () => {
    const m = new StopMatcher(['END', '\nUser:']);
    expect(m.push('hello ')).toEqual({ emit: 'hello ', stopped: false });
    expect(m.push('E')).toEqual({ emit: '', stopped: false });
    expect(m.push('x')).toEqual({ emit: 'Ex', stopped: false });
    expect(m.push('\nUs')).toEqual({ emit: '', stopped: false });
    expect(m.push('er:')).toEqual({ emit: '', stopped: true });
    expect(m.fullText).toBe('hello Ex');
    const n = new StopMatcher(['ab']);
    expect(n.push('xa')).toEqual({ emit: 'x', stopped: false });
    expect(n.flush()).toBe('a');
  });

  it('tokenizer maps unknown characters and renders chats', () => {
    const tok = new CharTokenizer({
      type: 'char-lm',
      version: 1,
      contextLength: 4,
      vocab: ['\u0000', '\u0003', ' ', 'a', 'e', ':', '\n', 'U', 's', 'r', 'A'],
      padId: 0,
      eosId: 1,
    });
    expect(tok.encode('aé€A')).toEqual([3, 4, 2, 10]);
    const w = new Int32Array(4);
    tok.window([3, 4], w);
    expect([...w]).toEqual([0, 0, 3, 4]);
    expect(
      tok.chatPrompt([
        { role: 'system', content: 'be calm' },
        { role: 'user', content: ' hi ' },
      ]),
    ).toBe('System: be calm\nUser: hi\nAssistant:');
  });
});
