/**
 * A faster `GatherV2` for the tfjs wasm backend, for the case every Embedding layer uses
 * (axis 0, no batch dimensions): whole rows are copied within the wasm heap (element by element
 * for short rows, `TypedArray.set` for long ones). tfjs-backend-wasm 4.22's own kernel (which
 * checks every index through a closure before its wasm loop) took 2.8 ms for 64×48 token ids into
 * a 64×16 table, against 0.3 ms here (bench/wasm-gather.ts); without it capibara-mini's decoding
 * step batched only 3.2× (bench/RESULTS.md). Any other case goes to the original kernel, which
 * stays registered underneath.
 */
import type * as tfTypes from '@tensorflow/tfjs-core';

type Tf = typeof tfTypes;
type TensorInfo = tfTypes.TensorInfo;
type KernelFunc = tfTypes.KernelConfig['kernelFunc'];

/** The parts of tfjs-backend-wasm's BackendWasm this kernel uses. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tfTypes.DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

const COPYABLE = new Set<tfTypes.DataType>(['float32', 'int32', 'bool']);

function rowGather(original: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, attrs } = args as unknown as { inputs: { x: TensorInfo; indices: TensorInfo }; attrs: { axis: number | number[]; batchDims?: number } };
    const { x, indices } = inputs;
    const axis = Array.isArray(attrs.axis) ? attrs.axis[0] : attrs.axis;
    if (
      (axis !== 0 && axis !== -x.shape.length) ||
      (attrs.batchDims ?? 0) !== 0 ||
      !COPYABLE.has(x.dtype) ||
      indices.dtype !== 'int32' ||
      x.shape.length === 0
    ) {
      return original(args);
    }
    const backend = args.backend as unknown as WasmBackend;
    const rows = x.shape[0]!;
    let slice = 1;
    for (let d = 1; d < x.shape.length; d++) slice *= x.shape[d]!;
    const out = backend.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
    // Views are taken after makeOutput: an allocation may grow (and detach) the wasm memory.
    const ids = backend.typedArrayFromHeap(indices) as Int32Array;
    const from = backend.typedArrayFromHeap(x);
    const to = backend.typedArrayFromHeap(out);
    for (let i = 0; i < ids.length; i++) {
      const row = ids[i]!;
      if (!(row >= 0 && row < rows)) throw new Error(`GatherV2: the index value ${row} is not in [0, ${rows - 1}]`);
      const src = row * slice;
      const dst = i * slice;
      if (slice <= 64) {
        for (let k = 0; k < slice; k++) to[dst + k] = from[src + k]!;
      } // a view per short row costs more than the copy
      else to.set(from.subarray(src, src + slice), dst);
    }
    return out;
  };
}

/** The GatherV2 registration once `installRowGather` ran: it keeps the wasm backend's own kernel (bench/wasm-gather.ts). */
export interface RowGatherKernel extends tfTypes.KernelConfig {
  rowGather: true;
  original: KernelFunc;
}

/** Puts `rowGather` in front of the wasm backend's GatherV2 kernel (once; after the backend is ready). */
export function installRowGather(tf: Tf): void {
  const registered = tf.getKernel('GatherV2', 'wasm');
  if (!registered || (registered as Partial<RowGatherKernel>).rowGather) return;
  tf.unregisterKernel('GatherV2', 'wasm');
  const kernel: RowGatherKernel = { ...registered, kernelFunc: rowGather(registered.kernelFunc), rowGather: true, original: registered.kernelFunc };
  tf.registerKernel(kernel);
}
