/**
 * A loaded tfjs tensor model (layers or graph) served for task 'tensor', with requests
 * concatenated along the batch dimension by a DynamicBatcher.
 */
import type * as tfTypes from '@tensorflow/tfjs';
import { weightBytes } from './weights.ts';
import {
  McpError,
  type InferenceInput,
  type InferenceOutput,
  type Tensor,
  type TensorDatatype,
  type BackendCall,
  type HealthReport,
  type LoadedInstance,
  type ModelSignature,
} from 'capibara-mcp';
import { DynamicBatcher, type BatcherStats, type DynamicBatcherOptions } from 'capibara-mcp/sdk';
import type { TfRuntime } from './runtime.ts';
import { checkInputs, publicSignature, rowsOf, toDataArray, toTfDtype, type CheckedInput, type ModelIo } from './tensors.ts';

/** Concatenates input `k` of every job into one flat typed array (strings stay an array). */
function packData(jobs: readonly Job[], k: number, datatype: TensorDatatype): Float32Array | Int32Array | Uint8Array | string[] {
  if (datatype === 'BYTES') return jobs.flatMap((j) => j.inputs[k]!.data as string[]);
  const total = jobs.reduce((n, j) => n + j.inputs[k]!.data.length, 0);
  const out = datatype === 'FP32' ? new Float32Array(total) : datatype === 'INT32' ? new Int32Array(total) : new Uint8Array(total);
  let off = 0;
  for (const j of jobs) {
    const d = j.inputs[k]!.data;
    for (let i = 0; i < d.length; i++) out[off + i] = Number(d[i]);
    off += d.length;
  }
  return out;
}

type TfModel = { kind: 'layers'; model: tfTypes.LayersModel } | { kind: 'graph'; model: tfTypes.GraphModel };

interface Job {
  inputs: CheckedInput[];
  rows: number;
  /** Output indices wanted. */
  outputs: number[];
}

export class TensorInstance implements LoadedInstance {
  readonly runtime: string;
  readonly device: string;
  readonly tasks = ['tensor'] as const;
  readonly signature: ModelSignature;
  private readonly batcher: DynamicBatcher<Job, Tensor[]>;
  private unloaded = false;
  private weights: number | undefined;
  private readonly tf: typeof tfTypes;

  constructor(
    readonly id: string,
    private readonly rt: TfRuntime,
    private readonly m: TfModel,
    private readonly io: ModelIo,
    batching: DynamicBatcherOptions,
  ) {
    this.tf = rt.tf;
    this.runtime = rt.name;
    this.device = rt.device;
    this.signature = publicSignature(io);
    const opts = io.batchable ? batching : { ...batching, maxBatchSize: 1, preferredBatchSizes: [] };
    this.batcher = new DynamicBatcher<Job, Tensor[]>((jobs) => this.runBatch(jobs), opts);
  }

  get batchable(): boolean {
    return this.io.batchable;
  }

  batcherStats(): BatcherStats {
    return this.batcher.stats();
  }

  async infer(input: InferenceInput, call: BackendCall): Promise<InferenceOutput> {
    if (this.unloaded) throw new McpError('MCP_SHUTTING_DOWN', `instance ${this.id} is unloaded`, { retryable: true, mayHaveExecuted: false });
    if (input.task !== 'tensor') {
      throw new McpError('MCP_BAD_REQUEST', `task '${input.task}' is not served by tfjs instance ${this.id} (tasks: tensor)`);
    }
    const inputs = checkInputs(this.io, input.tensors);
    const outputs = this.selectOutputs(input.outputs);
    const rows = this.io.batchable ? rowsOf(inputs) : 1;
    const opts: Parameters<DynamicBatcher<Job, Tensor[]>['submit']>[1] = { signal: call.signal, size: Math.max(1, rows) };
    if (call.deadline !== undefined) opts.deadline = call.deadline;
    const tensors = await this.batcher.submit({ inputs, rows, outputs }, opts);
    return { tensors };
  }

  /** Cheap: reads state only, never runs the model. */
  async health(_signal?: AbortSignal): Promise<HealthReport> {
    if (this.unloaded) return { ok: false, detail: 'unloaded' };
    const s = this.batcher.stats();
    return {
      ok: true,
      detail: `${this.runtime} on ${this.device}; queue ${s.queueDepth}, ${s.batchesRun} batches, avg batch ${s.averageBatchSize.toFixed(2)}`,
    };
  }

  /** Bytes of the model's weights while loaded (0 once unloaded). */
  memoryBytes(): number {
    if (this.unloaded) return 0;
    return (this.weights ??= weightBytes(this.m.model));
  }

  async unload(): Promise<void> {
    if (this.unloaded) return;
    this.unloaded = true;
    await this.batcher.close(new McpError('MCP_SHUTTING_DOWN', `instance ${this.id} is being unloaded`, { retryable: true, mayHaveExecuted: false }));
    this.m.model.dispose();
  }

