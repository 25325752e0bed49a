/**
 * Signatures of tfjs models and checking / converting request tensors against them.
 */
import type * as tfTypes from '@tensorflow/tfjs';
import { McpError, type Tensor, type TensorDatatype, type ModelSignature, type TensorSignature } from 'capibara-mcp';

type TfDtype = tfTypes.DataType;

const TF_TO_KSERVE: Partial<Record<TfDtype, TensorDatatype>> = { float32: 'FP32', int32: 'INT32', bool: 'BOOL', string: 'BYTES' };
const KSERVE_TO_TF: Partial<Record<TensorDatatype, TfDtype>> = { FP32: 'float32', INT32: 'int32', BOOL: 'bool', BYTES: 'string' };

export function toDatatype(dtype: TfDtype | undefined): TensorDatatype {
  const d = TF_TO_KSERVE[dtype ?? 'float32'];
  if (!d) throw new McpError('MCP_BAD_REQUEST', `tfjs dtype ${dtype} has no KServe datatype`);
  return d;
}

export function toTfDtype(datatype: TensorDatatype): TfDtype {
  const d = KSERVE_TO_TF[datatype];
  if (!d) throw new McpError('MCP_INVALID_INPUT_SHAPE', `datatype ${datatype} is not supported by TensorFlow.js (use FP32, INT32, BOOL or BYTES)`);
  return d;
}

/** A signature entry plus what tfjs needs to feed/fetch it. */
export interface IoSpec extends TensorSignature {
  /** Name tfjs knows it by (graph models: node name; layers: symbolic tensor name). */
  tfName: string;
  /** False when the model does not declare the shape (graph models sometimes). */
  shapeKnown: boolean;
}

export interface ModelIo {
  inputs: IoSpec[];
  outputs: IoSpec[];
  /** Every input and output has a leading variable (batch) dimension, so requests can be concatenated. */
  batchable: boolean;
}

const dims = (shape: ReadonlyArray<number | null> | undefined): number[] => (shape ?? []).map((d) => (d === null || d === undefined || d < 0 ? -1 : d));

/**
 * Stable input/output names of a layers model, from its saved topology: the functional
 * model's input_layers / output_layers, or for a Sequential model `<first layer>_input` and
 * the last layer's name. (tfjs makes symbolic tensor names unique per process — `a`, `a_1`,
 * … — so they cannot be used as public names.)
 */
export function layersTopologyNames(topology: unknown): { inputs?: string[]; outputs?: string[] } {
  const t = topology as { model_config?: unknown; class_name?: string; config?: unknown } | undefined;
  const top = (t?.model_config ?? t) as { class_name?: string; config?: Record<string, unknown> | unknown[] } | undefined;
  if (!top) return {};
  const names = (list: unknown): string[] | undefined =>
    Array.isArray(list) && list.every((e) => Array.isArray(e) && typeof e[0] === 'string') ? list.map((e) => (e as string[])[0]!) : undefined;
  if (top.class_name === 'Sequential') {
    const layers = (Array.isArray(top.config) ? top.config : (top.config as { layers?: unknown[] } | undefined)?.layers) as
      Array<{ class_name?: string; config?: { name?: string } }> | undefined;
    const first = layers?.[0];
    const last = layers?.[layers.length - 1];
    const out: { inputs?: string[]; outputs?: string[] } = {};
    if (first?.config?.name) out.inputs = [first.class_name === 'InputLayer' ? first.config.name : `${first.config.name}_input`];
    if (last?.config?.name) out.outputs = [last.config.name];
    return out;
  }
  const cfg = top.config as { input_layers?: unknown; output_layers?: unknown } | undefined;
  const out: { inputs?: string[]; outputs?: string[] } = {};
  const i = names(cfg?.input_layers);
  if (i) out.inputs = i;
  const o = names(cfg?.output_layers);
  if (o) out.outputs = o;
  return out;
}

