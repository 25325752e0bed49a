import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { selectRuntime } from './runtime.ts';

/** Reference gather along axis 0, in plain JS. */
function gatherRows(table: number[], rowSize: number, ids: number[]): number[] {
  return ids.flatMap((r) => table.slice(r * rowSize, (r + 1) * rowSize));
}

describe('row gather on the wasm backend (Embedding lookups)', () => {
  it('is installed in front of GatherV2 and gives what a row-by-row gather gives, for any shapes and dtypes', async () => {
    const { tf, name } = await selectRuntime('wasm');
    expect(name).toBe('tfjs-wasm');
    expect((tf.getKernel('GatherV2', 'wasm') as { rowGather?: true }).rowGather).toBe(true);
    const before = tf.memory().numTensors;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }), // rows
        fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 0, maxLength: 2 }), // row shape (rows of 1 to 81 elements: both copy paths)
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 2 }), // indices shape
        fc.constantFrom('float32', 'int32') as fc.Arbitrary<'float32' | 'int32'>,
        fc.integer(),
        (rows, rowShape, idShape, dtype, seed) => {
          const rowSize = rowShape.reduce((a, b) => a * b, 1);
          const table = Array.from({ length: rows * rowSize }, (_, i) => ((i * 7919 + seed) % 1000) - 500);
          const count = idShape.reduce((a, b) => a * b, 1);
          const ids = Array.from({ length: count }, (_, i) => Math.abs((seed + i * 31) % rows));
          const got = tf.tidy(() => {
            const y = tf.gather(tf.tensor(table, [rows, ...rowShape], dtype), tf.tensor(ids, idShape, 'int32'));
            return { shape: y.shape, values: Array.from(y.dataSync()) };
          });
          expect(got.shape).toEqual([...idShape, ...rowShape]);
          expect(got.values).toEqual(gatherRows(table, rowSize, ids));
        },
      ),
      { numRuns: 200 },
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses an index out of range like the original kernel, and leaves other axes to it', async () => {
    const { tf } = await selectRuntime('wasm');
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const table = tf.tensor2d([
        [1, 2],
        [3, 4],
        [5, 6],
      ]);
      expect(() => tf.gather(table, tf.tensor1d([0, 3], 'int32'))).toThrow(/index value 3 is not in \[0, 2\]/);
      expect(() => tf.gather(table, tf.tensor1d([-1], 'int32'))).toThrow(/index value -1/);
      const cols = tf.gather(table, tf.tensor1d([1, 0], 'int32'), 1);
      expect(Array.from(cols.dataSync())).toEqual([2, 1, 4, 3, 6, 5]);
      const embedded = tf.layers
        .embedding({ inputDim: 3, outputDim: 2, embeddingsInitializer: tf.initializers.constant({ value: 0.5 }) })
        .apply(tf.tensor2d([[0, 2]], [1, 2], 'int32')) as import('@tensorflow/tfjs').Tensor;
      expect(embedded.shape).toEqual([1, 2, 2]);
      expect(Array.from(embedded.dataSync())).toEqual([0.5, 0.5, 0.5, 0.5]);
    });
    expect(tf.memory().numTensors).toBeLessThanOrEqual(before + 1); // the layer's own embeddings weight
  });
});
