/**
 * A character-level generative model (like capibara-mini) served for 'generate' and 'chat'.
 * The per-step forward passes of concurrent generations go through one DynamicBatcher,
 * so N streams decoding at once cost one [N, context] forward pass per step.
 */
import { randomInt } from 'node:crypto';
import type * as tfTypes from '@tensorflow/tfjs';
import { weightBytes } from './weights.ts';
import {
  McpError,
  type FinishReason,
  type InferenceChunk,
  type InferenceInput,
  type InferenceOutput,
  type Usage,
  type BackendCall,
  type HealthReport,
  type LoadedInstance,
  type ModelSignature,
} from 'capibara-mcp';
import { DynamicBatcher, type BatcherStats, type DynamicBatcherOptions, type SubmitOptions } from 'capibara-mcp/sdk';
import type { TfRuntime } from './runtime.ts';
import { CharTokenizer, sampleLogits, seededRandom, StopMatcher, type SamplingOptions } from './char-lm.ts';
import { publicSignature, type ModelIo } from './tensors.ts';

export interface GenerationLimits {
  /** maxTokens when the request gives none. */
  defaultMaxTokens: number;
  /** Largest maxTokens accepted. */
  maxTokensLimit: number;
  /** Temperature when the request gives none. */
  defaultTemperature: number;
}

interface Plan {
  prompt: string;
  promptIds: number[];
  maxTokens: number;
  sampling: SamplingOptions;
  seed: number;
  stops: string[];
  chat: boolean;
}

export class CharLmInstance implements LoadedInstance {
  readonly runtime: string;
  readonly device: string;
  readonly tasks = ['generate', 'chat'] as const;
  readonly signature: ModelSignature;
  private readonly batcher: DynamicBatcher<Int32Array, Float32Array>;
  private readonly tf: typeof tfTypes;
  private unloaded = false;
  private weights: number | undefined;
  private active = 0;

  constructor(
    readonly id: string,
    rt: TfRuntime,
    private readonly model: tfTypes.LayersModel,
    io: ModelIo,
    readonly tokenizer: CharTokenizer,
    batching: DynamicBatcherOptions,
    private readonly limits: GenerationLimits,
  ) {
    this.tf = rt.tf;
    this.runtime = rt.name;
    this.device = rt.device;
    const inShape = io.inputs[0]?.shape;
    const outShape = io.outputs[0]?.shape;
    if (
      io.inputs.length !== 1 ||
      io.outputs.length !== 1 ||
      inShape?.length !== 2 ||
      inShape[1] !== tokenizer.contextLength ||
      outShape?.[1] !== tokenizer.vocabSize
    ) {
      throw new McpError(
        'MCP_BAD_REQUEST',
        `char-lm model must map [batch, ${tokenizer.contextLength}] token ids to [batch, ${tokenizer.vocabSize}] logits; ` +
          `it has inputs ${JSON.stringify(io.inputs.map((i) => i.shape))} and outputs ${JSON.stringify(io.outputs.map((o) => o.shape))}`,
      );
    }
    this.signature = publicSignature(io);
    this.batcher = new DynamicBatcher((windows) => this.forward(windows), batching);
  }

  batcherStats(): BatcherStats {
    return this.batcher.stats();
  }

  /** Generations running now. */
  get activeGenerations(): number {
    return this.active;
  }

  async infer(input: InferenceInput, call: BackendCall): Promise<InferenceOutput> {
    const plan = this.plan(input);
    let text = '';
    let finishReason: FinishReason = 'length';
    let usage: Usage | undefined;
    for await (const chunk of this.run(plan, call, false)) {
      text += chunk.text;
      if (chunk.finishReason) {
        finishReason = chunk.finishReason;
        usage = chunk.usage;
      }
    }
    if (finishReason === 'cancelled') throw new McpError('MCP_CANCELLED', 'The generation was cancelled.');
    return { text, finishReason, usage: usage! };
  }

  stream(input: InferenceInput, call: BackendCall): AsyncIterable<InferenceChunk> {
    const plan = this.plan(input);
    return this.run(plan, call, true);
  }

  /** Cheap: reads state only, never runs the model. */
  async health(_signal?: AbortSignal): Promise<HealthReport> {
    if (this.unloaded) return { ok: false, detail: 'unloaded' };
    const s = this.batcher.stats();
    return {
      ok: true,
      detail: `${this.runtime} on ${this.device}; ${this.active} generating, queue ${s.queueDepth}, avg batch ${s.averageBatchSize.toFixed(2)}`,
    };
  }

  /** Bytes of the model's weights while loaded (0 once unloaded). */
  memoryBytes(): number {
    if (this.unloaded) return 0;
    return (this.weights ??= weightBytes(this.model));
  }

  async unload(): Promise<void> {
    if (this.unloaded) return;
    this.unloaded = true;
    await this.batcher.close(new McpError('MCP_SHUTTING_DOWN', `instance ${this.id} is being unloaded`, { retryable: true, mayHaveExecuted: false }));
    this.model.dispose();
  }

  async warmup(): Promise<void> {
    const w = new Int32Array(this.tokenizer.contextLength).fill(this.tokenizer.padId);
    await this.forward([w]);
  }