  /** Runs one dummy row through the model (so the first request does not pay kernel set-up). */
  async warmup(): Promise<void> {
    if (this.io.inputs.some((s) => !s.shapeKnown || s.datatype === 'BYTES')) return;
    const inputs: CheckedInput[] = this.io.inputs.map((spec) => {
      const shape = spec.shape.map((d) => (d === -1 ? 1 : d));
      const n = shape.reduce((a, b) => a * b, 1);
      return { spec, shape, data: new Array<number | boolean>(n).fill(spec.datatype === 'BOOL' ? false : 0) };
    });
    await this.runGroup([{ inputs, rows: 1, outputs: this.io.outputs.map((_, i) => i) }]);
  }

  private selectOutputs(names: readonly string[] | undefined): number[] {
    if (!names || names.length === 0) return this.io.outputs.map((_, i) => i);
    return names.map((n) => {
      const i = this.io.outputs.findIndex((o) => o.name === n || o.tfName === n);
      if (i < 0)
        throw new McpError('MCP_BAD_REQUEST', `unknown output '${n}'; the model's outputs are ${this.io.outputs.map((o) => `'${o.name}'`).join(', ')}`);
      return i;
    });
  }

  /** Runs a batch: jobs whose non-batch dimensions agree run together; others in their own group. */
  private async runBatch(jobs: Job[]): Promise<Tensor[][]> {
    const groups = new Map<string, number[]>();
    jobs.forEach((job, j) => {
      const key = job.inputs.map((i) => i.shape.slice(1).join('x')).join('|');
      const g = groups.get(key);
      if (g) g.push(j);
      else groups.set(key, [j]);
    });
    const results = new Array<Tensor[]>(jobs.length);
    for (const idx of groups.values()) {
      const out = await this.runGroup(idx.map((j) => jobs[j]!));
      idx.forEach((j, k) => {
        results[j] = out[k]!;
      });
    }
    return results;
  }

  private async runGroup(jobs: Job[]): Promise<Tensor[][]> {
    const tf = this.tf;
    const wanted = [...new Set(jobs.flatMap((j) => j.outputs))].sort((a, b) => a - b);
    const totalRows = jobs.reduce((n, j) => n + j.rows, 0);
    const feeds: tfTypes.Tensor[] = [];
    let outs: tfTypes.Tensor[] = [];
    try {
      for (const [k, spec] of this.io.inputs.entries()) {
        const first = jobs[0]!.inputs[k]!;
        const shape = this.io.batchable ? [totalRows, ...first.shape.slice(1)] : first.shape;
        feeds.push(tf.tensor(packData(jobs, k, spec.datatype), shape, toTfDtype(spec.datatype)));
      }
      outs = await this.execute(feeds, wanted);
      const downloaded = await Promise.all(outs.map((o) => o.data()));
      const results: Tensor[][] = jobs.map(() => []);
      outs.forEach((o, w) => {
        const spec = this.io.outputs[wanted[w]!]!;
        const values = downloaded[w]!;
        if (jobs.length === 1) {
          results[0]!.push({ name: spec.name, datatype: spec.datatype, shape: [...o.shape], data: toDataArray(values, spec.datatype) });
          return;
        }
        if (o.shape[0] !== totalRows) {
          throw new McpError('MCP_INTERNAL', `output '${spec.name}' has leading dimension ${o.shape[0]}, expected the batch size ${totalRows}`);
        }
        const rest = o.shape.slice(1);
        const stride = rest.reduce((a, b) => a * b, 1);
        let row = 0;
        jobs.forEach((job, j) => {
          results[j]!.push({
            name: spec.name,
            datatype: spec.datatype,
            shape: [job.rows, ...rest],
            data: toDataArray(values, spec.datatype, row * stride, (row + job.rows) * stride),
          });
          row += job.rows;
        });
      });
      // Each job gets only the outputs it asked for, in the order it asked.
      return results.map((r, j) => jobs[j]!.outputs.map((i) => r[wanted.indexOf(i)]!));
    } finally {
      tf.dispose(feeds);
      tf.dispose(outs);
    }
  }

  private async execute(feeds: tfTypes.Tensor[], wanted: number[]): Promise<tfTypes.Tensor[]> {
    const tf = this.tf;
    const asArray = (r: tfTypes.Tensor | tfTypes.Tensor[] | tfTypes.NamedTensorMap): tfTypes.Tensor[] =>
      Array.isArray(r) ? r : r instanceof tf.Tensor ? [r] : Object.values(r);
    if (this.m.kind === 'layers') {
      const model = this.m.model;
      // predict() keeps intermediates inside tidy; only the outputs we return survive.
      return tf.tidy(() => {
        const all = asArray(model.predict(feeds.length === 1 ? feeds[0]! : feeds) as tfTypes.Tensor | tfTypes.Tensor[]);
        const keep = wanted.map((i) => all[i]!);
        return keep;
      });
    }
    const model = this.m.model;
    const named: tfTypes.NamedTensorMap = {};
    this.io.inputs.forEach((s, i) => {
      named[s.tfName] = feeds[i]!;
    });
    const names = wanted.map((i) => this.io.outputs[i]!.tfName);
    try {
      return asArray(model.execute(named, names));
    } catch (err) {
      // Models with control flow (dynamic ops) only run asynchronously.
      if (err instanceof Error && /executeAsync/.test(err.message)) return asArray(await model.executeAsync(named, names));
      throw err;
    }
  }
}
