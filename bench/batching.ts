/**
 * Dynamic batching benchmark for the tfjs backend: throughput and p50/p99 latency at a
 * fixed concurrency, batched vs unbatched (maxBatchSize 1), in one run, through the real
 * plugin path (input checks, batcher, tensor conversion).
 *
 *   npx tsx --conditions=capibara-source bench/batching.ts [--runtime auto|tfjs-node|wasm|cpu] [--concurrency 64] [--seconds 3]
 *                             [--max-batch 64] [--delay-us 2000] [--model dense|capibara|both]
 *                             [--dense 256,512,256,10] [--threads N] [--control]
 *
 * --threads: the tfjs plugin's `threads` option (TensorFlow op threads under tfjs-node; 0 = every core).
 *
 * Models: `dense` = an MLP 256→512→256→10 (265k parameters, saved to a temp folder and loaded
 * from disk); `capibara` = one decoding step of models/capibara-mini (a [1, 48] int32 window
 * → 64 logits), served as a tensor model.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Registry } from 'prom-client';
import plugin, { fileSaveHandler, type TfjsInstance } from '../plugins/backend-tfjs/index.ts';
import type { LoadedInstance, PluginContext } from '../src/plugin/contract.ts';
import type { Tensor } from '../src/inference/types.ts';
import { DynamicBatcher } from '../src/inference/dynamic-batcher.ts';
import { AddressPolicy } from '../src/security/address-policy.ts';
import { MemoryCredentialStore } from '../src/testing/memory-credentials.ts';

const { values: args } = parseArgs({
  options: {
    runtime: { type: 'string', default: 'auto' },
    concurrency: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '3' },
    'max-batch': { type: 'string', default: '64' },
    'delay-us': { type: 'string', default: '2000' },
    model: { type: 'string', default: 'both' },
    dense: { type: 'string', default: '256,512,256,10' },
    control: { type: 'boolean', default: false },
    threads: { type: 'string' },
  },
});
const CONCURRENCY = Number(args.concurrency);
const SECONDS = Number(args.seconds);
const MAX_BATCH = Number(args['max-batch']);
const DELAY_US = Number(args['delay-us']);

const closers: Array<() => unknown> = [];
const ctx: PluginContext = {
  name: 'tfjs',
  logger: pino({ level: 'silent' }),
  signal: new AbortController().signal,
  addressPolicy: new AddressPolicy(),
  dataDir: mkdtempSync(join(tmpdir(), 'bench-tfjs-')),
  metrics: new Registry(),
  get() {
    throw new Error('no other plugins in this bench');
  },
  onClose(fn) {
    closers.push(fn);
  },
  onHealth() {},
  credentials: new MemoryCredentialStore(),
};
const backend = await plugin.setup(
  ctx,
  plugin.options.parse({ runtime: args.runtime, ...(args.threads !== undefined ? { threads: Number(args.threads) } : {}) }),
);
const tf = await import('@tensorflow/tfjs');

interface Workload {
  label: string;
  endpoint: string;
  options: Record<string, unknown>;
  makeInput(i: number): Tensor[];
}
const workloads: Workload[] = [];

if (args.model === 'dense' || args.model === 'both') {
  const dir = join(ctx.dataDir, 'dense');
  const sizes = args.dense!.split(',').map(Number);
  const m = tf.sequential();
  for (let l = 1; l < sizes.length; l++) {
    m.add(
      tf.layers.dense({
        units: sizes[l]!,
        name: l === sizes.length - 1 ? 'probs' : `h${l}`,
        activation: l === sizes.length - 1 ? 'softmax' : 'relu',
        ...(l === 1 ? { inputShape: [sizes[0]!] } : {}),
      }),
    );
  }
  const params = m.countParams();
  await m.save(fileSaveHandler(dir));
  m.dispose();
  const rows = Array.from({ length: 97 }, (_, k) => Array.from({ length: sizes[0]! }, (_, j) => Math.sin(k * 31 + j)));
  workloads.push({
    label: `dense MLP ${sizes.join('-')} (${(params / 1000).toFixed(0)}k params)`,
    endpoint: dir,
    options: { kind: 'tensor' },
    makeInput: (i) => [{ name: 'x', shape: [1, sizes[0]!], datatype: 'FP32', data: rows[i % rows.length]! }],
  });
}
if (args.model === 'capibara' || args.model === 'both') {
  const dir = fileURLToPath(new URL('../models/capibara-mini/', import.meta.url));
  const tok = JSON.parse((await import('node:fs')).readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as { contextLength: number; vocab: string[] };
  const windows = Array.from({ length: 97 }, (_, k) => Array.from({ length: tok.contextLength }, (_, j) => 2 + ((k * 7 + j * 13) % (tok.vocab.length - 2))));
  workloads.push({
    label: `capibara-mini decoding step ([1,${tok.contextLength}] → ${tok.vocab.length} logits)`,
    endpoint: dir,
    options: { kind: 'tensor' },
    makeInput: (i) => [{ name: 'context', shape: [1, tok.contextLength], datatype: 'INT32', data: windows[i % windows.length]! }],
  });
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const call = () => ({ requestId: 'bench', signal: new AbortController().signal });

interface Row {
  workload: string;
  config: string;
  concurrency: number;
  throughput: number;
  p50: number;
  p99: number;
  avgBatch: number;
  requests: number;
}

async function closedLoop(inst: LoadedInstance, w: Workload, concurrency: number, seconds: number): Promise<{ lat: number[]; elapsed: number }> {
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  let i = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const input = w.makeInput(i++);
        const s = performance.now();
        await inst.infer({ task: 'tensor', tensors: input }, call());
        lat.push(performance.now() - s);
      }
    }),
  );
  return { lat: lat.sort((a, b) => a - b), elapsed: (performance.now() - t0) / 1000 };
}

const rows: Row[] = [];
const notes: string[] = [];
/** Merges closed-loop rounds: latencies sorted, time summed. */
function merge(parts: Array<{ lat: number[]; elapsed: number }>): { lat: number[]; elapsed: number } {
  return { lat: parts.flatMap((p) => p.lat).sort((a, b) => a - b), elapsed: parts.reduce((n, p) => n + p.elapsed, 0) };
}

