/**
 * `tfjs` backend: serves TensorFlow.js models (layers or graph format, model.json + weight
 * shards) in-process. Instance endpoint = folder path, path of model.json, or a file:// /
 * http(s):// URL. Two kinds of instance:
 *  - `tensor`: task 'tensor', signature from the model, inputs checked before running;
 *  - `char-lm`: character-level generative models with a tokenizer.json next to model.json
 *    (capibara-mini), tasks 'generate' and 'chat', with streaming.
 * Every instance has its own dynamic batcher (Triton-style); concurrent requests to one
 * instance are concatenated along the batch dimension.
 */
import { cpus, totalmem } from 'node:os';
import { z, type ZodType } from 'zod';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { McpError, definePlugin, type Backend, type DeviceInfo, type InstanceSpec, type LoadedInstance } from 'capibara-mcp';
import { UpstreamClient, type BatchInfo, type BatcherStats, type DynamicBatcherOptions } from 'capibara-mcp/sdk';
import { RUNTIME_CHOICES, selectRuntime, type TfRuntime } from './runtime.ts';
import { loadModelFiles } from './io.ts';
import { graphModelIo, layersModelIo } from './tensors.ts';
import { TensorInstance } from './tensor-instance.ts';
import { CharLmInstance } from './char-lm-instance.ts';
import { CharTokenizer, type CharTokenizerJson } from './char-lm.ts';

export { fileSaveHandler, loadModelFiles } from './io.ts';
export { selectRuntime, type TfRuntime, type RuntimeChoice, type RuntimeName } from './runtime.ts';
export { TensorInstance } from './tensor-instance.ts';
export { CharLmInstance } from './char-lm-instance.ts';

/** Dynamic batching settings (Triton names). Every field optional: unset ones fall back to the plugin's, then to the defaults. */
export const batchingSchema = z
  .object({
    /** Largest number of rows (requests × their batch dimension) run as one batch; 1 disables batching. Default 32. */
    maxBatchSize: z.number().int().min(1).max(65_536).optional(),
    /** Batch sizes dispatched without waiting for the queue delay. Default none. */
    preferredBatchSizes: z.array(z.number().int().min(1)).max(32).optional(),
    /** How long the oldest queued request may wait for a fuller batch, µs. Default 0 (requests that queue while a batch runs still batch together). */
    maxQueueDelayMicros: z.number().int().min(0).max(10_000_000).optional(),
    /** Most requests waiting per instance; more ⇒ MCP_QUEUE_FULL (retryable). Default 1024. */
    maxQueueSize: z.number().int().min(1).max(1_000_000).optional(),
  })
  .strict();
export type BatchingOptions = z.output<typeof batchingSchema>;

export const tfjsPluginOptions = z
  .object({
    /** Which TensorFlow.js runtime to use; `auto` = tfjs-node-gpu → tfjs-node → wasm → cpu. An explicit runtime that is unavailable fails setup. */
    runtime: z.enum(RUNTIME_CHOICES).default('auto'),
    /**
     * tfjs-node(-gpu): threads one TensorFlow op may use. Default: TF_NUM_INTRAOP_THREADS when set,
     * else cores − 1 (at least 1), which leaves the event loop a core; 0 = TensorFlow's default (every core).
     */
    threads: z.number().int().min(0).max(1024).optional(),
    /** Default batching for every instance of this backend. */
    batching: batchingSchema.default({}),
  })
  .strict();
export type TfjsPluginOptions = z.output<typeof tfjsPluginOptions>;

export const tfjsInstanceOptions = z
  .object({
    /** `auto` (default): `char-lm` when a char-lm tokenizer.json sits next to model.json, else `tensor`. */
    kind: z.enum(['auto', 'tensor', 'char-lm']).default('auto'),
    /** Per-instance batching overrides. */
    batching: batchingSchema.optional(),
    /** Run one dummy inference at load so the first request does not pay kernel set-up (default true). */
    warmup: z.boolean().default(true),
    /** char-lm: maxTokens when a request gives none (default 128). */
    defaultMaxTokens: z.number().int().min(1).max(100_000).default(128),
    /** char-lm: largest maxTokens accepted (default 2048). */
    maxTokensLimit: z.number().int().min(1).max(100_000).default(2048),
    /** char-lm: temperature when a request gives none (default 0.8). */
    defaultTemperature: z.number().min(0).max(5).default(0.8),
  })
  .strict();
export type TfjsInstanceOptions = z.output<typeof tfjsInstanceOptions>;

export const DEFAULT_BATCHING: Required<BatchingOptions> = { maxBatchSize: 32, preferredBatchSizes: [], maxQueueDelayMicros: 0, maxQueueSize: 1024 };

/** What every tfjs instance offers beyond LoadedInstance. */
export type TfjsInstance = (TensorInstance | CharLmInstance) & { batcherStats(): BatcherStats };

