/**
 * `openai` backend: any OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp, TPU engines).
 * Instance endpoint = base URL including `/v1`. chat → /chat/completions, generate → /completions,
 * embed → /embeddings; streaming over SSE, token by token; health = GET {endpoint}/models.
 */
import { z, type ZodType } from 'zod';
import type { Logger } from 'pino';
import {
  McpError,
  definePlugin,
  type Backend,
  type BackendCall,
  type DeviceInfo,
  type HealthReport,
  type InstanceSpec,
  type LoadedInstance,
  type FinishReason,
  type InferenceChunk,
  type InferenceInput,
  type InferenceOutput,
  type InferenceTask,
  type Usage,
} from 'capibara-mcp';
import { UpstreamClient, joinUrl, probeFailure, SseParser, clientOptionsFrom, upstreamPluginOptions } from 'capibara-mcp/sdk';

const OPENAI_TASKS = ['chat', 'generate', 'embed'] as const satisfies readonly InferenceTask[];
type OpenAITask = (typeof OPENAI_TASKS)[number];
/** A chat or generate input (the completion endpoints). */
type CompletionInput = Extract<InferenceInput, { task: 'chat' | 'generate' }>;

export const openaiInstanceOptions = z.object({
  /** Upstream model name; default: the instance's model id. */
  model: z.string().min(1).optional(),
  /** Sent as `Authorization: Bearer …`. */
  apiKey: z.string().min(1).optional(),
  /** Extra headers for this instance. */
  headers: z.record(z.string(), z.string()).default({}),
  /** Tasks this server offers (e.g. only `embed` for an embedding server). */
  tasks: z
    .array(z.enum(OPENAI_TASKS))
    .min(1)
    .default([...OPENAI_TASKS]),
  /**
   * The accelerator the server runs on, as its operator declares it (e.g. JetStream or vLLM on a TPU slice): shown in the
   * gateway's device inventory as this instance's device (`tpu:<instance id>`), with its memory counted as held by the instance.
   */
  accelerator: z
    .strictObject({
      kind: z.enum(['tpu', 'gpu', 'cpu']),
      /** Accelerator type, e.g. `v5litepod-8`, `v4-8`, `H100`. */
      type: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
      /** Device memory of the whole accelerator (every chip), bytes. */
      memoryBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
      /** Chips (or GPUs) of the accelerator. */
      chips: z.number().int().min(1).max(100_000).optional(),
    })
    .optional(),
});
export type OpenAIInstanceOptions = z.output<typeof openaiInstanceOptions>;

interface OpenAIUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}
interface OpenAIChoice {
  index?: number;
  message?: { content?: string | null };
  delta?: { content?: string | null };
  text?: string;
  finish_reason?: string | null;
}
interface OpenAIAnswer {
  choices?: OpenAIChoice[];
  usage?: OpenAIUsage | null;
  data?: Array<{ index?: number; embedding?: number[] }>;
  error?: { message?: string; type?: string; code?: string | number | null };
}

export function mapFinishReason(reason: string | null | undefined): FinishReason | undefined {
  if (reason === null || reason === undefined) return undefined;
  return reason === 'length' ? 'length' : 'stop';
}

/** A token count as the upstream reported it, made an integer in 0 … 2³¹−1 (GraphQL's Int, the records' column); anything else is 0. */
const tokenCount = (n: unknown): number => (typeof n === 'number' && Number.isFinite(n) ? Math.min(2_147_483_647, Math.max(0, Math.round(n))) : 0);

export function mapUsage(u: OpenAIUsage | null | undefined): Usage | undefined {
  if (!u || typeof u !== 'object') return undefined;
  const promptTokens = tokenCount(u.prompt_tokens);
  const completionTokens = tokenCount(u.completion_tokens);
  return { promptTokens, completionTokens, totalTokens: tokenCount(u.total_tokens ?? promptTokens + completionTokens) };
}

/** The request body for a chat or generate call (exported for tests). */
export function buildCompletionBody(input: CompletionInput, model: string, stream: boolean): Record<string, unknown> {
  const body: Record<string, unknown> = { ...(input.extra ?? {}) };
  const p = input.parameters ?? {};
  if (p.maxTokens !== undefined) body.max_tokens = p.maxTokens;
  if (p.temperature !== undefined) body.temperature = p.temperature;
  if (p.topP !== undefined) body.top_p = p.topP;
  if (p.topK !== undefined) body.top_k = p.topK;
  if (p.seed !== undefined) body.seed = p.seed;
  if (p.stop !== undefined && p.stop.length > 0) body.stop = p.stop;
  body.model = model;
  if (input.task === 'chat') body.messages = input.messages;
  else body.prompt = input.prompt;
  if (stream) {
    const extraOptions = typeof body.stream_options === 'object' && body.stream_options !== null ? body.stream_options : {};
    body.stream = true;
    body.stream_options = { ...extraOptions, include_usage: true };
  } else {
    delete body.stream;
    delete body.stream_options;
  }
  return body;
}

