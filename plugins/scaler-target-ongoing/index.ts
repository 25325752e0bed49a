/**
 * target-ongoing scaler (Ray Serve style): keeps the average number of ongoing requests (in flight
 * plus waiting) per instance near a target. The average is taken over a look-back window; a new
 * level is applied only once every look-back average over the upscale (downscale) delay asked for
 * more (fewer) instances, so a short burst or lull changes nothing. From zero, demand starts one
 * instance at once.
 */
import { z } from 'zod';
import { definePlugin, type Scaler, type ScalingRecommendation, type ScalingSignal } from 'capibara-mcp';
import { sinceCovered, slidingAverages } from 'capibara-mcp/sdk';

export const targetOngoingOptions = z.strictObject({
  /** Ongoing requests per instance to aim for. */
  targetOngoingRequests: z.number().positive().max(100_000).default(2),
  /** Look-back window of the average, ms. */
  lookbackMs: z.number().int().min(0).max(3_600_000).default(30_000),
  /** How long more instances must have been asked for before scaling up, ms. */
  upscaleDelayMs: z.number().int().min(0).max(3_600_000).default(30_000),
  /** How long fewer instances must have been asked for before scaling down, ms. */
  downscaleDelayMs: z.number().int().min(0).max(3_600_000).default(600_000),
  /** Fraction of the gap to the computed level taken per decision when scaling up (1: all of it). */
  upscalingFactor: z.number().positive().max(10).default(1),
  /** Fraction of the gap taken per decision when scaling down. */
  downscalingFactor: z.number().positive().max(10).default(1),
});
export type TargetOngoingOptions = z.input<typeof targetOngoingOptions>;

export function createTargetOngoing(options: TargetOngoingOptions = {}): Required<Scaler> {
  const o = targetOngoingOptions.parse(options);
  const recommend = (signal: ScalingSignal): ScalingRecommendation => {
    const current = signal.currentInstances;
    const levels = slidingAverages(signal.samples, o.lookbackMs, (s) => s.ongoing).map((avg) => Math.ceil(avg / o.targetOngoingRequests - 1e-9));
    const now = levels[levels.length - 1] ?? 0;
    const avg = `ongoing ${(now * o.targetOngoingRequests).toFixed(1)} ≈ ${now} × target ${o.targetOngoingRequests}`;
    const latest = signal.samples[signal.samples.length - 1];
    if (current === 0 && latest && latest.ongoing > 0) return { desired: Math.max(1, now), reason: `demand at zero (${latest.ongoing} waiting)` };
    const sustained = (delayMs: number, above: boolean): number | undefined => {
      const span = sinceCovered(signal, delayMs);
      if (!span) return undefined;
      const window = levels.slice(span.from);
      if (!window.every((l) => (above ? l > current : l < current))) return undefined;
      return above ? Math.min(...window) : Math.max(...window);
    };
    const up = sustained(o.upscaleDelayMs, true);
    if (up !== undefined) {
      const desired = Math.max(current + 1, Math.ceil(current + o.upscalingFactor * (up - current)));
      return { desired: Math.min(desired, up), reason: `${avg}; above ${current} for ${o.upscaleDelayMs} ms` };
    }
    const down = sustained(o.downscaleDelayMs, false);
    if (down !== undefined) {
      const desired = Math.min(current - 1, Math.floor(current - o.downscalingFactor * (current - down)));
      return { desired: Math.max(desired, down), reason: `${avg}; below ${current} for ${o.downscaleDelayMs} ms` };
    }
    return { desired: current, reason: `${avg}; holding ${current}` };
  };
  return { recommend, desiredInstances: (signal) => recommend(signal).desired };
}

export default definePlugin({
  name: 'target-ongoing',
  kind: 'scaler',
  apiVersion: '^1.0.0',
  description: 'Ray Serve style: target ongoing requests per instance, look-back window, upscale and downscale delays.',
  options: targetOngoingOptions,
  setup: (_ctx, options) => createTargetOngoing(options),
});
