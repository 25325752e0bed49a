/**
 * The inference input, defined once. Every entry point (GraphQL, REST, OpenAI, KServe v2, the
 * worker protocol) validates what it received against `inferenceInputSchema`, once per request;
 * the protocol-neutral types in ./types.ts are inferred from these schemas, so a backend receives
 * an input whose task-specific fields are present and well-formed and does not check them again.
 */
import { z } from 'zod';

/** What the caller asks the model to do. */
export const TASKS = ['generate', 'chat', 'embed', 'tensor'] as const;
export type InferenceTask = (typeof TASKS)[number];

/** KServe v2 / Triton tensor datatypes. */
export const TENSOR_DATATYPES = ['BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64', 'BYTES'] as const;
export type TensorDatatype = (typeof TENSOR_DATATYPES)[number];

/** Who speaks in a chat message. */
export const CHAT_ROLES = ['system', 'user', 'assistant', 'tool'] as const;

/** Most elements one tensor may carry. */
export const MAX_TENSOR_ELEMENTS = 1 << 22;

/** One element of a tensor's flat data. */
export type TensorValue = number | string | boolean;

export const parametersSchema = z.strictObject({
  maxTokens: z.number().int().min(1).max(32_768).optional(),
  temperature: z.number().min(0).max(2).optional(),
  topK: z.number().int().min(0).max(1000).optional(),
  topP: z.number().gt(0).max(1).optional(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .optional(),
  stop: z.array(z.string().min(1).max(64)).max(4).optional(),
});

const received = (v: unknown): string => (v === null ? 'null' : typeof v);

/**
 * Flat row-major tensor data: an array of at most MAX_TENSOR_ELEMENTS finite numbers, strings or
 * booleans. Checked in one plain loop and passed on as the same array: a per-element zod schema
 * would copy the array and cost a parse per element, and tensors run to millions of elements.
 */
const tensorDataSchema = z
  .custom<TensorValue[]>((v) => Array.isArray(v), { error: (iss) => `Invalid input: expected array, received ${received(iss.input)}` })
  .superRefine((data, ctx) => {
    if (data.length > MAX_TENSOR_ELEMENTS) {
      ctx.addIssue({
        code: 'too_big',
        origin: 'array',
        maximum: MAX_TENSOR_ELEMENTS,
        inclusive: true,
        input: data,
        message: `Too big: expected array to have <=${MAX_TENSOR_ELEMENTS} items`,
      });
      return;
    }
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      const t = typeof v;
      if (t === 'string' || t === 'boolean' || (t === 'number' && Number.isFinite(v))) continue;
      ctx.addIssue({ code: 'custom', path: [i], input: v, message: `Invalid input: expected a number, a string or a boolean, received ${received(v)}` });
      return;
    }
  });

/** A named tensor, row-major flat data (KServe v2 `inputs[i]` / `outputs[i]`). */
export const tensorSchema = z
  .strictObject({
    name: z.string().min(1).max(128),
    shape: z
      .array(
        z
          .number()
          .int()
          .min(0)
          .max(1 << 24),
      )
      .max(8),
    datatype: z.enum(TENSOR_DATATYPES),
    data: tensorDataSchema,
  })
  .superRefine((t, ctx) => {
    const elements = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== elements)
      ctx.addIssue({ code: 'custom', input: t, message: `data has ${t.data.length} elements, shape [${t.shape.join(',')}] needs ${elements}` });
  });

export const chatMessageSchema = z.strictObject({ role: z.enum(CHAT_ROLES), content: z.string().max(1_000_000) });

/** The message when a task's own field is missing (other refusals keep zod's wording). */
const needs = (task: InferenceTask, field: string) => ({
  error: (iss: { input?: unknown }) => (iss.input === undefined ? `task "${task}" needs \`${field}\`` : undefined),
});

/** Bounds of the pass-through `extra` object: serialized size, keys per object, nesting. */
export const EXTRA_LIMITS = { maxBytes: 16 * 1024, maxKeys: 64, maxDepth: 6 } as const;

/**
 * `extra` keys that name a generation parameter (OpenAI, TGI, vLLM spellings): lifted into
 * `parameters` before validation (liftExtraParameters), so they obey the same bounds as the named ones.
 */
export const EXTRA_PARAMETER_ALIASES: Readonly<Record<string, keyof z.input<typeof parametersSchema>>> = Object.freeze({
  max_tokens: 'maxTokens',
  max_completion_tokens: 'maxTokens',
  max_new_tokens: 'maxTokens',
  maxTokens: 'maxTokens',
  temperature: 'temperature',
  top_p: 'topP',
  topP: 'topP',
  top_k: 'topK',
  topK: 'topK',
  seed: 'seed',
  stop: 'stop',
});

/** `extra` keys the gateway sets itself or that multiply the work asked for: refused. */
export const RESERVED_EXTRA_KEYS: ReadonlySet<string> = new Set(['model', 'messages', 'prompt', 'input', 'inputs', 'n', 'best_of', 'num_return_sequences']);

