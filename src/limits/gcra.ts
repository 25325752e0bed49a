/**
 * GCRA (generic cell rate algorithm): a token bucket kept as one number per key, the theoretical
 * arrival time `tat` (ms). The bucket is empty of spending (full of allowance) when `tat <= now`;
 * spending `cost` units moves `tat` forward by `cost * intervalMs`; a spend fits when the new `tat`
 * is at most `burst * intervalMs` ahead of now. In any window of length W this allows at most
 * `burst + W / intervalMs` units, and never refuses a stream that stays under the rate.
 *
 * The in-memory store runs this code; the Redis store runs the same steps in Lua (plugins/ratelimit-redis).
 */
import type { RateLimitCharge, RateLimitDecision } from '../plugin/contract.ts';

/**
 * Float slack, ms, so that a spend landing exactly on the limit is not refused by rounding: epoch
 * milliseconds near 1.7e12 carry about 2.4e-4 ms of precision (the Redis store keeps 1e-3 ms).
 */
const EPSILON = 2e-3;

export interface GcraStep {
  decision: RateLimitDecision;
  /** The key's new `tat` (unchanged when refused). */
  tat: number;
}

/** Would `charge` fit given the key's `tat` (undefined: never used) at `now`? Pure: the caller stores `tat` when allowed. */
export function gcraSpend(tat: number | undefined, now: number, charge: RateLimitCharge): GcraStep {
  const { cost, intervalMs, burst } = charge;
  const tolerance = burst * intervalMs;
  const base = tat === undefined || tat < now ? now : tat;
  const next = base + cost * intervalMs;
  if (next - now <= tolerance + EPSILON) {
    return { tat: next, decision: { allowed: true, remaining: remainingOf(tolerance - (next - now), intervalMs), retryAfterMs: 0, resetMs: next - now } };
  }
  return {
    tat: base,
    decision: { allowed: false, remaining: remainingOf(tolerance - (base - now), intervalMs), retryAfterMs: next - now - tolerance, resetMs: base - now },
  };
}

/** The key's `tat` after an unchecked charge (cost > 0) or refund (cost < 0, never below an empty bucket). */
export function gcraAdjust(tat: number | undefined, now: number, charge: RateLimitCharge): number {
  const base = tat === undefined || tat < now ? now : tat;
  return Math.max(now, base + charge.cost * charge.intervalMs);
}

function remainingOf(room: number, intervalMs: number): number {
  return Math.max(0, Math.floor((room + EPSILON) / intervalMs));
}
