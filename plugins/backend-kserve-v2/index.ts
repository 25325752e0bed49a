/**
 * `kserve-v2` backend: Triton, KServe, MLServer and anything speaking the KServe v2 (Open
 * Inference Protocol) REST API. Instance endpoint = server base URL. load() reads the model
 * metadata to build the signature; requests are checked against it before they are sent.
 */
import { z, type ZodType } from 'zod';
import type { Logger } from 'pino';
import {
  McpError,
  TENSOR_DATATYPES,
  definePlugin,
  type InferenceInput,
  type InferenceOutput,
  type InferenceTask,
  type Tensor,
  type TensorDatatype,
  type Backend,
  type BackendCall,
  type HealthReport,
  type InstanceSpec,
  type LoadedInstance,
  type ModelSignature,
  type TensorSignature,
} from 'capibara-mcp';
import { UpstreamClient, joinUrl, probeFailure, clientOptionsFrom, upstreamPluginOptions } from 'capibara-mcp/sdk';

export const kserveInstanceOptions = z.object({
  /** Upstream model name; default: the instance's model id. */
  model: z.string().min(1).optional(),
  /** Upstream model version (omitted from URLs when absent: the server picks). */
  version: z.string().min(1).optional(),
  /** Extra headers for this instance. */
  headers: z.record(z.string(), z.string()).default({}),
});
export type KServeInstanceOptions = z.output<typeof kserveInstanceOptions>;

const DATATYPES: ReadonlySet<string> = new Set(TENSOR_DATATYPES);

interface KServeTensorMeta {
  name?: unknown;
  datatype?: unknown;
  shape?: unknown;
}
interface KServeModelMetadata {
  name?: string;
  versions?: string[];
  platform?: string;
  inputs?: KServeTensorMeta[];
  outputs?: KServeTensorMeta[];
}
interface KServeInferResponse {
  model_name?: string;
  model_version?: string;
  id?: string;
  outputs?: Array<{ name?: unknown; shape?: unknown; datatype?: unknown; data?: unknown }>;
}

function toSignature(list: KServeTensorMeta[] | undefined, what: string): TensorSignature[] {
  if (!Array.isArray(list)) throw new McpError('MCP_UPSTREAM_ERROR', `the model metadata has no ${what} list`);
  return list.map((t) => {
    if (typeof t.name !== 'string' || typeof t.datatype !== 'string' || !Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d))) {
      throw new McpError('MCP_UPSTREAM_ERROR', `the model metadata has a malformed ${what} entry`, { details: { entry: t } });
    }
    // Triton reports BYTES as "BYTES"; some servers report "STRING" for BYTES.
    const datatype = (t.datatype === 'STRING' ? 'BYTES' : t.datatype) as TensorDatatype;
    return { name: t.name, datatype, shape: t.shape as number[] };
  });
}

/** Builds a ModelSignature from KServe v2 model metadata. */
export function signatureFromMetadata(meta: KServeModelMetadata): ModelSignature {
  return { inputs: toSignature(meta.inputs, 'inputs'), outputs: toSignature(meta.outputs, 'outputs') };
}

function shapeError(
  input: string,
  message: string,
  expected: TensorSignature | undefined,
  given: Pick<Tensor, 'shape' | 'datatype'> | undefined,
  extra: Record<string, unknown> = {},
): McpError {
  const details: Record<string, unknown> = { input, ...extra };
  if (expected) details.expected = { datatype: expected.datatype, shape: expected.shape };
  if (given) details.given = { datatype: given.datatype, shape: given.shape };
  return new McpError('MCP_INVALID_INPUT_SHAPE', message, { details });
}

/**
 * Checks request tensors against a signature: every input known and present once, datatype
 * equal, rank equal, every dimension equal unless the signature has -1. The input schema
 * (src/inference/schema.ts) has already checked each tensor on its own: at least one, named,
 * non-negative integer dimensions, as many elements as the shape says.
 */