const IDENTIFIER = /^[A-Za-z0-9_.:-]{1,64}$/;
const identifier = (v: unknown) => (typeof v === 'string' && IDENTIFIER.test(v) ? v : typeof v === 'number' ? String(v) : undefined);

/** An error event in the middle of a stream: its text goes to the log (cut short), never to the client. */
function streamError(e: NonNullable<OpenAIAnswer['error']>, logger: Logger | undefined): McpError {
  logger?.warn(
    { upstreamMessage: String(e.message ?? '').slice(0, 512), upstreamType: e.type, upstreamCode: e.code },
    'the model server reported an error mid-stream',
  );
  return new McpError('MCP_UPSTREAM_ERROR', 'the model server reported an error mid-stream', {
    details: { upstreamType: identifier(e.type), upstreamCode: identifier(e.code) },
    retryable: false,
  });
}

class OpenAIInstance implements LoadedInstance {
  readonly runtime = 'remote';
  readonly device = 'remote';
  readonly tasks: readonly OpenAITask[];
  /** The tasks streamed (embeddings are not). */
  private readonly streamTasks: ReadonlyArray<CompletionInput['task']>;
  private unloaded = false;

  constructor(
    private readonly client: UpstreamClient,
    private readonly endpoint: string,
    private readonly model: string,
    private readonly headers: Record<string, string>,
    tasks: readonly OpenAITask[],
    private readonly logger?: Logger,
    private readonly declared?: DeviceInfo,
  ) {
    this.tasks = tasks;
    this.streamTasks = tasks.filter((t) => t !== 'embed');
  }

  /** The input, narrowed to the tasks `served`, when this instance serves its task. */
  private accept<T extends OpenAITask>(input: InferenceInput, served: readonly T[], streaming: boolean): Extract<InferenceInput, { task: T }> {
    if (this.unloaded) throw new McpError('MCP_UPSTREAM_UNAVAILABLE', 'the instance was unloaded', { retryable: true, mayHaveExecuted: false });
    if (!(served as readonly InferenceTask[]).includes(input.task)) {
      throw new McpError('MCP_UNSUPPORTED_PARAMETER', `task '${input.task}' is not supported by this ${streaming ? 'streaming ' : ''}openai instance`, {
        details: { parameter: 'task', task: input.task, supported: this.tasks },
      });
    }
    return input as Extract<InferenceInput, { task: T }>;
  }

  async infer(raw: InferenceInput, call: BackendCall): Promise<InferenceOutput> {
    const input = this.accept(raw, this.tasks, false);
    if (input.task === 'embed') return this.embed(input, call);
    const chat = input.task === 'chat';
    const { data } = await this.client.json<OpenAIAnswer>({
      url: joinUrl(this.endpoint, chat ? 'chat/completions' : 'completions'),
      json: buildCompletionBody(input, this.model, false),
      headers: this.headers,
      call,
    });
    const choice = data?.choices?.[0];
    if (!choice) throw new McpError('MCP_UPSTREAM_ERROR', 'the model server answered without choices');
    const text = chat ? (choice.message?.content ?? '') : (choice.text ?? '');
    const out: InferenceOutput = { text };
    const finishReason = mapFinishReason(choice.finish_reason);
    if (finishReason) out.finishReason = finishReason;
    const usage = mapUsage(data.usage);
    if (usage) out.usage = usage;
    return out;
  }

  private async embed(input: Extract<InferenceInput, { task: 'embed' }>, call: BackendCall): Promise<InferenceOutput> {
    const body: Record<string, unknown> = { encoding_format: 'float', ...(input.extra ?? {}), model: this.model, input: input.texts };
    const { data } = await this.client.json<OpenAIAnswer>({ url: joinUrl(this.endpoint, 'embeddings'), json: body, headers: this.headers, call });
    if (!Array.isArray(data?.data)) throw new McpError('MCP_UPSTREAM_ERROR', 'the model server answered without embeddings');
    const items = [...data.data].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
    const embeddings = items.map((d) => {
      if (!Array.isArray(d.embedding)) throw new McpError('MCP_UPSTREAM_ERROR', 'the model server sent an embedding that is not a float array');
      return d.embedding;
    });
    const out: InferenceOutput = { embeddings };
    const usage = mapUsage(data.usage);
    if (usage) out.usage = usage;
    return out;
  }