for (const w of workloads) {
  const configs = [
    { config: 'unbatched (maxBatchSize 1)', batching: { maxBatchSize: 1, maxQueueDelayMicros: 0, maxQueueSize: 100_000 } },
    {
      config: `batched (maxBatchSize ${MAX_BATCH}, delay ${DELAY_US} µs)`,
      batching: { maxBatchSize: MAX_BATCH, maxQueueDelayMicros: DELAY_US, maxQueueSize: 100_000 },
    },
  ];
  const insts: Array<TfjsInstance & LoadedInstance> = [];
  for (const [k, c] of configs.entries()) {
    const inst = (await backend.load(
      { id: `${w.label}-${k}`, model: 'bench', version: '1', endpoint: w.endpoint, options: { ...w.options, batching: c.batching } },
      new AbortController().signal,
    )) as TfjsInstance & LoadedInstance;
    await closedLoop(inst, w, CONCURRENCY, 0.3); // warm-up (kernels for every batch size)
    insts.push(inst);
  }
  // The configurations alternate in short rounds so that load from other processes hits both alike.
  const ROUNDS = Math.max(2, Math.round(SECONDS / 0.5));
  const parts: Array<Array<{ lat: number[]; elapsed: number }>> = [[], [], []];
  const statsBefore = insts.map((i) => i.batcherStats());
  for (let r = 0; r < ROUNDS; r++) {
    parts[2]!.push(await closedLoop(insts[0]!, w, 1, SECONDS / ROUNDS / 2));
    for (const k of [0, 1]) parts[k]!.push(await closedLoop(insts[k]!, w, CONCURRENCY, SECONDS / ROUNDS));
  }
  const one = merge(parts[2]!);
  const single = pct(one.lat, 50);
  rows.push({
    workload: w.label,
    config: 'single request (concurrency 1)',
    concurrency: 1,
    throughput: one.lat.length / one.elapsed,
    p50: single,
    p99: pct(one.lat, 99),
    avgBatch: 1,
    requests: one.lat.length,
  });
  const results: Row[] = [];
  for (const k of [0, 1]) {
    const r = merge(parts[k]!);
    const after = insts[k]!.batcherStats();
    const avgBatch = (after.rowsRun - statsBefore[k]!.rowsRun) / (after.batchesRun - statsBefore[k]!.batchesRun);
    const row: Row = {
      workload: w.label,
      config: configs[k]!.config,
      concurrency: CONCURRENCY,
      throughput: r.lat.length / r.elapsed,
      p50: pct(r.lat, 50),
      p99: pct(r.lat, 99),
      avgBatch,
      requests: r.lat.length,
    };
    rows.push(row);
    results.push(row);
  }
  // Time of one full batch through the same path (MAX_BATCH requests submitted at once).
  const times: number[] = [];
  for (let rep = 0; rep < 30; rep++) {
    const s = performance.now();
    await Promise.all(Array.from({ length: MAX_BATCH }, (_, j) => insts[1]!.infer({ task: 'tensor', tensors: w.makeInput(j) }, call())));
    times.push(performance.now() - s);
  }
  const batchMs = pct(
    times.sort((a, b) => a - b),
    50,
  );
  for (const inst of insts) await inst.unload();
  const [unb, bat] = results as [Row, Row];
  const speedup = bat.throughput / unb.throughput;
  const bound = single + batchMs + DELAY_US / 1000;
  notes.push(
    `- ${w.label}: throughput ×${speedup.toFixed(1)} (target ≥ 4×: ${speedup >= 4 ? 'met' : 'NOT met'}); ` +
      `batched p99 ${bat.p99.toFixed(2)} ms vs bound single p50 ${single.toFixed(2)} + batch-of-${MAX_BATCH} ${batchMs.toFixed(2)} + ` +
      `delay ${(DELAY_US / 1000).toFixed(2)} = ${bound.toFixed(2)} ms (${bat.p99 <= bound ? 'met' : 'NOT met'})`,
  );
}

