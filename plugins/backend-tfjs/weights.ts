import type * as tfTypes from '@tensorflow/tfjs';

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8, float16: 2, int8: 1, uint8: 1 };

/** Bytes of a model's weights (what it holds on its device while loaded; string weights count 0). */
export function weightBytes(model: tfTypes.LayersModel | tfTypes.GraphModel): number {
  const list: Array<{ shape: readonly number[]; dtype: string }> =
    'predictOnBatch' in model ? model.weights.map((w) => ({ shape: w.shape as number[], dtype: w.dtype })) : Object.values(model.weights).flat();
  let bytes = 0;
  for (const w of list) bytes += w.shape.reduce((p, n) => p * Math.max(0, n ?? 0), 1) * (BYTES[w.dtype] ?? 0);
  return bytes;
}
