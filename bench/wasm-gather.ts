/**
 * tfjs-wasm GatherV2 (an Embedding lookup) with tfjs-backend-wasm's own kernel vs the
 * row-copying kernel the tfjs backend installs (plugins/backend-tfjs/wasm-gather.ts), side by
 * side in one run: capibara-mini's shape, 48 token ids per row into a 64×16 table, batches of 1
 * and 64; median of interleaved rounds.
 *
 *   npx tsx --conditions=capibara-source bench/wasm-gather.ts
 */
import type * as tfTypes from '@tensorflow/tfjs-core';
import { selectRuntime } from '../plugins/backend-tfjs/runtime.ts';
import type { RowGatherKernel } from '../plugins/backend-tfjs/wasm-gather.ts';

const { tf, name } = await selectRuntime('wasm');
const installed = tf.getKernel('GatherV2', 'wasm') as RowGatherKernel;

function use(kernelFunc: tfTypes.KernelConfig['kernelFunc']): void {
  tf.unregisterKernel('GatherV2', 'wasm');
  tf.registerKernel({ ...installed, kernelFunc });
}

const table = tf.randomNormal([64, 16]);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: string[] = [];
for (const batch of [1, 64]) {
  const ids = tf.tensor1d(
    Array.from({ length: batch * 48 }, (_, i) => (i * 7) % 64),
    'int32',
  );
  const time = (): number => {
    for (let i = 0; i < 20; i++) tf.dispose(tf.gather(table, ids));
    const n = 200;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const y = tf.gather(table, ids);
      y.dataSync();
      y.dispose();
    }
    return (performance.now() - t0) / n;
  };
  const own: number[] = [];
  const ours: number[] = [];
  for (let round = 0; round < 7; round++) {
    use(installed.original);
    own.push(time());
    use(installed.kernelFunc);
    ours.push(time());
  }
  ids.dispose();
  const a = median(own);
  const b = median(ours);
  rows.push(`| ${batch} × 48 ids | ${(a * 1000).toFixed(0)} µs | ${(b * 1000).toFixed(0)} µs | ${(a / b).toFixed(1)}× |`);
}
use(installed.kernelFunc);
console.log(`runtime ${name}, node ${process.version}, median of 7 interleaved rounds × 200 gathers\n`);
console.log('| gather from a 64×16 table | tfjs-backend-wasm kernel | row gather | speed-up |\n|---|---:|---:|---:|');
for (const r of rows) console.log(r);