export function checkTensors(signature: ModelSignature, tensors: readonly Tensor[], outputs?: readonly string[]): void {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new McpError('MCP_BAD_REQUEST', `input '${t.name}' is given twice`, { details: { path: 'tensors', input: t.name } });
    seen.add(t.name);
    const expected = signature.inputs.find((s) => s.name === t.name);
    if (!expected) {
      throw shapeError(t.name, `the model has no input '${t.name}' (inputs: ${signature.inputs.map((s) => s.name).join(', ')})`, undefined, t, {
        expectedInputs: signature.inputs.map((s) => s.name),
      });
    }
    if (t.datatype !== expected.datatype) {
      throw shapeError(t.name, `input '${t.name}' has datatype ${String(t.datatype)}, the model expects ${expected.datatype}`, expected, t);
    }
    if (t.shape.length !== expected.shape.length || t.shape.some((d, i) => expected.shape[i] !== -1 && expected.shape[i] !== d)) {
      throw shapeError(t.name, `input '${t.name}' has shape [${t.shape.join(',')}], the model expects [${expected.shape.join(',')}] (-1 = any)`, expected, t);
    }
  }
  const missing = signature.inputs.filter((s) => !seen.has(s.name));
  if (missing.length > 0) {
    throw shapeError(missing[0]!.name, `missing input${missing.length > 1 ? 's' : ''}: ${missing.map((m) => m.name).join(', ')}`, missing[0], undefined, {
      missing: missing.map((m) => m.name),
    });
  }
  if (outputs) {
    const unknown = outputs.filter((o) => !signature.outputs.some((s) => s.name === o));
    if (unknown.length > 0) {
      throw new McpError('MCP_BAD_REQUEST', `the model has no output ${unknown.map((u) => `'${u}'`).join(', ')}`, {
        details: { path: 'outputs', unknown, expectedOutputs: signature.outputs.map((s) => s.name) },
      });
    }
  }
}

function flatten(data: unknown): Array<number | string | boolean> {
  if (!Array.isArray(data)) return [];
  return data.some(Array.isArray) ? (data.flat(Infinity) as Array<number | string | boolean>) : (data as Array<number | string | boolean>);
}

/** Maps a KServe v2 infer response to tensors. */
export function tensorsFromResponse(res: KServeInferResponse): Tensor[] {
  if (!Array.isArray(res?.outputs)) throw new McpError('MCP_UPSTREAM_ERROR', 'the model server answered without outputs');
  return res.outputs.map((o) => {
    if (typeof o.name !== 'string' || typeof o.datatype !== 'string' || !Array.isArray(o.shape)) {
      throw new McpError('MCP_UPSTREAM_ERROR', 'the model server sent a malformed output tensor');
    }
    const datatype = (o.datatype === 'STRING' ? 'BYTES' : o.datatype) as TensorDatatype;
    if (!DATATYPES.has(datatype)) throw new McpError('MCP_UPSTREAM_ERROR', `the model server sent an unknown datatype ${o.datatype}`);
    return { name: o.name, shape: o.shape as number[], datatype, data: flatten(o.data) };
  });
}

class KServeInstance implements LoadedInstance {
  readonly runtime = 'remote';
  readonly device = 'remote';
  readonly tasks: readonly InferenceTask[] = ['tensor'];
  private unloaded = false;

  constructor(
    private readonly client: UpstreamClient,
    private readonly modelUrl: string,
    private readonly headers: Record<string, string>,
    readonly signature: ModelSignature,
  ) {}

