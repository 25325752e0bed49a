import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import plugin, { fileSaveHandler, type TfjsInstance } from './index.ts';
import { testPluginContext } from 'capibara-mcp/testing';
import { AUTO_RUNTIME } from './auto-runtime.ts';
import { McpError, parseInferenceInput, type Backend, type BackendCall, type InstanceSpec, type Tensor } from 'capibara-mcp';

const call = (over: Partial<BackendCall> = {}): BackendCall => ({ requestId: 'r', signal: new AbortController().signal, ...over });
const spec = (endpoint: string, options: Record<string, unknown> = {}, id = 'i1'): InstanceSpec => ({ id, model: 'm', version: '1', endpoint, options });
const fp32 = (name: string, shape: number[], data: number[]): Tensor => ({ name, shape, datatype: 'FP32', data });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return err instanceof McpError ? `${err.code}: ${err.message}` : String(err);
  }
}

let root: string;
let denseDir: string;
let multiDir: string;
let graphDir: string;
let backend: Backend;
const ctx = testPluginContext('tfjs');
let server: Server;
let baseHttp: string;

/** Reference outputs computed by the model object we saved (same weights). */
let denseRef: tf.LayersModel;

/** A hand-written graph model: y = x · W (x: [-1, 3], W: [3, 2]). */
function writeGraphModel(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const f32 = (dims: number[]) => ({ dim: dims.map((d) => ({ size: String(d) })) });
  const json = {
    format: 'graph-model',
    generatedBy: 'hand-written test fixture',
    convertedBy: null,
    modelTopology: {
      node: [
        { name: 'x', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: f32([-1, 3]) } } },
        { name: 'W', op: 'Const', attr: { dtype: { type: 'DT_FLOAT' }, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: f32([3, 2]) } } } },
        { name: 'MatMul', op: 'MatMul', input: ['x', 'W'], attr: { T: { type: 'DT_FLOAT' }, transpose_a: { b: false }, transpose_b: { b: false } } },
        { name: 'Identity', op: 'Identity', input: ['MatMul'], attr: { T: { type: 'DT_FLOAT' } } },
      ],
      library: {},
      versions: { producer: 1 },
    },
    weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: [{ name: 'W', shape: [3, 2], dtype: 'float32' }] }],
  };
  writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
  writeFileSync(join(dir, 'group1-shard1of1.bin'), new Uint8Array(new Float32Array([1, 0, 0, 1, 1, 1]).buffer));
}

