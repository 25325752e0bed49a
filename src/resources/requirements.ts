import { z } from 'zod';
import { parseInput } from '../validation.ts';

/** Most memory one instance may ask for (1 TiB): a typo in units is refused, not placed nowhere forever. */
export const MAX_INSTANCE_BYTES = 2 ** 40;

/**
 * What one instance of a model version needs and how the placement reconciler keeps it: the device
 * kind and memory it reserves (omitted: measured at its first load from the worker's report), how
 * many replicas, its priority for eviction, whether its idle instances may be evicted, how long a
 * surplus replica drains, and how a worker loads it (backend, source, options).
 */
export const resourceRequirementsSchema = z.strictObject({
  deviceKind: z.enum(['cpu', 'gpu', 'tpu']).default('cpu'),
  /** Bytes one instance reserves on its device; omitted: measured at the first load. */
  memoryBytes: z.number().int().min(1).max(MAX_INSTANCE_BYTES).optional(),
  /** Bytes measured at the first load (set by the gateway, not by clients). */
  measuredBytes: z.number().int().min(0).max(MAX_INSTANCE_BYTES).optional(),
  replicas: z.number().int().min(0).max(64).default(1),
  /** Higher wins: placing an instance may evict idle instances of strictly lower priority only. */
  priority: z.number().int().min(0).max(1000).default(100),
  /** Whether idle instances of this version may be evicted to make room for higher priorities. */
  evictable: z.boolean().default(true),
  /**
   * How long a replica beyond `replicas` drains (finishes its requests, takes no new ones) before it is unloaded, ms.
   * Stored with the version, so whichever gateway replica holds the placement lease uses it; the `instances`
   * scaling actuator sets it to its policy's drainMs.
   */
  drainMs: z.number().int().min(0).max(600_000).default(10_000),
  /** Backend plugin on the worker (default tfjs). */
  backend: z.string().min(1).max(63).default('tfjs'),
  /** Where the worker's backend finds the model (folder, model.json, URL). */
  source: z.string().min(1).max(2048).optional(),
  options: z.record(z.string().max(63), z.unknown()).default({}),
});

export type ResourceRequirements = z.infer<typeof resourceRequirementsSchema>;

/** What clients state (`measuredBytes` is the gateway's); options at most 16 KiB of JSON. */
export const resourceRequirementsInputSchema = resourceRequirementsSchema
  .omit({ measuredBytes: true })
  .refine((r) => JSON.stringify(r.options).length <= 16_384, { message: 'at most 16 KiB of JSON', path: ['options'] });
export type ResourceRequirementsInput = z.input<typeof resourceRequirementsInputSchema>;

/** Parses client input (MCP_VALIDATION_FAILED naming the path). */
export function parseRequirements(raw: unknown, path = 'input'): ResourceRequirements {
  return parseInput(resourceRequirementsInputSchema, raw, path);
}

/** Bytes one instance reserves: stated, else measured, else 0 (not measured yet: placed where the kind exists). */
export function reservedBytes(r: Pick<ResourceRequirements, 'memoryBytes' | 'measuredBytes'>): number {
  return r.memoryBytes ?? r.measuredBytes ?? 0;
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** "1GiB", "512MiB", "2e9": bytes; undefined when not a size. */
export function parseBytes(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) return undefined;
  const v = Math.round(Number(m[1]) * unit);
  return Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** Bytes as people read them: "1.5 GiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