  async infer(input: InferenceInput, call: BackendCall): Promise<InferenceOutput> {
    if (this.unloaded) throw new McpError('MCP_UPSTREAM_UNAVAILABLE', 'the instance was unloaded', { retryable: true, mayHaveExecuted: false });
    if (input.task !== 'tensor') {
      throw new McpError('MCP_UNSUPPORTED_PARAMETER', `task '${input.task}' is not supported by a kserve-v2 instance`, {
        details: { parameter: 'task', task: input.task, supported: this.tasks },
      });
    }
    checkTensors(this.signature, input.tensors, input.outputs);
    const body: Record<string, unknown> = {
      id: call.requestId,
      inputs: input.tensors.map((t) => ({ name: t.name, shape: t.shape, datatype: t.datatype, data: t.data })),
    };
    if (input.outputs && input.outputs.length > 0) body.outputs = input.outputs.map((name) => ({ name }));
    if (input.extra && Object.keys(input.extra).length > 0) body.parameters = input.extra;
    const { data } = await this.client.json<KServeInferResponse>({ url: `${this.modelUrl}/infer`, json: body, headers: this.headers, call });
    return { tensors: tensorsFromResponse(data) };
  }

  async health(signal: AbortSignal): Promise<HealthReport> {
    try {
      const { data } = await this.client.json<{ ready?: boolean } | undefined>({
        url: `${this.modelUrl}/ready`,
        headers: this.headers,
        signal,
        timeoutMs: this.client.timeouts.healthMs,
      });
      if (data && data.ready === false) return { ok: false, detail: 'the model server says the model is not ready' };
      return { ok: true };
    } catch (err) {
      return probeFailure(err);
    }
  }

  async unload(): Promise<void> {
    this.unloaded = true;
  }
}

/** The URL of a model (and version) on a KServe v2 server. */
export function modelUrl(endpoint: string, model: string, version?: string): string {
  const base = joinUrl(endpoint, `v2/models/${encodeURIComponent(model)}`);
  return version ? `${base}/versions/${encodeURIComponent(version)}` : base;
}

export function createKServeBackend(client: UpstreamClient, logger?: Logger): Backend {
  return {
    instanceOptions: kserveInstanceOptions as unknown as ZodType<Record<string, unknown>>,
    async load(spec: InstanceSpec, signal: AbortSignal): Promise<LoadedInstance> {
      if (!spec.endpoint) {
        throw new McpError('MCP_VALIDATION_FAILED', `kserve-v2 instance '${spec.id}' needs an endpoint (server base URL)`, { details: { path: 'endpoint' } });
      }
      const parsed = kserveInstanceOptions.safeParse(spec.options ?? {});
      if (!parsed.success) {
        throw new McpError('MCP_VALIDATION_FAILED', `invalid options for kserve-v2 instance '${spec.id}': ${parsed.error.message}`, {
          details: { path: 'options' },
        });
      }
      const o = parsed.data;
      const url = modelUrl(spec.endpoint, o.model ?? spec.model, o.version);
      const name = o.model ?? spec.model;
      const { data } = await client
        .json<KServeModelMetadata>({ url, headers: o.headers, signal, timeoutMs: client.timeouts.healthMs })
        .catch((err: unknown) => {
          if (!(err instanceof McpError && err.code === 'MCP_MODEL_NOT_FOUND')) throw err;
          const what = o.version ? `model '${name}' version '${o.version}'` : `model '${name}'`;
          throw new McpError('MCP_MODEL_NOT_FOUND', `kserve-v2 instance '${spec.id}': the server has no ${what}`, { details: err.details });
        });
      const signature = signatureFromMetadata(data ?? {});
      logger?.debug({ instance: spec.id, url, inputs: signature.inputs.length }, 'kserve-v2 instance loaded');
      return new KServeInstance(client, url, o.headers, signature);
    },
    devices: () => [{ id: 'remote', kind: 'remote', name: 'KServe v2 server' }],
  };
}

export default definePlugin({
  name: 'kserve-v2',
  kind: 'backend',
  apiVersion: '^1.0.0',
  description: 'KServe v2 / Open Inference Protocol servers (Triton, KServe, MLServer) over HTTP',
  options: upstreamPluginOptions,
  setup(ctx, options) {
    const client = new UpstreamClient({ ...clientOptionsFrom(options), policy: ctx.addressPolicy, logger: ctx.logger });
    ctx.onClose(() => client.close());
    return createKServeBackend(client, ctx.logger);
  },
});