function depthOf(v: unknown, limit: number): number {
  if (typeof v !== 'object' || v === null) return 0;
  let deepest = 0;
  for (const x of Array.isArray(v) ? v : Object.values(v)) {
    deepest = Math.max(deepest, 1 + depthOf(x, limit));
    if (deepest > limit) return deepest;
  }
  return deepest;
}

/** Backend-specific extra parameters passed through (OpenAI `extra_body`, GraphQL/REST `extra`): bounded in size, keys and depth. */
const extraSchema = z.record(z.string(), z.unknown()).superRefine((extra, ctx) => {
  const keys = Object.keys(extra);
  if (keys.length > EXTRA_LIMITS.maxKeys) ctx.addIssue({ code: 'custom', input: extra, message: `at most ${EXTRA_LIMITS.maxKeys} keys` });
  for (const k of keys) {
    if (RESERVED_EXTRA_KEYS.has(k)) ctx.addIssue({ code: 'custom', path: [k], input: extra[k], message: `"${k}" cannot be passed through` });
    if (k in EXTRA_PARAMETER_ALIASES) ctx.addIssue({ code: 'custom', path: [k], input: extra[k], message: `give "${k}" in parameters` });
  }
  if (depthOf(extra, EXTRA_LIMITS.maxDepth) > EXTRA_LIMITS.maxDepth)
    ctx.addIssue({ code: 'custom', input: extra, message: `nested deeper than ${EXTRA_LIMITS.maxDepth}` });
  else if (Buffer.byteLength(JSON.stringify(extra)) > EXTRA_LIMITS.maxBytes)
    ctx.addIssue({ code: 'custom', input: extra, message: `larger than ${EXTRA_LIMITS.maxBytes} bytes as JSON` });
});

/** Fields every task accepts. */
const common = {
  parameters: parametersSchema.optional(),
  /** Backend-specific extra parameters passed through (OpenAI `extra_body`, KServe `parameters`); parameter names are lifted out first. */
  extra: extraSchema.optional(),
};

/**
 * The input with every parameter spelled in `extra` (max_tokens, max_completion_tokens,
 * temperature, …) moved into `parameters`, where the named bounds apply. A parameter given both
 * ways keeps the named value (the backend would have let it win too). Anything not an object is
 * returned as it is (the schema refuses it).
 */
export function liftExtraParameters(raw: unknown): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const input = raw as Record<string, unknown>;
  const extra = input.extra;
  if (typeof extra !== 'object' || extra === null || Array.isArray(extra)) return raw;
  let lifted: Record<string, unknown> | undefined;
  let rest: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(extra)) {
    const to = Object.hasOwn(EXTRA_PARAMETER_ALIASES, k) ? EXTRA_PARAMETER_ALIASES[k] : undefined;
    if (!to) continue;
    rest ??= { ...(extra as Record<string, unknown>) };
    delete rest[k];
    if (v === null || v === undefined) continue;
    lifted ??= {};
    lifted[to] ??= to === 'stop' && typeof v === 'string' ? [v] : v;
  }
  if (!rest) return raw;
  const named = typeof input.parameters === 'object' && input.parameters !== null ? (input.parameters as Record<string, unknown>) : undefined;
  // A `parameters` that is not an object is left for the schema to refuse.
  const parameters = lifted && (named || input.parameters === undefined || input.parameters === null) ? { ...lifted, ...named } : input.parameters;
  return { ...input, extra: rest, ...(parameters === undefined ? {} : { parameters }) };
}

/**
 * The validated form of an inference input, whatever the entry point: one variant per task, each
 * with its own fields only (a field of another task is refused as an unrecognized key).
 */
export const inferenceInputSchema = z.discriminatedUnion(
  'task',
  [
    z.strictObject({
      task: z.literal('generate'),
      /** The prompt. */
      prompt: z.string(needs('generate', 'prompt')).max(1_000_000),
      ...common,
    }),
    z.strictObject({
      task: z.literal('chat'),
      /** The conversation, oldest message first. */
      messages: z.array(chatMessageSchema, needs('chat', 'messages')).min(1).max(1000),
      ...common,
    }),
    z.strictObject({
      task: z.literal('embed'),
      /** The texts to embed. */
      texts: z.array(z.string().max(1_000_000), needs('embed', 'texts')).min(1).max(2048),
      ...common,
    }),
    z.strictObject({
      task: z.literal('tensor'),
      /** The input tensors. */
      tensors: z.array(tensorSchema, needs('tensor', 'tensors')).min(1).max(64),
      /** Names of the outputs wanted (all when absent). */
      outputs: z.array(z.string()).max(64).optional(),
      ...common,
    }),
  ],
  { error: (iss) => (iss.code === 'invalid_union' ? `Invalid option: expected one of ${TASKS.map((t) => `"${t}"`).join('|')}` : undefined) },
);

export type GenerationParameters = z.output<typeof parametersSchema>;
export type Tensor = z.output<typeof tensorSchema>;
export type ChatMessage = z.output<typeof chatMessageSchema>;
export type InferenceInput = z.output<typeof inferenceInputSchema>;
/** The input of one task, e.g. `InferenceInputOf<'chat'>` (has `messages`). */
export type InferenceInputOf<T extends InferenceTask> = Extract<InferenceInput, { task: T }>;
