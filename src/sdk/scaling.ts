/**
 * Window arithmetic over a scaling signal's samples, for scaler plugins: averages over a look-back
 * window, the same average as seen at every sample (to tell whether a level was sustained for a delay),
 * and whether the history covers a period at all.
 */
import type { ScalingSample, ScalingSignal } from '../plugin/contract.ts';

/** Mean of `pick` over the samples taken in (now - windowMs, now]; 0 when none has a value. */
export function windowAverage(signal: ScalingSignal, windowMs: number, pick: (s: ScalingSample) => number | undefined): number {
  let sum = 0;
  let n = 0;
  for (let i = signal.samples.length - 1; i >= 0; i--) {
    const s = signal.samples[i]!;
    if (s.at <= signal.now - windowMs) break;
    const v = pick(s);
    if (v === undefined || !Number.isFinite(v)) continue;
    sum += v;
    n++;
  }
  return n ? sum / n : 0;
}

/**
 * For every sample, the mean of `pick` over the samples in (its time - windowMs, its time]: what a
 * look-back average said at each moment of the history. Linear in the number of samples.
 */
export function slidingAverages(samples: readonly ScalingSample[], windowMs: number, pick: (s: ScalingSample) => number): number[] {
  const out: number[] = [];
  let start = 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) {
    sum += pick(samples[i]!);
    while (samples[start]!.at <= samples[i]!.at - windowMs && start < i) sum -= pick(samples[start++]!);
    out.push(sum / (i - start + 1));
  }
  return out;
}

/** Indexes of the samples taken in [now - periodMs, now], or undefined when the history does not reach back that far. */
export function sinceCovered(signal: ScalingSignal, periodMs: number): { from: number } | undefined {
  const first = signal.samples[0];
  if (!first || first.at > signal.now - periodMs) return undefined;
  let from = signal.samples.length - 1;
  while (from > 0 && signal.samples[from - 1]!.at >= signal.now - periodMs) from--;
  return { from };
}