  async *stream(raw: InferenceInput, call: BackendCall): AsyncGenerator<InferenceChunk> {
    const input = this.accept(raw, this.streamTasks, true);
    const chat = input.task === 'chat';
    const upstream = await this.client.open({
      url: joinUrl(this.endpoint, chat ? 'chat/completions' : 'completions'),
      json: buildCompletionBody(input, this.model, true),
      headers: { ...this.headers, accept: 'text/event-stream' },
      call,
    });
    const parser = new SseParser();
    let finishReason: FinishReason | undefined;
    let usage: Usage | undefined;
    let done = false;
    let finalSent = false;
    const final = (): InferenceChunk => {
      finalSent = true;
      return usage ? { text: '', finishReason: finishReason ?? 'stop', usage } : { text: '', finishReason: finishReason ?? 'stop' };
    };
    try {
      for await (const bytes of upstream.body) {
        if (done) continue; // drain what follows [DONE] so the connection goes back to the pool
        for (const ev of parser.push(bytes)) {
          if (ev.data === '[DONE]') {
            done = true;
            break;
          }
          let obj: OpenAIAnswer;
          try {
            obj = JSON.parse(ev.data) as OpenAIAnswer;
          } catch (err) {
            throw new McpError('MCP_UPSTREAM_ERROR', 'the model server sent an SSE event that is not JSON', { cause: err });
          }
          if (obj.error) throw streamError(obj.error, this.logger);
          const u = mapUsage(obj.usage);
          if (u) usage = u;
          const choice = obj.choices?.[0];
          if (choice) {
            const text = chat ? choice.delta?.content : choice.text;
            if (typeof text === 'string' && text !== '') yield { text };
            const fr = mapFinishReason(choice.finish_reason);
            if (fr) finishReason = fr;
          }
        }
        if (done) yield final();
      }
    } finally {
      upstream.close();
    }
    if (finalSent) return;
    if (!done && finishReason === undefined) {
      throw new McpError('MCP_UPSTREAM_ERROR', 'the model server ended the stream before the answer was complete', { retryable: false });
    }
    yield final();
  }

  async health(signal: AbortSignal): Promise<HealthReport> {
    try {
      const { data } = await this.client.json<{ data?: Array<{ id?: string }> }>({
        url: joinUrl(this.endpoint, 'models'),
        headers: this.headers,
        signal,
        timeoutMs: this.client.timeouts.healthMs,
      });
      const ids = Array.isArray(data?.data) ? data.data.map((m) => m.id) : [];
      if (ids.length > 0 && !ids.includes(this.model)) return { ok: true, detail: `model '${this.model}' is not listed by the server` };
      return { ok: true };
    } catch (err) {
      return probeFailure(err);
    }
  }

  async unload(): Promise<void> {
    this.unloaded = true;
  }

  /** The declared accelerator (options.accelerator), when any. */
  deviceInfo(): DeviceInfo | undefined {
    return this.unloaded ? undefined : this.declared;
  }

  /** A declared accelerator is the engine's alone: its memory counts as held by this instance. */
  memoryBytes(): number | undefined {
    return this.unloaded ? undefined : this.declared?.memoryTotalBytes;
  }
}

/** Host (and port) of a URL, without credentials or path. */
const hostOf = (url: string) => {
  try {
    return new URL(url).host.slice(0, 100);
  } catch {
    return 'the server';
  }
};

/** The backend over a given client (one pooled Agent shared by all its instances). */
export function createOpenAIBackend(client: UpstreamClient, logger?: Logger): Backend {
  return {
    instanceOptions: openaiInstanceOptions as unknown as ZodType<Record<string, unknown>>,
    async load(spec: InstanceSpec): Promise<LoadedInstance> {
      if (!spec.endpoint) {
        throw new McpError('MCP_VALIDATION_FAILED', `openai instance '${spec.id}' needs an endpoint (base URL incl. /v1)`, { details: { path: 'endpoint' } });
      }
      const parsed = openaiInstanceOptions.safeParse(spec.options ?? {});
      if (!parsed.success) {
        throw new McpError('MCP_VALIDATION_FAILED', `invalid options for openai instance '${spec.id}': ${parsed.error.message}`, {
          details: { path: 'options' },
        });
      }
      const o = parsed.data;
      const headers: Record<string, string> = { ...o.headers };
      if (o.apiKey) headers.authorization = `Bearer ${o.apiKey}`;
      logger?.debug({ instance: spec.id, endpoint: spec.endpoint }, 'openai instance loaded');
      const a = o.accelerator;
      const declared: DeviceInfo | undefined = a && {
        id: `${a.kind}:${spec.id}`.slice(0, 63),
        kind: a.kind,
        name: `${a.type} at ${hostOf(spec.endpoint)}`,
        ...(a.memoryBytes !== undefined ? { memoryTotalBytes: a.memoryBytes } : {}),
        ...(a.chips !== undefined ? { cores: a.chips } : {}),
        source: 'declared',
      };
      return new OpenAIInstance(client, spec.endpoint, o.model ?? spec.model, headers, o.tasks, logger, declared);
    },
    devices: () => [{ id: 'remote', kind: 'remote', name: 'OpenAI-compatible server' }],
  };
}

export default definePlugin({
  name: 'openai',
  kind: 'backend',
  apiVersion: '^1.0.0',
  description: 'OpenAI-compatible model servers (vLLM, TGI, Ollama, llama.cpp, TPU engines) over HTTP',
  options: upstreamPluginOptions,
  setup(ctx, options) {
    const client = new UpstreamClient({ ...clientOptionsFrom(options), policy: ctx.addressPolicy, logger: ctx.logger });
    ctx.onClose(() => client.close());
    return createOpenAIBackend(client, ctx.logger);
  },
});
