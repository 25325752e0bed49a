import { randomUUID } from 'node:crypto';
import { buildInferenceRequest } from '../inference/request.ts';
import type { InferenceChunk, InferenceResult, InferenceTask, Tensor } from '../inference/types.ts';
import { builder } from './builder.ts';
import type { InferenceTrace } from '../tracing/inference-trace.ts';
import type { EntryInfo } from '../tracing/tracing.ts';
import type { GraphQLContext } from './context.ts';
import { compact } from './input.ts';

const TensorInput = builder.inputType('TensorInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    shape: t.intList({ required: true }),
    datatype: t.string({ required: true, description: 'KServe v2 datatype: FP32, INT64, BYTES, …' }),
    data: t.field({ type: 'JSON', required: true, description: 'Flat row-major data.' }),
  }),
});

const ChatMessageInput = builder.inputType('ChatMessageInput', {
  fields: (t) => ({ role: t.string({ required: true }), content: t.string({ required: true }) }),
});

const ParametersInput = builder.inputType('GenerationParametersInput', {
  fields: (t) => ({
    maxTokens: t.int(),
    temperature: t.float(),
    topK: t.int(),
    topP: t.float(),
    seed: t.int(),
    stop: t.stringList(),
  }),
});

const InferInput = builder.inputType('InferInput', {
  description: 'Give one of prompt (generate), messages (chat), texts (embed) or tensors (tensor).',
  fields: (t) => ({
    prompt: t.string(),
    messages: t.field({ type: [ChatMessageInput] }),
    texts: t.stringList(),
    tensors: t.field({ type: [TensorInput] }),
    outputs: t.stringList({ description: 'Names of the output tensors wanted.' }),
    parameters: t.field({ type: ParametersInput }),
    extra: t.field({ type: 'JSON', description: 'Backend-specific parameters passed through.' }),
  }),
});

const TensorRef = builder.objectRef<Tensor>('Tensor').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    shape: t.exposeIntList('shape'),
    datatype: t.exposeString('datatype'),
    data: t.expose('data', { type: 'JSON' }),
  }),
});

const UsageRef = builder.objectRef<{ promptTokens: number; completionTokens: number; totalTokens: number }>('Usage').implement({
  fields: (t) => ({
    promptTokens: t.exposeInt('promptTokens'),
    completionTokens: t.exposeInt('completionTokens'),
    totalTokens: t.exposeInt('totalTokens'),
  }),
});

const ResultRef = builder.objectRef<InferenceResult>('InferenceResult').implement({
  fields: (t) => ({
    id: t.exposeID('id', { description: 'Inference id (for submitFeedback).' }),
    model: t.exposeString('model'),
    version: t.exposeString('version'),
    instanceId: t.exposeString('instanceId'),
    runtime: t.exposeString('runtime', { nullable: true }),
    text: t.exposeString('text', { nullable: true }),
    finishReason: t.exposeString('finishReason', { nullable: true }),
    tensors: t.field({ type: [TensorRef], nullable: true, resolve: (r) => r.tensors ?? null }),
    embeddings: t.field({ type: 'JSON', nullable: true, resolve: (r) => r.embeddings ?? null }),
    usage: t.field({ type: UsageRef, nullable: true, resolve: (r) => r.usage ?? null }),
    latencyMs: t.exposeFloat('latencyMs'),
    routing: t.field({
      type: 'JSON',
      nullable: true,
      description: 'The routing decision, when explain: true (readable only with models:write; null otherwise).',
      authScopes: { permission: 'models:write' },
      unauthorizedResolver: () => null,
      resolve: (r) => r.routing ?? null,
    }),
  }),
});

const STREAM_EVENT_TYPES = ['TOKEN', 'DONE'] as const;
type StreamEvent = { type: (typeof STREAM_EVENT_TYPES)[number]; chunk: InferenceChunk; meta?: Partial<InferenceResult> };

const StreamEventType = builder.enumType('InferenceStreamEventType', { values: STREAM_EVENT_TYPES });

const StreamEventRef = builder.objectRef<StreamEvent>('InferenceStreamEvent').implement({
  fields: (t) => ({
    type: t.field({ type: StreamEventType, resolve: (e) => e.type }),
    text: t.string({ description: 'Text produced since the previous event.', resolve: (e) => e.chunk.text }),
    finishReason: t.string({ nullable: true, resolve: (e) => e.chunk.finishReason ?? null }),
    usage: t.field({ type: UsageRef, nullable: true, resolve: (e) => e.chunk.usage ?? null }),
    id: t.string({ nullable: true, resolve: (e) => e.meta?.id ?? null }),
    version: t.string({ nullable: true, resolve: (e) => e.meta?.version ?? null }),
    instanceId: t.string({ nullable: true, resolve: (e) => e.meta?.instanceId ?? null }),
  }),
});

