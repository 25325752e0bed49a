/**
 * slo scaler: keeps a latency objective — the p95 time requests wait for an instance (`queueWait`),
 * time to first token (`ttft`) or whole-request latency (`latency`) — under `targetMs`. Over it, the
 * count grows in proportion to the overshoot (bounded by `maxGrowth` per decision); well under it
 * (below `scaleDownBelow` × target for the whole downscale delay, nothing waiting) one instance goes
 * at a time; the last one only after the delay without any request.
 */
import { z } from 'zod';
import { definePlugin, type Scaler, type ScalingRecommendation, type ScalingSample, type ScalingSignal } from 'capibara-mcp';
import { sinceCovered, windowAverage } from 'capibara-mcp/sdk';

export const sloOptions = z.strictObject({
  /** Which figure the objective is on. */
  metric: z.enum(['queueWait', 'ttft', 'latency']).default('queueWait'),
  /** The objective, ms. */
  targetMs: z.number().positive().max(3_600_000).default(500),
  /** Window the observed figure is averaged over, ms. */
  windowMs: z.number().int().min(0).max(3_600_000).default(10_000),
  /** Scale down only while the figure stays below this fraction of the target. */
  scaleDownBelow: z.number().min(0).max(1).default(0.5),
  /** How long it must stay there before one instance goes, ms. */
  downscaleDelayMs: z.number().int().min(0).max(3_600_000).default(120_000),
  /** Largest growth factor per decision (2: at most double). */
  maxGrowth: z.number().min(1).max(100).default(2),
});
export type SloOptions = z.input<typeof sloOptions>;

export function createSlo(options: SloOptions = {}): Required<Scaler> {
  const o = sloOptions.parse(options);
  const figure = (s: ScalingSample): number | undefined => (o.metric === 'queueWait' ? s.queueWaitMs : o.metric === 'ttft' ? s.ttftMs : s.p95LatencyMs);
  const recommend = (signal: ScalingSignal): ScalingRecommendation => {
    const current = signal.currentInstances;
    const latest = signal.samples[signal.samples.length - 1]!;
    const observed = windowAverage(signal, o.windowMs, figure);
    const what = `${o.metric} p95 ${observed.toFixed(0)} ms vs target ${o.targetMs} ms`;
    if (current === 0) {
      return latest.ongoing > 0 ? { desired: 1, reason: `demand at zero (${latest.ongoing} waiting)` } : { desired: 0, reason: `${what}; idle at zero` };
    }
    if (observed > o.targetMs) {
      const desired = Math.max(current + 1, Math.min(Math.ceil(current * (observed / o.targetMs)), Math.ceil(current * o.maxGrowth)));
      return { desired, reason: `${what}; over the objective` };
    }
    const span = sinceCovered(signal, o.downscaleDelayMs);
    const window = span ? signal.samples.slice(span.from) : [];
    const calm = span !== undefined && window.every((s) => (figure(s) ?? 0) < o.targetMs * o.scaleDownBelow && s.queueDepth === 0);
    if (calm && (current > 1 || window.every((s) => s.ongoing === 0))) {
      return { desired: current - 1, reason: `${what}; under ${o.scaleDownBelow} × target for ${o.downscaleDelayMs} ms` };
    }
    return { desired: current, reason: `${what}; holding ${current}` };
  };
  return { recommend, desiredInstances: (signal) => recommend(signal).desired };
}

export default definePlugin({
  name: 'slo',
  kind: 'scaler',
  apiVersion: '^1.0.0',
  description: 'Keeps the p95 queue wait, time to first token or latency under a target.',
  options: sloOptions,
  setup: (_ctx, options) => createSlo(options),
});
