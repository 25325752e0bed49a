/** One rule over the series its metric has now: which label groups hold the condition, with their value. */
import type { MetricPoint, MetricSeries } from '../monitoring/metric-source.ts';
import { anomalyVerdict } from './anomaly.ts';
import type { AlertRule } from './rules.ts';

export interface GroupVerdict {
  labels: Record<string, string>;
  active: boolean;
  value: number | undefined;
}

function compare(op: '>' | '>=' | '<' | '<=', a: number, b: number): boolean {
  return op === '>' ? a > b : op === '>=' ? a >= b : op === '<' ? a < b : a <= b;
}

function finite(points: readonly MetricPoint[]): number[] {
  const out: number[] = [];
  for (const p of points) if (Number.isFinite(p.value)) out.push(p.value);
  return out;
}

function avg(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Mean of the finite values at or after `since` (points are in time order), scanning back from the newest. */
function avgSince(points: readonly MetricPoint[], since: number): number | undefined {
  let sum = 0;
  let n = 0;
  for (let i = points.length - 1; i >= 0 && points[i]!.at >= since; i--) {
    const v = points[i]!.value;
    if (Number.isFinite(v)) {
      sum += v;
      n++;
    }
  }
  return n === 0 ? undefined : sum / n;
}

/** The rule over one series: whether it holds and the value shown with the alert. */
export function evaluateSeries(rule: AlertRule, points: readonly MetricPoint[], now: number): { active: boolean; value: number | undefined } {
  switch (rule.kind) {
    case 'threshold': {
      const xs = finite(points);
      if (xs.length === 0) return { active: false, value: undefined };
      const v = rule.reduce === 'avg' ? avg(xs) : rule.reduce === 'max' ? Math.max(...xs) : rule.reduce === 'min' ? Math.min(...xs) : xs[xs.length - 1]!;
      return { active: compare(rule.op, v, rule.value), value: v };
    }
    case 'rate': {
      const ps = points.filter((p) => Number.isFinite(p.value));
      if (ps.length < 2) return { active: false, value: undefined };
      const first = ps[0]!;
      const last = ps[ps.length - 1]!;
      const seconds = (last.at - first.at) / 1000;
      if (seconds <= 0) return { active: false, value: undefined };
      const v = (last.value - first.value) / seconds;
      return { active: compare(rule.op, v, rule.value), value: v };
    }
    case 'burnRate': {
      const budget = 1 - rule.objective;
      let active = false;
      let shown: number | undefined;
      for (const w of rule.windows) {
        const long = avgSince(points, now - w.longMs);
        const short = avgSince(points, now - w.shortMs);
        if (long === undefined || short === undefined) continue;
        const burn = Math.min(long, short) / budget;
        shown = Math.max(shown ?? 0, burn);
        if (long / budget > w.factor && short / budget > w.factor) active = true;
      }
      return { active, value: shown };
    }
    case 'anomaly': {
      const { active, score } = anomalyVerdict(points, rule);
      return { active, value: score };
    }
  }
}

function groupLabels(labels: Readonly<Record<string, string>>, groupBy: readonly string[] | undefined): Record<string, string> {
  if (!groupBy) return { ...labels };
  const out: Record<string, string> = {};
  for (const k of groupBy) if (labels[k] !== undefined) out[k] = labels[k]!;
  return out;
}

/** A stable key for a label set. */
export function labelKey(labels: Readonly<Record<string, string>>): string {
  return JSON.stringify(
    Object.keys(labels)
      .sort()
      .map((k) => [k, labels[k]]),
  );
}

/**
 * Every label group of the rule: a group holds when any of its series does; its value is the one
 * furthest past the condition (the largest for >, >= and anomalies, the smallest for <, <=).
 */
export function evaluateRule(rule: AlertRule, series: readonly MetricSeries[], now: number): GroupVerdict[] {
  const groups = new Map<string, GroupVerdict>();
  const lowIsWorse = (rule.kind === 'threshold' || rule.kind === 'rate') && (rule.op === '<' || rule.op === '<=');
  for (const s of series) {
    const labels = groupLabels(s.labels, rule.groupBy);
    const key = labelKey(labels);
    const v = evaluateSeries(rule, s.points, now);
    const g = groups.get(key);
    if (!g) {
      groups.set(key, { labels, active: v.active, value: v.value });
      continue;
    }
    if (v.value !== undefined && (g.value === undefined || (lowIsWorse ? v.value < g.value : v.value > g.value))) g.value = v.value;
    g.active ||= v.active;
  }
  return [...groups.values()];
}
