/**
 * kpa scaler (Knative Pod Autoscaler style): the desired count follows the average concurrency over
 * a stable window (default 60 s); when the average over the short panic window (default 10% of it)
 * asks for at least `panicThreshold` times the ready instances, it panics: scales up to the panic
 * level at once and does not scale down until a whole stable window has passed without panic.
 * Changes per decision are bounded by the max scale-up and scale-down rates; zero is reached only
 * after `scaleToZeroGracePeriodMs` without any request.
 */
import { z } from 'zod';
import { definePlugin, type Scaler, type ScalingRecommendation, type ScalingSignal } from 'capibara-mcp';
import { sinceCovered, slidingAverages, windowAverage } from 'capibara-mcp/sdk';

export const kpaOptions = z.strictObject({
  /** Concurrent requests per instance to aim for. */
  targetConcurrency: z.number().positive().max(100_000).default(2),
  /** Fraction of the target actually aimed at (headroom for bursts). */
  targetUtilization: z.number().min(0.01).max(1).default(0.7),
  /** Stable window, ms. */
  stableWindowMs: z.number().int().min(1_000).max(3_600_000).default(60_000),
  /** Panic window as a percentage of the stable window. */
  panicWindowPercent: z.number().min(1).max(100).default(10),
  /** Panic when the panic level is at least this times the ready instances (2: 200%). */
  panicThreshold: z.number().min(1).max(100).default(2),
  /** At most this times the ready instances per decision when scaling up. */
  maxScaleUpRate: z.number().min(1).max(10_000).default(1000),
  /** At least ready / this per decision when scaling down. */
  maxScaleDownRate: z.number().min(1).max(10_000).default(2),
  /** Time without any request before the last instance goes (when the policy allows zero), ms. */
  scaleToZeroGracePeriodMs: z.number().int().min(0).max(3_600_000).default(30_000),
});
export type KpaOptions = z.input<typeof kpaOptions>;

export function createKpa(options: KpaOptions = {}): Required<Scaler> {
  const o = kpaOptions.parse(options);
  const perInstance = o.targetConcurrency * o.targetUtilization;
  const panicMs = (o.stableWindowMs * o.panicWindowPercent) / 100;
  const recommend = (signal: ScalingSignal): ScalingRecommendation => {
    const current = signal.currentInstances;
    const latest = signal.samples[signal.samples.length - 1]!;
    const ready = Math.max(1, latest.readyInstances);
    const stable = windowAverage(signal, o.stableWindowMs, (s) => s.ongoing);
    const panic = windowAverage(signal, panicMs, (s) => s.ongoing);
    const stableWant = Math.ceil(stable / perInstance - 1e-9);
    const panicWant = Math.ceil(panic / perInstance - 1e-9);
    // Panic at any moment of the last stable window keeps the scaler in panic mode.
    const panicLevels = slidingAverages(signal.samples, panicMs, (s) => s.ongoing);
    let panicking = false;
    for (let i = signal.samples.length - 1; i >= 0 && signal.samples[i]!.at > signal.now - o.stableWindowMs; i--) {
      const s = signal.samples[i]!;
      if (Math.ceil(panicLevels[i]! / perInstance - 1e-9) / Math.max(1, s.readyInstances) >= o.panicThreshold) {
        panicking = true;
        break;
      }
    }
    const what = `stable ${stable.toFixed(1)} / panic ${panic.toFixed(1)} concurrent, ${perInstance.toFixed(2)} per instance`;
    if (current === 0 && latest.ongoing > 0) return { desired: Math.max(1, panicWant), reason: `demand at zero (${latest.ongoing} waiting)` };
    let desired = panicking ? Math.max(current, panicWant, stableWant) : stableWant;
    desired = Math.min(desired, Math.ceil(o.maxScaleUpRate * ready));
    if (desired < current) desired = Math.max(desired, Math.floor(ready / o.maxScaleDownRate), 0);
    if (desired === 0) {
      const idle = sinceCovered(signal, o.scaleToZeroGracePeriodMs);
      const quiet = idle && signal.samples.slice(idle.from).every((s) => s.ongoing === 0);
      if (!quiet && current > 0) return { desired: 1, reason: `${what}; keeping 1 for the ${o.scaleToZeroGracePeriodMs} ms grace period` };
    }
    return { desired, reason: `${what}${panicking ? '; panic mode' : ''}` };
  };
  return { recommend, desiredInstances: (signal) => recommend(signal).desired };
}

export default definePlugin({
  name: 'kpa',
  kind: 'scaler',
  apiVersion: '^1.0.0',
  description: 'Knative style: stable and panic windows, panic threshold, scale rates, scale-to-zero grace period.',
  options: kpaOptions,
  setup: (_ctx, options) => createKpa(options),
});
