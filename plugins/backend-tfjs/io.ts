/**
 * Reading and writing TensorFlow.js model folders (model.json + weight shards) without
 * tfjs-node: from a folder path, a `file://` URL or an `http(s)://` URL.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as tfTypes from '@tensorflow/tfjs';
import { McpError } from 'capibara-mcp';
import { UpstreamClient } from 'capibara-mcp/sdk';

type ModelArtifacts = tfTypes.io.ModelArtifacts;
type WeightsManifestEntry = tfTypes.io.WeightsManifestEntry;

export type ModelFormat = 'layers' | 'graph';

export interface ModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  modelTopology?: unknown;
  weightsManifest?: Array<{ paths: string[]; weights: WeightsManifestEntry[] }>;
  signature?: unknown;
  userDefinedMetadata?: Record<string, unknown>;
  modelInitializer?: unknown;
  trainingConfig?: unknown;
}

export interface LoadedModelFiles {
  /** Everything tf.io.fromMemory needs. */
  artifacts: ModelArtifacts;
  format: ModelFormat;
  /** URL of the folder holding model.json (ends with `/`). */
  baseUrl: URL;
  /** Reads a file next to model.json; undefined when it does not exist. */
  readSidecar(name: string): Promise<string | undefined>;
}

/** Turns an endpoint (folder, path to model.json, file:// or http(s):// URL) into the URL of model.json. */
export function modelJsonUrl(endpoint: string): URL {
  let url: URL;
  if (/^(file|https?):\/\//i.test(endpoint)) url = new URL(endpoint);
  else url = pathToFileURL(resolvePath(endpoint));
  if (!url.pathname.endsWith('.json')) {
    if (!url.pathname.endsWith('/')) url.pathname += '/';
    url = new URL('model.json', url);
  }
  return url;
}

let defaultClient: UpstreamClient | undefined;

/**
 * Reads a file: local for `file:` URLs, else through `http` (an UpstreamClient, so the gateway's
 * address policy applies to every connection). Files named by model.json (weight shards, sidecars)
 * must stay on model.json's own origin: a model.json cannot point the gateway at a local file or
 * another host.
 */
async function fetchBytes(url: URL, base: URL, http: UpstreamClient | undefined, signal?: AbortSignal): Promise<Uint8Array> {
  if (url.protocol !== base.protocol || (url.protocol !== 'file:' && url.origin !== base.origin)) {
    throw new Error('files named by model.json must be on the same origin as model.json');
  }
  if (url.protocol === 'file:') return new Uint8Array(await readFile(fileURLToPath(url), signal ? { signal } : {}));
  const client = http ?? (defaultClient ??= new UpstreamClient());
  const res = await client.open({ url, ...(signal ? { signal } : {}) });
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body) chunks.push(chunk);
  return new Uint8Array(Buffer.concat(chunks));
}

/** Detects the format from model.json's `format` field, falling back to the shape of `modelTopology`. */
export function detectFormat(json: ModelJson): ModelFormat {
  const f = (json.format ?? '').toLowerCase();
  if (f.includes('graph')) return 'graph';
  if (f.includes('layers')) return 'layers';
  const topo = json.modelTopology as Record<string, unknown> | undefined;
  if (topo && (Array.isArray(topo.node) || 'versions' in topo)) return 'graph';
  if (topo && ('class_name' in topo || 'model_config' in topo || 'config' in topo)) return 'layers';
  throw new Error('model.json has neither a known `format` nor a recognisable `modelTopology`');
}

