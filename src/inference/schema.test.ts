import { describe, expect, it } from 'vitest';
import { McpError } from '../errors.ts';
import { parseInferenceInput } from './request.ts';
import { MAX_TENSOR_ELEMENTS, TASKS } from './schema.ts';

/** The refusal of an input: code, the first path and its message. */
function refusal(raw: unknown): { code: string; path: unknown; message: string } | 'accepted' {
  try {
    parseInferenceInput(raw);
    return 'accepted';
  } catch (err) {
    if (!(err instanceof McpError)) throw err;
    return { code: err.code, path: err.details?.path, message: err.message };
  }
}

const tensor = (shape: number[], data: unknown[], datatype = 'FP32') => ({ name: 'x', shape, datatype, data });

describe('the inference input schema', () => {
  it('accepts one input shape per task', () => {
    expect(refusal({ task: 'generate', prompt: '' })).toBe('accepted');
    expect(refusal({ task: 'chat', messages: [{ role: 'user', content: 'hi' }], parameters: { maxTokens: 3 } })).toBe('accepted');
    expect(refusal({ task: 'embed', texts: ['a'], extra: { dimensions: 8 } })).toBe('accepted');
    expect(refusal({ task: 'tensor', tensors: [tensor([1, 2], [1, true])], outputs: ['y'] })).toBe('accepted');
  });

  it("needs the field of its task, at that field's path", () => {
    expect(refusal({ task: 'generate' })).toEqual({
      code: 'MCP_VALIDATION_FAILED',
      path: 'input.prompt',
      message: 'input.prompt: task "generate" needs `prompt`',
    });
    expect(refusal({ task: 'chat' })).toMatchObject({ path: 'input.messages', message: 'input.messages: task "chat" needs `messages`' });
    expect(refusal({ task: 'embed' })).toMatchObject({ path: 'input.texts', message: 'input.texts: task "embed" needs `texts`' });
    expect(refusal({ task: 'tensor', outputs: ['y'] })).toMatchObject({ path: 'input.tensors', message: 'input.tensors: task "tensor" needs `tensors`' });
    expect(refusal({ task: 'chat', messages: [] })).toMatchObject({ code: 'MCP_VALIDATION_FAILED', path: 'input.messages' });
    expect(refusal({ task: 'embed', texts: [] })).toMatchObject({ code: 'MCP_VALIDATION_FAILED', path: 'input.texts' });
    expect(refusal({ task: 'tensor', tensors: [] })).toMatchObject({ code: 'MCP_VALIDATION_FAILED', path: 'input.tensors' });
    expect(refusal({ task: 'generate', prompt: 5 })).toMatchObject({ code: 'MCP_VALIDATION_FAILED', path: 'input.prompt' });
  });

  it('names the tasks when the task is missing or unknown', () => {
    const message = `input.task: Invalid option: expected one of ${TASKS.map((t) => `"${t}"`).join('|')}`;
    expect(refusal({ task: 'dance', prompt: 'x' })).toEqual({ code: 'MCP_VALIDATION_FAILED', path: 'input.task', message });
    expect(refusal({ prompt: 'x' })).toEqual({ code: 'MCP_VALIDATION_FAILED', path: 'input.task', message });
    for (const raw of [null, [], 'x', 42]) expect(refusal(raw)).toMatchObject({ code: 'MCP_VALIDATION_FAILED', path: 'input' });
  });

  it('refuses fields of another task and unknown fields', () => {
    expect(refusal({ task: 'chat', messages: [{ role: 'user', content: 'x' }], prompt: 'y' })).toEqual({
      code: 'MCP_VALIDATION_FAILED',
      path: 'input',
      message: 'input: Unrecognized key: "prompt"',
    });
    expect(refusal({ task: 'generate', prompt: 'x', outputs: ['y'] })).toMatchObject({ path: 'input' });
    expect(refusal({ task: 'generate', prompt: 'x', parameters: { beam: 4 } })).toMatchObject({ path: 'input.parameters' });
  });

  it('bounds the generation parameters', () => {
    const gen = (parameters: unknown) => ({ task: 'generate', prompt: 'x', parameters });
    for (const [p, path] of [
      [{ maxTokens: 0 }, 'maxTokens'],
      [{ maxTokens: 32_769 }, 'maxTokens'],
      [{ temperature: -1 }, 'temperature'],
      [{ temperature: 2.5 }, 'temperature'],
      [{ topP: 0 }, 'topP'],
      [{ topK: 1.5 }, 'topK'],
      [{ seed: -1 }, 'seed'],
      [{ stop: [''] }, 'stop.0'],
      [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    ] as const) {
      expect(refusal(gen(p))).toMatchObject({ code: 'MCP_VALIDATION_FAILED', path: `input.parameters.${path}` });
    }
  });

  it('checks each tensor on its own: datatype, shape, elements, and data that fills the shape', () => {
    const t = (x: unknown) => refusal({ task: 'tensor', tensors: [x] });
    expect(t(tensor([1, 4], [1, 2, 3, 4], 'complex'))).toMatchObject({ path: 'input.tensors.0.datatype' });
    expect(t(tensor([1, -4], [1, 2, 3, 4]))).toMatchObject({ path: 'input.tensors.0.shape.1' });
    expect(t(tensor([1, 1.5], [1]))).toMatchObject({ path: 'input.tensors.0.shape.1' });
    expect(t({ ...tensor([1], [1]), name: '' })).toMatchObject({ path: 'input.tensors.0.name' });
    expect(t(tensor([2], 'nope' as unknown as unknown[]))).toEqual({
      code: 'MCP_VALIDATION_FAILED',
      path: 'input.tensors.0.data',
      message: 'input.tensors.0.data: Invalid input: expected array, received string',
    });
    expect(t(tensor([2], null as unknown as unknown[]))).toMatchObject({ path: 'input.tensors.0.data' });
    expect(t(tensor([3], [1, { a: 1 }, 'x']))).toEqual({
      code: 'MCP_VALIDATION_FAILED',
      path: 'input.tensors.0.data.1',
      message: 'input.tensors.0.data.1: Invalid input: expected a number, a string or a boolean, received object',
    });
    expect(
      t(
        tensor(
          [2],
          [
            [1, 2],
            [3, 4],
          ],
        ),
      ),
    ).toMatchObject({ path: 'input.tensors.0.data.0' });
    expect(t(tensor([2], [1, null]))).toMatchObject({ path: 'input.tensors.0.data.1' });
    expect(t(tensor([2], [1, Number.NaN]))).toMatchObject({ path: 'input.tensors.0.data.1' });
    expect(t(tensor([1, 4], [1, 2, 3]))).toEqual({
      code: 'MCP_VALIDATION_FAILED',
      path: 'input.tensors.0',
      message: 'input.tensors.0: data has 3 elements, shape [1,4] needs 4',
    });
    const huge = new Array<number>(MAX_TENSOR_ELEMENTS + 1).fill(0);
    expect(t(tensor([huge.length], huge))).toMatchObject({
      path: 'input.tensors.0.data',
      message: `input.tensors.0.data: Too big: expected array to have <=${MAX_TENSOR_ELEMENTS} items`,
    });
  });

  it('passes tensor data on as the same array (no copy of large tensors)', () => {
    const data = Array.from({ length: 1 << 16 }, (_, i) => i / 7);
    const input = parseInferenceInput({ task: 'tensor', tensors: [tensor([256, 256], data)] });
    expect(input.task === 'tensor' && input.tensors[0]!.data).toBe(data);
  });

  it('narrows on the task (the type a backend receives)', () => {
    const input = parseInferenceInput({ task: 'chat', messages: [{ role: 'user', content: 'hi' }] });
    // Compiles only because the union narrows: `messages` exists on the chat variant alone.
    expect(input.task === 'chat' ? input.messages[0]!.content : undefined).toBe('hi');
  });
});