interface InferArgs {
  model: string | number;
  version?: string | null;
  input: Record<string, unknown>;
  timeoutMs?: number | null;
  explain?: boolean | null;
  priority?: string | null;
}

function taskOf(input: Record<string, unknown>): InferenceTask {
  if (input.messages) return 'chat';
  if (input.texts) return 'embed';
  if (input.tensors) return 'tensor';
  return 'generate';
}

const PRIORITY_DESCRIPTION = 'Admission priority: critical, high, normal or low (0…3), capped by what the principal may use (or header x-mcp-priority).';

const GRAPHQL_INFER: EntryInfo = { entry: 'graphql', name: 'graphql infer' };
const GRAPHQL_STREAM: EntryInfo = { entry: 'graphql', name: 'graphql inferStream' };

/** The request of `infer` / `inferStream`, with its entry span when tracing is on (starting when authentication did, with the GraphQL context). */
function requestOf(args: InferArgs, ctx: GraphQLContext, stream: boolean) {
  const trace = ctx.services.tracing?.begin(stream ? GRAPHQL_STREAM : GRAPHQL_INFER, ctx.headers, ctx.authSpan?.[0]);
  if (ctx.authSpan) trace?.authRan(ctx.authSpan[0], ctx.authSpan[1]);
  try {
    return buildRequest(args, ctx, stream, trace);
  } catch (err) {
    trace?.failed(err);
    throw err;
  }
}

function buildRequest(args: InferArgs, ctx: GraphQLContext, stream: boolean, trace: InferenceTrace | undefined) {
  const input = compact(args.input);
  return buildInferenceRequest({
    id: randomUUID(),
    model: String(args.model),
    version: args.version ?? undefined,
    input: { task: taskOf(input), ...input },
    stream,
    entry: 'graphql',
    ip: ctx.ip,
    signal: ctx.signal,
    timeoutMs: args.timeoutMs,
    principal: ctx.principal,
    explain: args.explain ?? undefined,
    priority: args.priority ?? undefined,
    headers: ctx.headers,
    trace,
  });
}

builder.mutationFields((t) => ({
  infer: t.field({
    type: ResultRef,
    description: 'Runs one inference through the router (same path as REST, OpenAI and KServe).',
    authScopes: (_r, args) => ({ model: { permission: 'inference:invoke', id: String(args.model) } }),
    args: {
      model: t.arg.id({ required: true }),
      version: t.arg.string({ description: 'Pin a version; otherwise the traffic split or the default version.' }),
      input: t.arg({ type: InferInput, required: true }),
      timeoutMs: t.arg.int({ description: 'Deadline from now, ms (or header x-mcp-timeout-ms).' }),
      explain: t.arg.boolean({ description: 'Return the routing decision in `routing`.' }),
      priority: t.arg.string({ description: PRIORITY_DESCRIPTION }),
    },
    resolve: (_r, args, ctx) => ctx.services.inference.infer(requestOf(args as InferArgs, ctx, false)),
  }),
}));

builder.subscriptionFields((t) => ({
  inferStream: t.field({
    type: StreamEventRef,
    description: 'Streams tokens as they are produced, then a DONE event with usage.',
    authScopes: (_r, args) => ({ model: { permission: 'inference:invoke', id: String(args.model) } }),
    args: {
      model: t.arg.id({ required: true }),
      version: t.arg.string(),
      input: t.arg({ type: InferInput, required: true }),
      timeoutMs: t.arg.int(),
      priority: t.arg.string({ description: PRIORITY_DESCRIPTION }),
    },
    subscribe: async function* (_r, args, ctx) {
      const stream = ctx.services.inference.stream(requestOf(args as InferArgs, ctx, true));
      let last: InferenceChunk | undefined;
      for await (const chunk of stream) {
        if (chunk.finishReason) {
          last = chunk;
          if (chunk.text) yield { type: 'TOKEN', chunk: { text: chunk.text }, meta: stream.meta() } as StreamEvent;
        } else {
          yield { type: 'TOKEN', chunk, meta: stream.meta() } as StreamEvent;
        }
      }
      yield { type: 'DONE', chunk: { text: '', finishReason: last?.finishReason ?? 'stop', usage: last?.usage }, meta: stream.meta() } as StreamEvent;
    },
    resolve: (e) => e,
  }),
}));
