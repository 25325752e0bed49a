/** Test data for alert rules: a seeded random source and a MetricSource whose series are functions of time. */
import { mulberry32 } from '../../src/sdk/random.ts';
import type { MetricPoint, MetricSelector, MetricSeries, MetricSource } from '../../src/monitoring/metric-source.ts';

/** A seeded PRNG in [0, 1) (the SDK's mulberry32). */
export const seeded = mulberry32;

/** Standard normal draws (Box–Muller). */
export function gaussian(random: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

export interface FunctionSeries {
  metric: string;
  labels: Record<string, string>;
  /** The value at time `at` (ms). */
  value(at: number): number;
}

/**
 * A MetricSource over series given as functions of time: `range` samples them at step boundaries,
 * and it ticks every `tickMs` (when started) with the current time. `now` may be moved by hand.
 */
export class FunctionMetricSource implements MetricSource {
  private readonly listeners = new Set<(at: number) => void>();
  private timer: NodeJS.Timeout | undefined;
  now: () => number = () => Date.now();

  constructor(readonly series: FunctionSeries[]) {}

  names(): readonly string[] {
    return [...new Set(this.series.map((s) => s.metric))];
  }

  range(sel: MetricSelector, windowMs: number, stepMs: number): MetricSeries[] {
    const end = Math.floor(this.now() / stepMs) * stepMs;
    const out: MetricSeries[] = [];
    for (const s of this.series) {
      if (s.metric !== sel.metric) continue;
      if (sel.labels && Object.entries(sel.labels).some(([k, v]) => s.labels[k] !== v)) continue;
      const points: MetricPoint[] = [];
      for (let at = end - Math.floor(windowMs / stepMs) * stepMs; at <= end; at += stepMs) points.push({ at, value: s.value(at) });
      out.push({ metric: s.metric, labels: s.labels, points });
    }
    return out;
  }

  onTick(listener: (at: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  tick(at = this.now()): void {
    for (const l of this.listeners) l(at);
  }

  start(tickMs: number): void {
    this.timer = setInterval(() => this.tick(), tickMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
