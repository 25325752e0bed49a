/**
 * Alert rule definitions (config `alerts.rules` and the GraphQL rule mutations): what a rule
 * watches and when it holds. Every size is bounded (names, labels, windows, rule count).
 */
import { z } from 'zod';

const DAY_MS = 86_400_000;
const name = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'letters, digits, _ . : - (1 to 128)');
const labelName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'a Prometheus label name');
const labelMap = z.record(labelName, z.string().max(256)).refine((m) => Object.keys(m).length <= 16, 'at most 16 labels');
const windowMs = z.number().int().min(1_000).max(DAY_MS);
const op = z.enum(['>', '>=', '<', '<=']);

const common = {
  name,
  /** The metric (a MetricSource name, e.g. `latency_p95_ms`) and the labels its series must carry. */
  metric: z.string().regex(/^[A-Za-z_:][A-Za-z0-9_:]{0,127}$/, 'a metric name'),
  match: labelMap.default({}),
  severity: z.enum(['info', 'warning', 'critical']).default('warning'),
  summary: z.string().max(512).optional(),
  /** Labels added to every alert of the rule. */
  labels: labelMap.default({}),
  /** Series labels one alert stands for (default: all of them, one alert per series); [] folds every series into one alert. */
  groupBy: z.array(labelName).max(16).optional(),
  /** The condition must hold this long (pending) before the alert fires, ms (Prometheus `for`). */
  forMs: z.number().int().min(0).max(DAY_MS).default(0),
};

export const thresholdRuleSchema = z.strictObject({
  ...common,
  kind: z.literal('threshold'),
  op,
  value: z.number(),
  /** The series is reduced over this window (avg, max, min or last). */
  windowMs: windowMs.default(60_000),
  reduce: z.enum(['avg', 'max', 'min', 'last']).default('avg'),
});

export const rateRuleSchema = z.strictObject({
  ...common,
  kind: z.literal('rate'),
  op,
  /** Change per second over the window: (last − first) / window seconds. */
  value: z.number(),
  windowMs: windowMs.default(300_000),
});

export const burnRateRuleSchema = z.strictObject({
  ...common,
  kind: z.literal('burnRate'),
  /** The metric is an error ratio (0..1); the SLO allows 1 − objective of it. */
  objective: z.number().gt(0).lt(1),
  /** Fires when, for any pair, both windows burn the budget faster than `factor` (Google SRE multi-window alerts). */
  windows: z
    .array(z.strictObject({ longMs: windowMs, shortMs: windowMs, factor: z.number().positive().max(10_000) }))
    .min(1)
    .max(4)
    .default([
      { longMs: 3_600_000, shortMs: 300_000, factor: 14.4 },
      { longMs: 21_600_000, shortMs: 1_800_000, factor: 6 },
    ]),
});

export const anomalyRuleSchema = z.strictObject({
  ...common,
  kind: z.literal('anomaly'),
  /** ewma: z-score against an exponentially weighted mean and variance; seasonal: against the same phase of earlier periods. */
  method: z.enum(['ewma', 'seasonal']).default('ewma'),
  /** low | medium | high, or a z-score threshold (higher: fewer alerts). */
  sensitivity: z.union([z.enum(['low', 'medium', 'high']), z.number().min(1).max(20)]).default('medium'),
  direction: z.enum(['up', 'down', 'both']).default('up'),
  /** History the baseline learns from, ms (seasonal: at least one period more than it compares). */
  trainingMs: windowMs.default(3_600_000),
  /** Sampling step of the history, ms. */
  stepMs: z.number().int().min(1_000).max(3_600_000).default(10_000),
  /** ewma: weight of the newest point (0..1). */
  alpha: z.number().gt(0).lt(1).default(0.05),
  /** seasonal: the period (e.g. a day) and how many earlier periods make the baseline. */
  periodMs: z
    .number()
    .int()
    .min(60_000)
    .max(7 * DAY_MS)
    .default(DAY_MS),
  seasons: z.number().int().min(1).max(7).default(1),
  /** Consecutive anomalous points needed (filters single-sample noise). */
  points: z.number().int().min(1).max(60).default(2),
});

export const alertRuleSchema = z
  .discriminatedUnion('kind', [thresholdRuleSchema, rateRuleSchema, burnRateRuleSchema, anomalyRuleSchema])
  .superRefine((r, ctx) => {
    if (r.kind === 'burnRate')
      r.windows.forEach((w, i) => w.shortMs >= w.longMs && ctx.addIssue({ code: 'custom', path: ['windows', i], message: 'shortMs must be below longMs' }));
    if (r.kind === 'anomaly' && r.method === 'seasonal' && r.periodMs * r.seasons + r.trainingMs > 8 * DAY_MS)
      ctx.addIssue({ code: 'custom', path: ['seasons'], message: 'periodMs × seasons + trainingMs must stay within 8 days' });
    if (r.kind === 'anomaly' && r.stepMs * 4 > r.trainingMs)
      ctx.addIssue({ code: 'custom', path: ['trainingMs'], message: 'trainingMs must cover at least 4 steps' });
  });

export type AlertRule = z.infer<typeof alertRuleSchema>;
export type AnomalyRule = z.infer<typeof anomalyRuleSchema>;

/** How often and by whom rules are evaluated (config `alerts.evaluation`). */
export const alertEvaluationSchema = z.strictObject({
  /** Rules are evaluated on the metrics tick, at most this often, ms. */
  intervalMs: z.number().int().min(100).max(3_600_000).default(10_000),
  /** The leader lease lasts this long without renewal, ms; a replica takes over after it lapses. */
  leaseTtlMs: z.number().int().min(1_000).max(300_000).default(15_000),
  /** The leader renews its lease this often, ms (well under leaseTtlMs). */
  leaseRenewMs: z.number().int().min(200).max(100_000).default(5_000),
  /** Firing alerts are sent again this often (Alertmanager resolves an alert not re-sent within its resolve_timeout, 5 min); 0: never. */
  resendFiringMs: z.number().int().min(0).max(DAY_MS).default(60_000),
  /** Most rules (config and GraphQL together). */
  maxRules: z.number().int().min(1).max(10_000).default(2_000),
  /** Most alerts one rule may hold (one per label group); more series are ignored and logged. */
  maxAlertsPerRule: z.number().int().min(1).max(10_000).default(500),
});

export type AlertEvaluationConfig = z.infer<typeof alertEvaluationSchema>;

/** Window over which a rule reads its metric, and the step. */
export function ruleWindow(rule: AlertRule, intervalMs: number): { windowMs: number; stepMs: number } {
  switch (rule.kind) {
    case 'threshold':
    case 'rate':
      return { windowMs: rule.windowMs, stepMs: Math.max(1_000, Math.min(intervalMs, rule.windowMs)) };
    case 'burnRate': {
      const longest = Math.max(...rule.windows.map((w) => w.longMs));
      const shortest = Math.min(...rule.windows.map((w) => w.shortMs));
      // Ten samples across the short window are enough for a mean; the long one then has proportionally more.
      return { windowMs: longest, stepMs: Math.max(1_000, Math.floor(shortest / 10)) };
    }
    case 'anomaly':
      return { windowMs: rule.method === 'seasonal' ? rule.periodMs * rule.seasons + rule.trainingMs : rule.trainingMs, stepMs: rule.stepMs };
  }
}
