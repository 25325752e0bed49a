import { createHash } from 'node:crypto';
import { canonicalJson } from '../canonical-json.ts';
import type { InferenceInput, InferenceRequest } from '../inference/types.ts';

/**
 * Whether the same input gives the same answer: tensor and embedding models always; text
 * generation only with temperature 0 or a fixed seed (and no sampling asked for through `extra`
 * without a seed). `n`, `best_of` and the like are refused at validation, so one answer per request.
 */
export function isDeterministic(input: InferenceInput): boolean {
  if (input.task === 'tensor' || input.task === 'embed') return true;
  const p = input.parameters ?? {};
  if (p.seed !== undefined) return true;
  if (p.temperature !== 0) return false;
  return input.extra?.do_sample !== true;
}

/** `cache-control` request directives: no-cache (do not answer from the cache), no-store (do not keep the answer either). */
export function cacheControl(headers: InferenceRequest['headers']): { noCache: boolean; noStore: boolean } {
  const raw = headers?.['cache-control'];
  if (raw === undefined) return { noCache: false, noStore: false };
  const v = (Array.isArray(raw) ? raw.join(',') : raw).toLowerCase();
  const directives = new Set(v.split(',').map((d) => d.trim()));
  const noStore = directives.has('no-store');
  return { noCache: noStore || directives.has('no-cache') || directives.has('max-age=0'), noStore };
}

export interface KeyParts {
  model: string;
  /** The version that will answer (pinned, or the default one). */
  version: string;
  /** The version's instances as stored (ids, creation and last change): any change to them gives new keys. */
  generation: string;
  /** Who may share the answer: '' (everyone allowed to call the model), `t:<tenant>` or `p:<principal>`. */
  scope: string;
  stream: boolean;
  input: InferenceInput;
}

/**
 * `<model>:<sha256 hex>` of the canonical JSON of every part. SHA-256, not the SDK's 32-bit routing
 * hash: a collision would hand one request another's answer.
 */
export function cacheKey(k: KeyParts): string {
  const text = canonicalJson([k.model, k.version, k.generation, k.scope, k.stream, k.input]);
  return `${k.model}:${createHash('sha256').update(text).digest('hex')}`;
}
