/**
 * Anomaly scores for one series: how far its newest points stand from what its history predicts,
 * in standard deviations. Two baselines: an EWMA mean and variance (adapts to slow drift), and a
 * seasonal one (the same phase of earlier periods, e.g. yesterday at this time).
 */
import type { MetricPoint } from '../monitoring/metric-source.ts';
import type { AnomalyRule } from './rules.ts';

/** z-score threshold per named sensitivity (measured on a synthetic day: test/alerts/anomaly.test.ts). */
export const SENSITIVITY_Z = { low: 6, medium: 4.5, high: 3 } as const;

export function zThreshold(sensitivity: AnomalyRule['sensitivity']): number {
  return typeof sensitivity === 'number' ? sensitivity : SENSITIVITY_Z[sensitivity];
}

/** Lower bound on the spread so a flat history does not make every wiggle infinite. */
function floorSd(sd: number, level: number): number {
  return Math.max(sd, 1e-3 * Math.max(1, Math.abs(level)));
}

/** z-scores of the last `points` values against an EWMA of the values before them; [] with too little history. */
export function ewmaScores(values: readonly number[], points: number, alpha: number): number[] {
  const n = values.length - points;
  if (n < 4) return [];
  let mean = values[0]!;
  let variance = 0;
  for (let i = 1; i < n; i++) {
    const diff = values[i]! - mean;
    const incr = alpha * diff;
    mean += incr;
    variance = (1 - alpha) * (variance + diff * incr);
  }
  const sd = floorSd(Math.sqrt(variance), mean);
  const out: number[] = [];
  for (let i = n; i < values.length; i++) out.push((values[i]! - mean) / sd);
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * z-scores of the last `points` values against the seasonal baseline: the median of the values one,
 * two, … `seasons` periods earlier; residuals are scaled by their robust spread (MAD) over the
 * training span before them. [] with too little history.
 */
export function seasonalScores(series: readonly MetricPoint[], rule: Pick<AnomalyRule, 'points' | 'periodMs' | 'seasons' | 'stepMs' | 'trainingMs'>): number[] {
  const slot = (at: number) => Math.round(at / rule.stepMs);
  const bySlot = new Map<number, number>();
  for (const p of series) bySlot.set(slot(p.at), p.value);
  const periodSlots = Math.round(rule.periodMs / rule.stepMs);
  const residual = (p: MetricPoint): number | undefined => {
    const earlier: number[] = [];
    for (let k = 1; k <= rule.seasons; k++) {
      const v = bySlot.get(slot(p.at) - k * periodSlots);
      if (v !== undefined) earlier.push(v);
    }
    return earlier.length === 0 ? undefined : p.value - median(earlier);
  };
  const last = series.slice(-rule.points);
  const trainingStart = (last[0]?.at ?? 0) - rule.trainingMs;
  const train: number[] = [];
  for (const p of series.slice(0, series.length - rule.points)) {
    if (p.at < trainingStart) continue;
    const r = residual(p);
    if (r !== undefined) train.push(r);
  }
  if (train.length < 4 || last.length < rule.points) return [];
  const center = median(train);
  const mad = median(train.map((r) => Math.abs(r - center))) * 1.4826;
  const sd = floorSd(mad, median(series.map((p) => p.value)));
  const out: number[] = [];
  for (const p of last) {
    const r = residual(p);
    if (r === undefined) return [];
    out.push((r - center) / sd);
  }
  return out;
}

/** Whether the newest points are anomalous by the rule, and the score of the newest one. */
export function anomalyVerdict(series: readonly MetricPoint[], rule: AnomalyRule): { active: boolean; score: number | undefined } {
  const scores =
    rule.method === 'seasonal'
      ? seasonalScores(series, rule)
      : ewmaScores(
          series.map((p) => p.value),
          rule.points,
          rule.alpha,
        );
  if (scores.length < rule.points) return { active: false, score: undefined };
  const z = zThreshold(rule.sensitivity);
  const beyond = (s: number) => (rule.direction === 'up' ? s > z : rule.direction === 'down' ? s < -z : Math.abs(s) > z);
  return { active: scores.every(beyond), score: scores[scores.length - 1] };
}