export function layersModelIo(model: tfTypes.LayersModel, topology?: unknown): ModelIo {
  const known = layersTopologyNames(topology);
  const inNames = known.inputs?.length === model.inputs.length ? known.inputs : model.inputNames.length === model.inputs.length ? model.inputNames : undefined;
  const outNames =
    known.outputs?.length === model.outputs.length ? known.outputs : model.outputNames.length === model.outputs.length ? model.outputNames : undefined;
  const seen = new Map<string, number>();
  const unique = (name: string): string => {
    const n = seen.get(name) ?? 0;
    seen.set(name, n + 1);
    return n > 0 ? `${name}_${n}` : name;
  };
  const inputs = model.inputs.map((t, i): IoSpec => ({
    name: unique(inNames?.[i] ?? t.name),
    tfName: t.name,
    datatype: toDatatype(t.dtype),
    shape: dims(t.shape),
    shapeKnown: true,
  }));
  const outputs = model.outputs.map((t, i): IoSpec => ({
    name: unique(outNames?.[i] ?? (t.name.split('/')[0] || t.name)),
    tfName: t.name,
    datatype: toDatatype(t.dtype),
    shape: dims(t.shape),
    shapeKnown: true,
  }));
  return { inputs, outputs, batchable: [...inputs, ...outputs].every((s) => s.shape[0] === -1) };
}

export function graphModelIo(model: tfTypes.GraphModel): ModelIo {
  const conv = (t: tfTypes.GraphModel['inputs'][number], strip: boolean): IoSpec => ({
    name: strip ? t.name.replace(/:0$/, '') : t.name,
    tfName: t.name,
    datatype: toDatatype(t.dtype as TfDtype),
    shape: dims(t.shape),
    shapeKnown: t.shape !== undefined,
  });
  const inputs = model.inputs.map((t) => conv(t, true));
  const outputs = model.outputs.map((t) => conv(t, true));
  return { inputs, outputs, batchable: [...inputs, ...outputs].every((s) => s.shapeKnown && s.shape.length > 0 && s.shape[0] === -1) };
}

export function publicSignature(io: ModelIo): ModelSignature {
  const strip = ({ name, datatype, shape }: IoSpec): TensorSignature => ({ name, datatype, shape: [...shape] });
  return { inputs: io.inputs.map(strip), outputs: io.outputs.map(strip) };
}

const fmt = (shape: readonly number[]): string => `[${shape.join(',')}]`;

/** One request's input, checked and ready to feed. */
export interface CheckedInput {
  spec: IoSpec;
  shape: number[];
  data: Array<number | string | boolean>;
}

/**
 * Checks request tensors against the model inputs (names, dtype, shape with -1 wildcards, element
 * types for the dtype). A model with one input accepts one tensor under any name. The input schema
 * (src/inference/schema.ts) has already checked each tensor on its own: at least one, non-negative
 * integer dimensions, as many elements as the shape says.
 * Throws McpError(MCP_INVALID_INPUT_SHAPE) saying what was expected and what was given.
 */