beforeAll(async () => {
  backend = await plugin.setup(ctx, plugin.options.parse({}));
  root = mkdtempSync(join(tmpdir(), 'tfjs-test-'));
  denseDir = join(root, 'dense');
  multiDir = join(root, 'multi');
  graphDir = join(root, 'graph');

  denseRef = tf.sequential({
    layers: [
      tf.layers.dense({ units: 8, inputShape: [4], activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }),
      tf.layers.dense({ units: 3, activation: 'softmax', name: 'probs', kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }) }),
    ],
  });
  await denseRef.save(fileSaveHandler(denseDir));

  const a = tf.input({ shape: [2], name: 'a' });
  const b = tf.input({ shape: [3], dtype: 'int32', name: 'b' });
  const both = tf.layers
    .concatenate({ name: 'both' })
    .apply([a, tf.layers.dense({ units: 2, name: 'bproj', kernelInitializer: 'ones' }).apply(b) as tf.SymbolicTensor]) as tf.SymbolicTensor;
  const score = tf.layers.dense({ units: 1, name: 'score', kernelInitializer: 'ones' }).apply(both) as tf.SymbolicTensor;
  const multi = tf.model({ inputs: [a, b], outputs: [both, score] });
  await multi.save(fileSaveHandler(multiDir));
  multi.dispose();

  writeGraphModel(graphDir);

  server = createServer((req, res) => {
    readFile(join(root, decodeURIComponent(req.url ?? '/'))).then(
      (body) => res.end(body),
      () => {
        res.statusCode = 404;
        res.end();
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  baseHttp = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});

afterAll(async () => {
  denseRef?.dispose();
  await ctx.close();
  await new Promise((r) => server?.close(r));
});

describe('tfjs backend: tensor models', () => {
  it('picks the first runtime installed here (tfjs-node, else wasm) and reports it with the device', async () => {
    const inst = await backend.load(spec(denseDir), new AbortController().signal);
    expect(inst.runtime).toBe(AUTO_RUNTIME);
    expect(inst.device).toBe('cpu');
    expect(inst.tasks).toEqual(['tensor']);
    await inst.unload();
  });

  it('derives the signature from the model and returns outputs named after it', async () => {
    const inst = await backend.load(spec(denseDir), new AbortController().signal);
    expect(inst.signature).toEqual({
      inputs: [{ name: expect.any(String), datatype: 'FP32', shape: [-1, 4] }],
      outputs: [{ name: 'probs', datatype: 'FP32', shape: [-1, 3] }],
    });
    const x = [0.1, -0.2, 0.3, 0.4, 1, 2, 3, 4];
    const out = await inst.infer({ task: 'tensor', tensors: [fp32(inst.signature!.inputs[0]!.name, [2, 4], x)] }, call());
    expect(out.tensors).toHaveLength(1);
    const t = out.tensors![0]!;
    expect(t).toMatchObject({ name: 'probs', datatype: 'FP32', shape: [2, 3] });
    const ref = tf.tidy(() => (denseRef.predict(tf.tensor2d(x, [2, 4])) as tf.Tensor).dataSync());
    (t.data as number[]).forEach((v, i) => expect(v).toBeCloseTo(ref[i]!, 5));
    await inst.unload();
  });

  it('loads from a folder, a path to model.json, a file:// URL and an http:// URL', async () => {
    const x = [fp32('in', [1, 4], [1, 2, 3, 4])];
    const results: number[][] = [];
    for (const endpoint of [denseDir, join(denseDir, 'model.json'), pathToFileURL(denseDir).href, `${baseHttp}/dense/model.json`, `${baseHttp}/dense/`]) {
      const inst = await backend.load(spec(endpoint), new AbortController().signal);
      results.push((await inst.infer({ task: 'tensor', tensors: x }, call())).tensors![0]!.data as number[]);
      await inst.unload();
    }
    for (const r of results) expect(r).toEqual(results[0]);
  });

  it("keeps public input/output names stable across loads (not tfjs's per-process unique tensor names)", async () => {
    const a = await backend.load(spec(multiDir), new AbortController().signal);
    const b = await backend.load(spec(multiDir), new AbortController().signal);
    expect(a.signature).toEqual(b.signature);
    expect(a.signature!.inputs.map((i) => i.name)).toEqual(['a', 'b']);
    await a.unload();
    await b.unload();
  });

  it('serves capibara-mini as a plain tensor model with kind: tensor', async () => {
    const dir = new URL('../../models/capibara-mini/', import.meta.url).href;
    const inst = await backend.load(spec(dir, { kind: 'tensor' }), new AbortController().signal);
    expect(inst.tasks).toEqual(['tensor']);
    expect(inst.signature).toEqual({
      inputs: [{ name: 'context', datatype: 'INT32', shape: [-1, 48] }],
      outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 64] }],
    });
    const out = await inst.infer({ task: 'tensor', tensors: [{ name: 'context', datatype: 'INT32', shape: [1, 48], data: new Array(48).fill(0) }] }, call());
    expect(out.tensors![0]).toMatchObject({ name: 'logits', shape: [1, 64] });
    await inst.unload();
  });

  it('rejects inputs that do not match the signature with MCP_INVALID_INPUT_SHAPE, saying expected vs given', async () => {
    const inst = await backend.load(spec(multiDir), new AbortController().signal);
    const ok = [fp32('a', [1, 2], [1, 2]), { name: 'b', shape: [1, 3], datatype: 'INT32', data: [1, 1, 1] } as Tensor];
    expect((await inst.infer({ task: 'tensor', tensors: ok }, call())).tensors!.map((t) => t.name)).toEqual(['both', 'score']);
    const wrongDim = await codeOf(inst.infer({ task: 'tensor', tensors: [fp32('a', [1, 3], [1, 2, 3]), ok[1]!] }, call()));
    expect(wrongDim).toMatch(/^MCP_INVALID_INPUT_SHAPE: input 'a': expected FP32\[-1,2\], given FP32\[1,3\]/);
    const wrongType = await codeOf(inst.infer({ task: 'tensor', tensors: [ok[0]!, { ...ok[1]!, datatype: 'FP32' }] }, call()));
    expect(wrongType).toMatch(/MCP_INVALID_INPUT_SHAPE: input 'b': expected INT32\[-1,3\], given FP32\[1,3\]/);
    expect(await codeOf(inst.infer({ task: 'tensor', tensors: [ok[0]!] }, call()))).toMatch(/MCP_INVALID_INPUT_SHAPE: missing input 'b'/);
    // Data that does not fill its shape never reaches a backend: the input schema refuses it at every entry point.
    expect(await codeOf((async () => parseInferenceInput({ task: 'tensor', tensors: [fp32('a', [1, 2], [1]), ok[1]!] }))())).toMatch(
      /MCP_VALIDATION_FAILED.*1 elements/,
    );
    expect(await codeOf(inst.infer({ task: 'tensor', tensors: [fp32('a', [2, 2], [1, 2, 3, 4]), ok[1]!] }, call()))).toMatch(
      /MCP_INVALID_INPUT_SHAPE.*batch dimension/,
    );
    expect(await codeOf(inst.infer({ task: 'tensor', tensors: [fp32('a', [2], [1, 2]), ok[1]!] }, call()))).toMatch(
      /MCP_INVALID_INPUT_SHAPE.*rank 1 instead of 2/,
    );
    // An empty batch (0 rows) is refused, not passed to the batcher (it has nothing to concatenate).
    const empty = [fp32('a', [0, 2], []), { name: 'b', shape: [0, 3], datatype: 'INT32', data: [] } as Tensor];
    expect(await codeOf(inst.infer({ task: 'tensor', tensors: empty }, call()))).toMatch(/MCP_INVALID_INPUT_SHAPE.*batch dimension must be at least 1/);
    await inst.unload();
  });

  it('returns only the outputs asked for, in that order; unknown outputs are a bad request', async () => {
    const inst = await backend.load(spec(multiDir), new AbortController().signal);
    const tensors = [fp32('a', [1, 2], [1, 2]), { name: 'b', shape: [1, 3], datatype: 'INT32', data: [1, 2, 3] } as Tensor];
    const out = await inst.infer({ task: 'tensor', tensors, outputs: ['score'] }, call());
    // both = [a, b·1, b·1] = [1, 2, 6, 6]; score = sum = 15
    expect(out.tensors).toEqual([{ name: 'score', datatype: 'FP32', shape: [1, 1], data: [15] }]);
    expect(await codeOf(inst.infer({ task: 'tensor', tensors, outputs: ['nope'] }, call()))).toMatch(/MCP_BAD_REQUEST: unknown output 'nope'/);
    await inst.unload();
  });

  it("memoryBytes(): the weights' bytes a loaded instance holds (what tf.memory() grows by), 0 once unloaded", async () => {
    const before = tf.memory().numBytes;
    const dense = await backend.load(spec(denseDir), new AbortController().signal);
    // dense 4→8 and 8→3 with biases: 67 float32
    expect(dense.memoryBytes?.()).toBe(67 * 4);
    expect(tf.memory().numBytes - before).toBe(67 * 4);
    const graph = await backend.load(spec(graphDir), new AbortController().signal);
    expect(graph.memoryBytes?.()).toBe(6 * 4);
    await dense.unload();
    await graph.unload();
    expect(dense.memoryBytes?.()).toBe(0);
    expect(tf.memory().numBytes).toBe(before);
  });

  it('serves a graph model (format auto-detected)', async () => {
    const inst = await backend.load(spec(graphDir), new AbortController().signal);
    expect(inst.signature).toEqual({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }],
      outputs: [{ name: 'Identity', datatype: 'FP32', shape: expect.any(Array) }],
    });
    const out = await inst.infer({ task: 'tensor', tensors: [fp32('x', [2, 3], [1, 2, 3, 4, 5, 6])] }, call());
    // W = [[1,0],[0,1],[1,1]] ⇒ rows [1+3, 2+3], [4+6, 5+6]
    expect(out.tensors).toEqual([{ name: 'Identity', datatype: 'FP32', shape: [2, 2], data: [4, 5, 10, 11] }]);
    // Concurrent requests are batched and split back correctly.
    const outs = await Promise.all([1, 2, 3].map((k) => inst.infer({ task: 'tensor', tensors: [fp32('x', [1, 3], [k, 0, 0])] }, call())));
    expect(outs.map((o) => o.tensors![0]!.data)).toEqual([
      [1, 0],
      [2, 0],
      [3, 0],
    ]);
    await inst.unload();
  });

  it('batches concurrent requests per instance and splits results back (rows counted)', async () => {
    const inst = (await backend.load(spec(denseDir, { batching: { maxBatchSize: 16 } }), new AbortController().signal)) as TfjsInstance;
    const inputs = Array.from({ length: 20 }, (_, i) => (i % 3 === 0 ? fp32('in', [2, 4], [i, 1, 2, 3, -i, 0, 1, 0]) : fp32('in', [1, 4], [i, 0, 1, 2])));
    const before = inst.batcherStats().batchesRun;
    const outs = await Promise.all(inputs.map((t) => inst.infer({ task: 'tensor', tensors: [t] }, call())));
    const s = inst.batcherStats();
    expect(s.batchesRun - before).toBeLessThan(inputs.length);
    expect(s.averageBatchSize).toBeGreaterThan(1);
    outs.forEach((o, i) => {
      const t = inputs[i]!;
      const ref = tf.tidy(() => Array.from((denseRef.predict(tf.tensor2d(t.data as number[], t.shape as [number, number])) as tf.Tensor).dataSync()));
      expect(o.tensors![0]!.shape).toEqual([t.shape[0], 3]);
      (o.tensors![0]!.data as number[]).forEach((v, k) => expect(v).toBeCloseTo(ref[k]!, 5));
    });
    await inst.unload();
  });

  it('per-instance batching overrides the plugin default (maxBatchSize 1 ⇒ one request per batch)', async () => {
    const inst = (await backend.load(spec(denseDir, { batching: { maxBatchSize: 1 }, warmup: false }), new AbortController().signal)) as TfjsInstance;
    await Promise.all(Array.from({ length: 5 }, () => inst.infer({ task: 'tensor', tensors: [fp32('in', [1, 4], [1, 2, 3, 4])] }, call())));
    expect(inst.batcherStats()).toMatchObject({ batchesRun: 5, averageBatchSize: 1 });
    await inst.unload();
  });

  it('validates instance options, endpoint and task', async () => {
    const signal = new AbortController().signal;
    expect(await codeOf(backend.load(spec(denseDir, { batching: { maxBatchSize: 0 } }), signal))).toMatch(
      /^MCP_VALIDATION_FAILED: .*options\.batching\.maxBatchSize/,
    );
    expect(await codeOf(backend.load(spec(denseDir, { bogus: 1 }), signal))).toMatch(/^MCP_VALIDATION_FAILED/);
    expect(await codeOf(backend.load({ id: 'x', model: 'm', version: '1', options: {} }, signal))).toMatch(/^MCP_BAD_REQUEST: .*needs an endpoint/);
    expect(await codeOf(backend.load(spec(join(root, 'missing')), signal))).toMatch(/^MCP_BAD_REQUEST: cannot read TensorFlow.js model.json/);
    expect(await codeOf(backend.load(spec(denseDir, { kind: 'char-lm' }), signal))).toMatch(/^MCP_BAD_REQUEST: .*tokenizer.json/);
    expect(backend.instanceOptions?.safeParse({ kind: 'tensor', batching: { maxQueueDelayMicros: 2000 } }).success).toBe(true);
    const inst = await backend.load(spec(denseDir), signal);
    expect(await codeOf(inst.infer({ task: 'generate', prompt: 'hi' }, call()))).toMatch(/^MCP_BAD_REQUEST: task 'generate'/);
    await inst.unload();
  });

  it('health is cheap (no inference); unload disposes the model; later calls fail retryably', async () => {
    const baseline = tf.memory().numTensors;
    const inst = (await backend.load(spec(denseDir), new AbortController().signal)) as TfjsInstance;
    expect(tf.memory().numTensors).toBeGreaterThan(baseline);
    const batches = inst.batcherStats().batchesRun;
    expect(await inst.health(new AbortController().signal)).toMatchObject({ ok: true });
    expect(inst.batcherStats().batchesRun).toBe(batches);
    await inst.unload();
    expect(tf.memory().numTensors).toBe(baseline);
    expect(await inst.health(new AbortController().signal)).toMatchObject({ ok: false });
    const err = await inst.infer({ task: 'tensor', tensors: [fp32('in', [1, 4], [1, 2, 3, 4])] }, call()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'MCP_SHUTTING_DOWN', retryable: true });
  });

  it('reports its device inventory', async () => {
    const devices = await backend.devices!();
    expect(devices.map((d) => d.id)).toEqual(['cpu']);
    expect(devices[0]).toMatchObject({ kind: 'cpu', memoryTotalBytes: expect.any(Number) });
  });

  it('exposes batcher metrics in the shared registry', async () => {
    const inst = await backend.load(spec(denseDir, {}, 'metrics-inst'), new AbortController().signal);
    await inst.infer({ task: 'tensor', tensors: [fp32('in', [1, 4], [1, 2, 3, 4])] }, call());
    const text = await ctx.metrics.metrics();
    expect(text).toMatch(/mcp_tfjs_batches_total\{instance="metrics-inst",model="m",version="1"\} [1-9]/);
    expect(text).toMatch(/mcp_tfjs_batch_size_count\{instance="metrics-inst",model="m",version="1"\} [1-9]/);
    expect(text).toMatch(/# TYPE mcp_tfjs_queue_full_rejections_total counter/);
    await inst.unload();
    expect(await ctx.metrics.metrics()).not.toMatch(/instance="metrics-inst"/);
  });

  it('does not leak tensors over 10,000 inferences (single, concurrent, failing and cancelled)', async () => {
    const inst = (await backend.load(spec(denseDir, { batching: { maxBatchSize: 32 } }), new AbortController().signal)) as TfjsInstance;
    const one = (i: number) => inst.infer({ task: 'tensor', tensors: [fp32('in', [1, 4], [i % 7, 1, -1, 0.5])] }, call());
    await one(0);
    const baseline = tf.memory().numTensors;
    let done = 0;
    let failed = 0;
    // Single requests, one after another.
    for (let i = 0; i < 1000; i++) {
      await one(i);
      done++;
    }
    // Concurrent waves through the batcher, with some bad and some cancelled requests mixed in.
    for (let wave = 0; wave < 90; wave++) {
      const ps: Array<Promise<unknown>> = [];
      for (let k = 0; k < 100; k++) {
        const i = wave * 100 + k;
        if (k === 13)
          ps.push(
            inst.infer({ task: 'tensor', tensors: [fp32('in', [1, 3], [1, 2, 3])] }, call()).catch(() => {
              failed++;
            }),
          );
        else if (k === 42) {
          const ac = new AbortController();
          ps.push(
            inst.infer({ task: 'tensor', tensors: [fp32('in', [1, 4], [1, 2, 3, 4])] }, call({ signal: ac.signal })).catch(() => {
              failed++;
            }),
          );
          ac.abort();
        } else ps.push(one(i));
      }
      await Promise.all(ps);
      done += ps.length;
    }
    expect(done).toBe(10_000);
    expect(failed).toBe(180);
    expect(inst.batcherStats().averageBatchSize).toBeGreaterThan(2);
    expect(tf.memory().numTensors).toBe(baseline);
    await inst.unload();
  });
});
