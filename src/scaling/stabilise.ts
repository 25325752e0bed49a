/**
 * The host's guard against flapping, the same for every scaler: the recommendation is bounded to
 * [min, max]; a scale-up applies the lowest bounded recommendation seen over the scale-up window, a
 * scale-down the highest over the scale-down window (Kubernetes HPA style); a change opposite to the
 * last one waits out the reverse cooldown. Demand at zero and counts outside the bounds are applied
 * at once.
 */
import type { ScalingPolicy } from './policy.ts';

export interface Recommendation {
  at: number;
  desired: number;
}

export interface Stabilised {
  desired: number;
  /** Why it differs from the recommendation, when it does. */
  note?: string;
}

export function stabilise(
  policy: Pick<ScalingPolicy, 'minInstances' | 'maxInstances' | 'scaleToZero' | 'scaleUpStabilizationMs' | 'scaleDownStabilizationMs' | 'reverseCooldownMs'>,
  current: number,
  recommendations: readonly Recommendation[],
  lastChange: { at: number; direction: 1 | -1 } | undefined,
  now: number,
): Stabilised {
  const min = policy.scaleToZero ? policy.minInstances : Math.max(1, policy.minInstances);
  const bound = (d: number) => Math.min(policy.maxInstances, Math.max(min, d));
  const latest = recommendations[recommendations.length - 1];
  if (!latest) return { desired: bound(current) };
  const want = bound(latest.desired);
  if (current < min || current > policy.maxInstances) return { desired: bound(current), note: `bounds [${min}, ${policy.maxInstances}]` };
  if (want === current) return { desired: current, ...(want !== latest.desired ? { note: `bounds [${min}, ${policy.maxInstances}]` } : {}) };
  const direction = want > current ? 1 : -1;
  if (current === 0 && want > 0) return { desired: want, note: 'scale from zero' };
  const windowMs = direction === 1 ? policy.scaleUpStabilizationMs : policy.scaleDownStabilizationMs;
  const inWindow = recommendations.filter((r) => r.at >= now - windowMs).map((r) => bound(r.desired));
  const stable = direction === 1 ? Math.min(...inWindow) : Math.max(...inWindow);
  if (direction === 1 ? stable <= current : stable >= current)
    return { desired: current, note: `held by the ${windowMs} ms ${direction === 1 ? 'scale-up' : 'scale-down'} window` };
  if (lastChange && lastChange.direction !== direction && now - lastChange.at < policy.reverseCooldownMs) {
    return { desired: current, note: `reverse cooldown (${policy.reverseCooldownMs} ms since the last change)` };
  }
  return { desired: stable, ...(stable !== latest.desired ? { note: `stabilised from ${latest.desired}` } : {}) };
}