export function checkInputs(io: ModelIo, tensors: readonly Tensor[]): CheckedInput[] {
  const out: CheckedInput[] = [];
  const used: Tensor[] = [];
  for (const spec of io.inputs) {
    const t =
      tensors.find((x) => x.name === spec.name) ??
      tensors.find((x) => x.name === spec.tfName) ??
      (io.inputs.length === 1 && tensors.length === 1 ? tensors[0] : undefined);
    if (!t) {
      throw new McpError(
        'MCP_INVALID_INPUT_SHAPE',
        `missing input '${spec.name}': expected ${spec.datatype}${fmt(spec.shape)}; given ${tensors.map((x) => `'${x.name}'`).join(', ')}`,
        { details: { input: spec.name } },
      );
    }
    used.push(t);
    // The message is built only when the input is refused: this runs for every request.
    const bad = (why: string): McpError =>
      new McpError(
        'MCP_INVALID_INPUT_SHAPE',
        `input '${spec.name}': expected ${spec.datatype}${spec.shapeKnown ? fmt(spec.shape) : '[any]'}, given ${t.datatype}${fmt(t.shape)} (${why})`,
        { details: { input: spec.name, expected: { datatype: spec.datatype, shape: spec.shape }, given: { datatype: t.datatype, shape: t.shape } } },
      );
    if (t.datatype !== spec.datatype) throw bad('wrong datatype');
    if (spec.shapeKnown) {
      if (t.shape.length !== spec.shape.length) throw bad(`rank ${t.shape.length} instead of ${spec.shape.length}`);
      spec.shape.forEach((d, i) => {
        if (d !== -1 && d !== t.shape[i]) throw bad(`dimension ${i} is ${t.shape[i]} instead of ${d}`);
      });
    }
    const ok =
      spec.datatype === 'BYTES'
        ? t.data.every((v) => typeof v === 'string')
        : spec.datatype === 'BOOL'
          ? t.data.every((v) => typeof v === 'boolean' || v === 0 || v === 1)
          : spec.datatype === 'INT32'
            ? t.data.every((v) => Number.isInteger(v))
            : t.data.every((v) => typeof v === 'number');
    if (!ok) {
      const kind = spec.datatype === 'BYTES' ? 'strings' : spec.datatype === 'BOOL' ? 'booleans' : spec.datatype === 'INT32' ? 'integers' : 'numbers';
      throw bad(`data elements must be ${kind}`);
    }
    out.push({ spec, shape: [...t.shape], data: t.data });
  }
  if (tensors.length > used.length) {
    // A tensor the model has no input for (a misspelt name, or one given twice) is refused, not ignored.
    const extra = tensors.filter((t) => !used.includes(t));
    const names = (list: ReadonlyArray<{ name: string }>) => list.map((x) => `'${x.name}'`).join(', ');
    throw new McpError('MCP_INVALID_INPUT_SHAPE', `the model has no input ${names(extra)} (inputs: ${names(io.inputs)}); each input is given once`, {
      details: { input: extra[0]!.name, expectedInputs: io.inputs.map((s) => s.name) },
    });
  }
  return out;
}

/** Rows (leading dimension) of a checked request for a batchable model; all inputs must agree. */
export function rowsOf(inputs: readonly CheckedInput[]): number {
  const rows = inputs[0]?.shape[0] ?? 1;
  if (rows < 1) throw new McpError('MCP_INVALID_INPUT_SHAPE', `'${inputs[0]!.spec.name}' has ${rows} rows: the batch dimension must be at least 1`);
  for (const i of inputs) {
    if (i.shape[0] !== rows) {
      throw new McpError(
        'MCP_INVALID_INPUT_SHAPE',
        `inputs disagree on the batch dimension: '${inputs[0]!.spec.name}' has ${rows} rows, '${i.spec.name}' has ${i.shape[0]}`,
      );
    }
  }
  return rows;
}

/** Converts downloaded tensor data to a KServe data array. */
export function toDataArray(
  values: tfTypes.TypedArray | Uint8Array[] | ArrayLike<number>,
  datatype: TensorDatatype,
  from = 0,
  to?: number,
): Array<number | string | boolean> {
  const end = to ?? values.length;
  const out = new Array<number | string | boolean>(end - from);
  if (datatype === 'BYTES') {
    const dec = new TextDecoder();
    for (let i = from; i < end; i++) out[i - from] = dec.decode((values as Uint8Array[])[i]);
  } else if (datatype === 'BOOL') {
    for (let i = from; i < end; i++) out[i - from] = (values as ArrayLike<number>)[i] !== 0;
  } else {
    for (let i = from; i < end; i++) out[i - from] = (values as ArrayLike<number>)[i]!;
  }
  return out;
}