const rt = await (await import('../plugins/backend-tfjs/runtime.ts')).selectRuntime('auto');
const runtime = rt.threads ? `${rt.name}, ${rt.threads} TensorFlow op thread${rt.threads > 1 ? 's' : ''}` : rt.name;
const os = await import('node:os');
console.log(
  `\n### Dynamic batching, tfjs backend (${runtime}), concurrency ${CONCURRENCY}, ${SECONDS}s per config (alternating rounds), ` +
    `${os.cpus().length} cores, load average ${os.loadavg()[0]!.toFixed(1)}\n`,
);
console.log('| workload | config | conc. | throughput (req/s) | p50 (ms) | p99 (ms) | avg batch | requests |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(
    `| ${r.workload} | ${r.config} | ${r.concurrency} | ${r.throughput.toFixed(0)} | ` +
      `${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.avgBatch.toFixed(1)} | ${r.requests} |`,
  );
}
console.log('');
for (const n of notes) console.log(n);

if (args.control) {
  // The batcher alone: a batch function that holds the thread ~2 ms per full batch, as a compute kernel would.
  const spin = (ms: number) => {
    const end = performance.now() + ms;
    while (performance.now() < end);
  };
  const sizes: number[] = [];
  const batcher = new DynamicBatcher<number, number>(
    async (xs) => {
      sizes.push(xs.length);
      spin(0.2 + xs.length * 0.028);
      return xs;
    },
    { maxBatchSize: MAX_BATCH, maxQueueDelayMicros: DELAY_US, maxQueueSize: 100_000 },
  );
  const lat: number[] = [];
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, k) => {
      while (performance.now() < end) {
        const t = performance.now();
        await batcher.submit(k);
        lat.push(performance.now() - t);
      }
    }),
  );
  await batcher.close();
  lat.sort((a, b) => a - b);
  const full = sizes.filter((n) => n === MAX_BATCH).length;
  const batchMs = 0.2 + MAX_BATCH * 0.028;
  console.log(
    `- control, the batcher alone (batch function holding the thread ${batchMs.toFixed(2)} ms per batch of ${MAX_BATCH}), ` +
      `concurrency ${CONCURRENCY}: p50 ${pct(lat, 50).toFixed(2)} ms, p99 ${pct(lat, 99).toFixed(2)} ms ` +
      `vs bound batch + delay ${(batchMs + DELAY_US / 1000).toFixed(2)} ms; ${full} of ${sizes.length} batches full`,
  );
}
for (const fn of closers.reverse()) await fn();
