/** Test data for alert rules: a seeded random source and a MetricSource whose series are functions of time. */
import type { MetricPoint, MetricSelector, MetricSeries, MetricSource } from '../../src/monitoring/metric-source.ts';

/** mulberry32: a small seeded PRNG in [0, 1). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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