function mergeBatching(onBatch: ((info: BatchInfo) => void) | undefined, ...layers: Array<BatchingOptions | undefined>): DynamicBatcherOptions {
  const out: Required<BatchingOptions> = { ...DEFAULT_BATCHING };
  for (const l of layers) {
    if (!l) continue;
    for (const [k, v] of Object.entries(l)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return onBatch ? { ...out, onBatch } : { ...out };
}

// ───────────── metrics ─────────────

interface TfjsMetrics {
  live: Map<string, { spec: InstanceSpec; instance: TfjsInstance }>;
  /** The batcher's onBatch for an instance: batch sizes and queue waits, per instance. */
  observer(spec: InstanceSpec): { onBatch: (info: BatchInfo) => void; forget(): void };
}

const metricSets = new WeakMap<Registry, TfjsMetrics>();

/** The tfjs metrics of a registry (shared by every tfjs plugin instance registered in it). */
function instanceRegistry(registry: Registry): TfjsMetrics {
  const known = metricSets.get(registry);
  if (known) return known;
  const live = new Map<string, { spec: InstanceSpec; instance: TfjsInstance }>();
  const labelNames = ['instance', 'model', 'version'] as const;
  const labelsOf = (id: string, spec: InstanceSpec) => ({ instance: id, model: spec.model, version: spec.version });
  new Gauge({
    name: 'mcp_tfjs_batch_queue_depth',
    help: 'Requests waiting in the dynamic batcher of a tfjs instance.',
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [id, { spec, instance }] of live) this.set(labelsOf(id, spec), instance.batcherStats().queueDepth);
    },
  });
  const counter = (name: string, help: string, value: (s: BatcherStats) => number): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [id, { spec, instance }] of live) this.inc(labelsOf(id, spec), value(instance.batcherStats()));
      },
    });
  };
  counter('mcp_tfjs_batches_total', 'Batches run by a tfjs instance since it was loaded.', (s) => s.batchesRun);
  counter('mcp_tfjs_queue_full_rejections_total', 'Requests a tfjs instance rejected with MCP_QUEUE_FULL.', (s) => s.rejectedQueueFull);
  const batchSize = new Histogram({
    name: 'mcp_tfjs_batch_size',
    help: 'Rows per batch run by a tfjs instance.',
    labelNames,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [registry],
  });
  const queueWait = new Histogram({
    name: 'mcp_tfjs_queue_wait_seconds',
    help: 'How long the oldest request of a batch waited in the queue of a tfjs instance.',
    labelNames,
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const set: TfjsMetrics = {
    live,
    observer(spec) {
      const labels = labelsOf(spec.id, spec);
      const size = batchSize.labels(labels);
      const wait = queueWait.labels(labels);
      return {
        onBatch: (info) => {
          size.observe(info.size);
          wait.observe(info.maxQueueWaitMs / 1000);
        },
        forget: () => {
          batchSize.remove(labels);
          queueWait.remove(labels);
        },
      };
    },
  };
  metricSets.set(registry, set);
  return set;
}

// ───────────── loading ─────────────

async function loadInstance(
  rt: TfRuntime,
  spec: InstanceSpec,
  opts: TfjsInstanceOptions,
  pluginBatching: BatchingOptions,
  logger: Logger,
  signal: AbortSignal,
  http: UpstreamClient,
  onBatch?: (info: BatchInfo) => void,
): Promise<TfjsInstance> {
  const tf = rt.tf;
  if (!spec.endpoint) {
    throw new McpError('MCP_BAD_REQUEST', `tfjs instance ${spec.id} needs an endpoint: a folder with model.json, or a file:// / http(s):// URL`);
  }
  if (spec.device && spec.device !== rt.device) {
    logger.warn(
      { instance: spec.id, requested: spec.device, actual: rt.device },
      'requested device not available on this tfjs runtime; using the runtime device',
    );
  }
  const files = await loadModelFiles(spec.endpoint, signal, http);
  let tokenizer: CharTokenizer | undefined;
  if (opts.kind !== 'tensor') {
    const text = await files.readSidecar('tokenizer.json');
    const json = text ? safeJson(text) : (files.artifacts.userDefinedMetadata?.tokenizer as unknown);
    if (json && (json as { type?: unknown }).type === 'char-lm') tokenizer = new CharTokenizer(json as CharTokenizerJson);
    else if (opts.kind === 'char-lm')
      throw new McpError('MCP_BAD_REQUEST', `tfjs instance ${spec.id}: kind char-lm needs a char-lm tokenizer.json next to model.json (${files.baseUrl.href})`);
  }
  if (signal.aborted) throw new McpError('MCP_CANCELLED', 'loading was cancelled');

  let instance: TfjsInstance;
  try {
    const handler = tf.io.fromMemory(files.artifacts);
    if (files.format === 'layers') {
      const model = await tf.loadLayersModel(handler);
      try {
        const batching = mergeBatching(onBatch, pluginBatching, opts.batching);
        instance = tokenizer
          ? new CharLmInstance(spec.id, rt, model, layersModelIo(model, files.artifacts.modelTopology), tokenizer, batching, {
              defaultMaxTokens: opts.defaultMaxTokens,
              maxTokensLimit: opts.maxTokensLimit,
              defaultTemperature: opts.defaultTemperature,
            })
          : new TensorInstance(spec.id, rt, { kind: 'layers', model }, layersModelIo(model, files.artifacts.modelTopology), batching);
      } catch (err) {
        model.dispose();
        throw err;
      }
    } else {
      if (tokenizer) throw new McpError('MCP_BAD_REQUEST', `tfjs instance ${spec.id}: char-lm models must be layers models`);
      const model = await tf.loadGraphModel(handler);
      try {
        instance = new TensorInstance(spec.id, rt, { kind: 'graph', model }, graphModelIo(model), mergeBatching(onBatch, pluginBatching, opts.batching));
      } catch (err) {
        model.dispose();
        throw err;
      }
    }
  } catch (err) {
    if (err instanceof McpError) throw err;
    throw new McpError('MCP_BAD_REQUEST', `tfjs instance ${spec.id}: cannot load the model at ${files.baseUrl.href}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    if (opts.warmup) await instance.warmup();
    if (signal.aborted) throw new McpError('MCP_CANCELLED', 'loading was cancelled');
  } catch (err) {
    await instance.unload();
    throw err;
  }
  logger.info(
    {
      instance: spec.id,
      model: spec.model,
      version: spec.version,
      format: files.format,
      kind: tokenizer ? 'char-lm' : 'tensor',
      runtime: rt.name,
      device: rt.device,
    },
    'tfjs instance loaded',
  );
  return instance;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function devicesOf(rt: TfRuntime): DeviceInfo[] {
  const tf = rt.tf;
  const cpuList = cpus();
  const devices: DeviceInfo[] = [
    {
      id: 'cpu',
      kind: 'cpu',
      name: `${cpuList[0]?.model?.trim() ?? 'cpu'} (${cpuList.length} cores, ${rt.name})`,
      memoryTotalBytes: totalmem(),
      memoryUsedBytes: rt.device === 'cpu' ? tf.memory().numBytes : process.memoryUsage().rss,
      cores: cpuList.length,
      source: 'tfjs',
    },
  ];
  if (rt.device === 'gpu:0')
    devices.push({ id: 'gpu:0', kind: 'gpu', name: 'CUDA device 0 (tfjs-node-gpu)', memoryUsedBytes: tf.memory().numBytes, source: 'tfjs' });
  return devices;
}

export default definePlugin({
  name: 'tfjs',
  kind: 'backend',
  apiVersion: '^1.0.0',
  description: 'Serves TensorFlow.js layers/graph models in-process (tfjs-node-gpu, tfjs-node, wasm or cpu) with dynamic batching',
  options: tfjsPluginOptions,
  async setup(ctx, options): Promise<Backend> {
    const rt = await selectRuntime(options.runtime, ctx.logger, { threads: options.threads });
    const metrics = instanceRegistry(ctx.metrics);
    const live = metrics.live;
    const mine = new Map<string, TfjsInstance>();
    const http = new UpstreamClient({ policy: ctx.addressPolicy, logger: ctx.logger });
    ctx.onClose(() => http.close());
    ctx.onHealth(() => ({ ok: true, detail: `${rt.name} on ${rt.device}; ${mine.size} instance(s) loaded; ${rt.tf.memory().numTensors} tensors` }));
    ctx.onClose(async () => {
      await Promise.allSettled([...mine.values()].map((i) => i.unload()));
      for (const id of mine.keys()) live.delete(id);
      mine.clear();
    });
    return {
      instanceOptions: tfjsInstanceOptions as unknown as ZodType<Record<string, unknown>>,
      async load(spec: InstanceSpec, signal: AbortSignal): Promise<LoadedInstance> {
        const parsed = tfjsInstanceOptions.safeParse(spec.options ?? {});
        if (!parsed.success) {
          const issue = parsed.error.issues[0];
          throw new McpError('MCP_VALIDATION_FAILED', `tfjs instance ${spec.id}: options.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`, {
            details: { path: `options.${issue?.path.join('.') ?? ''}` },
          });
        }
        const observer = metrics.observer(spec);
        const instance = await loadInstance(rt, spec, parsed.data, options.batching, ctx.logger, signal, http, observer.onBatch);
        const unload = instance.unload.bind(instance);
        instance.unload = async () => {
          mine.delete(spec.id);
          if (live.get(spec.id)?.instance === instance) {
            live.delete(spec.id);
            observer.forget();
          }
          await unload();
        };
        mine.set(spec.id, instance);
        live.set(spec.id, { spec, instance });
        return instance;
      },
      devices: () => devicesOf(rt),
    };
  },
});
