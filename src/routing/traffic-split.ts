/**
 * Weighted traffic split between variants of a model (A/B tests, canaries).
 *
 * - Eligible: `ready` and weight > 0 (finite). Weights are renormalised among the eligible
 *   ones, so a canary that is not ready never gets traffic (KServe sends to not-ready
 *   canaries) and its share goes to the others in proportion.
 * - Sticky: with a key, u = hashToUnit(key) ∈ [0,1) picks along the cumulative weights in
 *   the order given: the same key gets the same variant as long as the eligible weights
 *   are the same. Growing the *last* variant's weight (the usual canary ramp, canary
 *   listed last) only moves keys into it: keys already on the canary stay there.
 * - No key (undefined or ''): random (`random`, default Math.random).
 * - No eligible variant: undefined (the caller falls back to the default version).
 */
import { hashToUnit } from '../sdk/hash.ts';

export interface Variant {
  name: string;
  weight: number;
  ready: boolean;
}

/** Seed so split stickiness is independent of other hashes of the same key (e.g. consistent-hash). */
const SPLIT_SEED = 0x51e7;

function eligibleWeight(v: Variant): number {
  return v.ready && v.weight > 0 && v.weight < Infinity ? v.weight : 0;
}

/** The chosen variant object, or undefined when none is eligible. */
export function pickVariant<V extends Variant>(variants: readonly V[], stickyKey?: string, random: () => number = Math.random): V | undefined {
  let total = 0;
  let last: V | undefined;
  for (const v of variants) {
    const w = eligibleWeight(v);
    if (w > 0) {
      total += w;
      last = v;
    }
  }
  if (last === undefined || !(total < Infinity)) return last;
  const u = stickyKey === undefined || stickyKey === '' ? random() : hashToUnit(stickyKey, SPLIT_SEED);
  let r = u * total;
  for (const v of variants) {
    const w = eligibleWeight(v);
    if (w === 0) continue;
    if (r < w) return v;
    r -= w;
  }
  return last; // rounding at the top end
}

/** The chosen variant's name, or undefined when none is eligible. */
export function chooseVariant(variants: readonly Variant[], stickyKey?: string, random: () => number = Math.random): string | undefined {
  return pickVariant(variants, stickyKey, random)?.name;
}