  /** One forward pass for a batch of context windows; returns one logits row per window. */
  private async forward(windows: Int32Array[]): Promise<Float32Array[]> {
    const tf = this.tf;
    const c = this.tokenizer.contextLength;
    const flat = new Int32Array(windows.length * c);
    windows.forEach((w, i) => flat.set(w, i * c));
    const logits = tf.tidy(() => this.model.predict(tf.tensor2d(flat, [windows.length, c], 'int32')) as tfTypes.Tensor);
    try {
      const data = (await logits.data()) as Float32Array;
      const v = this.tokenizer.vocabSize;
      return windows.map((_, i) => data.slice(i * v, (i + 1) * v));
    } finally {
      logits.dispose();
    }
  }

  /** Validates the request and resolves defaults (throws before anything runs). */
  private plan(input: InferenceInput): Plan {
    if (this.unloaded) throw new McpError('MCP_SHUTTING_DOWN', `instance ${this.id} is unloaded`, { retryable: true, mayHaveExecuted: false });
    const tok = this.tokenizer;
    let prompt: string;
    let chat = false;
    if (input.task === 'generate') {
      prompt = input.prompt;
    } else if (input.task === 'chat') {
      prompt = tok.chatPrompt(input.messages);
      chat = true;
    } else {
      throw new McpError('MCP_BAD_REQUEST', `task '${input.task}' is not served by tfjs instance ${this.id} (tasks: generate, chat)`);
    }
    // The input schema (src/inference/schema.ts) bounds every parameter; this instance's own limit on maxTokens is checked here.
    const p = input.parameters ?? {};
    const maxTokens = p.maxTokens ?? this.limits.defaultMaxTokens;
    if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > this.limits.maxTokensLimit) {
      throw new McpError('MCP_VALIDATION_FAILED', `parameters.maxTokens must be an integer from 1 to ${this.limits.maxTokensLimit}`, {
        details: { path: 'parameters.maxTokens' },
      });
    }
    const temperature = p.temperature ?? this.limits.defaultTemperature;
    const topK = p.topK ?? 0;
    const topP = p.topP ?? 1;
    const seed = p.seed ?? randomInt(0, 2 ** 31);
    const stops = p.stop ?? [];
    return {
      prompt,
      promptIds: tok.encode(prompt),
      maxTokens,
      sampling: { temperature, topK, topP, banned: [tok.padId] },
      seed,
      stops: chat ? [...new Set([...stops, ...tok.chatStop])] : stops,
      chat,
    };
  }

  /**
   * The decoding loop. Yields text as it is produced (stream) or in one piece (infer);
   * the last chunk carries finishReason and usage. Abort ⇒ last chunk 'cancelled'.
   */
  private async *run(plan: Plan, call: BackendCall, streaming: boolean): AsyncGenerator<InferenceChunk> {
    const tok = this.tokenizer;
    const rand = seededRandom(plan.seed);
    const ids = [...plan.promptIds];
    const matcher = new StopMatcher(plan.stops);
    const window = (): Int32Array => {
      const w = new Int32Array(tok.contextLength);
      tok.window(ids, w);
      return w;
    };
    const submitOpts: SubmitOptions = { signal: call.signal };
    if (call.deadline !== undefined) submitOpts.deadline = call.deadline;
    let generated = 0;
    let finishReason: FinishReason = 'length';
    let pending = '';
    let leading = plan.chat; // chat answers start after "Assistant:"; drop the one space the format puts there
    const usage = (): Usage => ({ promptTokens: plan.promptIds.length, completionTokens: generated, totalTokens: plan.promptIds.length + generated });
    const tidyText = (s: string): string => {
      if (leading && s.length > 0) {
        leading = false;
        if (s.startsWith(' ')) return s.slice(1);
      }
      return s;
    };
    this.active++;
    try {
      while (generated < plan.maxTokens) {
        if (call.signal.aborted) {
          finishReason = 'cancelled';
          break;
        }
        if (this.unloaded) throw new McpError('MCP_SHUTTING_DOWN', `instance ${this.id} was unloaded during generation`, { retryable: false });
        let logits: Float32Array;
        try {
          logits = await this.batcher.submit(window(), submitOpts);
        } catch (err) {
          if (err instanceof McpError && err.code === 'MCP_CANCELLED') {
            finishReason = 'cancelled';
            break;
          }
          throw err;
        }
        const id = sampleLogits(logits, plan.sampling, rand);
        if (id === tok.eosId) {
          finishReason = 'stop';
          break;
        }
        generated++;
        ids.push(id);
        const { emit, stopped } = matcher.push(tok.decodeOne(id));
        const text = tidyText(emit);
        if (streaming && text) yield { text };
        else pending += text;
        if (stopped) {
          finishReason = 'stop';
          break;
        }
      }
      let rest = finishReason === 'cancelled' ? '' : tidyText(matcher.flush());
      if (plan.chat && finishReason === 'stop') {
        // A chat turn ends with a newline before the next turn / end of text.
        if (streaming) rest = rest.trimEnd();
        else {
          pending = (pending + rest).trimEnd();
          rest = '';
        }
      }
      yield { text: streaming ? rest : pending + rest, finishReason, usage: usage() };
    } finally {
      this.active--;
    }
  }
}