/** Reads model.json and all its weight shards; errors are McpError(MCP_BAD_REQUEST) naming the file. */
export async function loadModelFiles(endpoint: string, signal?: AbortSignal, http?: UpstreamClient): Promise<LoadedModelFiles> {
  const jsonUrl = modelJsonUrl(endpoint);
  const baseUrl = new URL('./', jsonUrl);
  let json: ModelJson;
  try {
    json = JSON.parse(new TextDecoder().decode(await fetchBytes(jsonUrl, jsonUrl, http, signal))) as ModelJson;
  } catch (err) {
    throw new McpError('MCP_BAD_REQUEST', `cannot read TensorFlow.js model.json at ${jsonUrl.href}: ${(err as Error).message}`, { cause: err });
  }
  let format: ModelFormat;
  try {
    format = detectFormat(json);
  } catch (err) {
    throw new McpError('MCP_BAD_REQUEST', `${jsonUrl.href}: ${(err as Error).message}`);
  }
  const weightSpecs: WeightsManifestEntry[] = [];
  const buffers: Uint8Array[] = [];
  for (const group of json.weightsManifest ?? []) {
    weightSpecs.push(...group.weights);
    for (const p of group.paths) {
      const shardUrl = new URL(p, baseUrl);
      try {
        buffers.push(await fetchBytes(shardUrl, jsonUrl, http, signal));
      } catch (err) {
        throw new McpError('MCP_BAD_REQUEST', `cannot read weight shard ${shardUrl.href}: ${(err as Error).message}`, { cause: err });
      }
    }
  }
  const total = buffers.reduce((n, b) => n + b.byteLength, 0);
  const weightData = new Uint8Array(total);
  let off = 0;
  for (const b of buffers) {
    weightData.set(b, off);
    off += b.byteLength;
  }

  const artifacts: ModelArtifacts = {
    modelTopology: json.modelTopology as ModelArtifacts['modelTopology'],
    weightSpecs,
    weightData: weightData.buffer,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
  };
  if (json.signature !== undefined) artifacts.signature = json.signature as object;
  if (json.userDefinedMetadata !== undefined) artifacts.userDefinedMetadata = json.userDefinedMetadata as Record<string, object>;
  if (json.modelInitializer !== undefined) artifacts.modelInitializer = json.modelInitializer as object;
  if (json.trainingConfig !== undefined) artifacts.trainingConfig = json.trainingConfig as ModelArtifacts['trainingConfig'];

  return {
    artifacts,
    format,
    baseUrl,
    async readSidecar(name: string) {
      try {
        return new TextDecoder().decode(await fetchBytes(new URL(name, baseUrl), jsonUrl, http, signal));
      } catch {
        return undefined;
      }
    },
  };
}

function concatWeightData(data: ArrayBuffer | ArrayBuffer[] | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  if (!Array.isArray(data)) return new Uint8Array(data);
  const total = data.reduce((n, b) => n + b.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const b of data) {
    out.set(new Uint8Array(b), off);
    off += b.byteLength;
  }
  return out;
}

/**
 * An IOHandler that saves a model to a folder (model.json + weights.bin), for
 * `model.save(fileSaveHandler(dir))` in Node without tfjs-node.
 */
export function fileSaveHandler(dir: string, weightsFile = 'weights.bin'): tfTypes.io.IOHandler {
  return {
    async save(artifacts: ModelArtifacts): Promise<tfTypes.io.SaveResult> {
      await mkdir(dir, { recursive: true });
      const weights = concatWeightData(artifacts.weightData as ArrayBuffer | ArrayBuffer[] | undefined);
      const json: ModelJson = {
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [weightsFile], weights: artifacts.weightSpecs ?? [] }],
      };
      if (artifacts.signature) json.signature = artifacts.signature;
      if (artifacts.userDefinedMetadata) json.userDefinedMetadata = artifacts.userDefinedMetadata;
      if (artifacts.trainingConfig) json.trainingConfig = artifacts.trainingConfig;
      const jsonText = JSON.stringify(json);
      await writeFile(join(dir, 'model.json'), jsonText);
      await writeFile(join(dir, weightsFile), weights);
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          modelTopologyBytes: JSON.stringify(artifacts.modelTopology ?? null).length,
          weightSpecsBytes: JSON.stringify(artifacts.weightSpecs ?? []).length,
          weightDataBytes: weights.byteLength,
        },
      };
    },
  };
}
