import { McpError } from '../errors.ts';
import type { MetricSeries } from '../monitoring/metric-source.ts';
import { aggregationOf, HISTORY_METRIC_NAMES, HISTORY_METRICS, replicasOf, type SeriesFilter } from '../monitoring/history/catalog.ts';
import { MIN_INTERVAL_MS } from '../monitoring/history/config.ts';
import type { MetricsSnapshot } from '../monitoring/history/live.ts';
import type { HistoryAnswer } from '../monitoring/history/metrics-history.ts';
import { builder } from './builder.ts';
import type { GraphQLContext } from './context.ts';

/** Entries a filter list may hold, and the length of each. */
const MAX_LIST = 100;
const MAX_NAME = 256;
/** Points a `metrics` answer aims at when the client names no step. */
const DEFAULT_POINTS = 300;

interface FilterInput {
  metrics?: readonly string[] | null;
  models?: readonly (string | number)[] | null;
  versions?: readonly string[] | null;
  workers?: readonly (string | number)[] | null;
  includeGlobal?: boolean | null;
}

const invalid = (path: string, message: string) => new McpError('MCP_VALIDATION_FAILED', `${path}: ${message}`, { details: { path } });

function list(path: string, v: readonly (string | number)[] | null | undefined): string[] | undefined {
  if (v === null || v === undefined) return undefined;
  if (v.length > MAX_LIST) throw invalid(path, `at most ${MAX_LIST} entries`);
  const out = v.map(String);
  if (out.some((s) => s.length > MAX_NAME)) throw invalid(path, `entries of at most ${MAX_NAME} characters`);
  return out;
}

/**
 * The filter a principal may use: bounded lists, known metric names; a principal limited to some
 * models sees only those models' series (never gateway-wide or worker series, which mix all models).
 */
export function resolveFilter(ctx: GraphQLContext, input: FilterInput | null | undefined): SeriesFilter {
  const f: SeriesFilter = {
    metrics: list('filter.metrics', input?.metrics),
    models: list('filter.models', input?.models),
    versions: list('filter.versions', input?.versions),
    workers: list('filter.workers', input?.workers),
    ...(input?.includeGlobal === null || input?.includeGlobal === undefined ? {} : { global: input.includeGlobal }),
  };
  const unknown = f.metrics?.find((m) => !HISTORY_METRIC_NAMES.includes(m as never));
  if (unknown !== undefined) throw invalid('filter.metrics', `unknown metric "${unknown.slice(0, 64)}" (known: ${HISTORY_METRIC_NAMES.join(', ')})`);
  const allowed = ctx.principal?.models;
  if (allowed !== undefined) {
    f.models = f.models ? f.models.filter((m) => allowed.includes(m)) : [...allowed];
    f.global = false;
  }
  return f;
}

const MetricsFilter = builder.inputType('MetricsFilter', {
  description:
    'Which series: every list narrows (absent: all). Series without a `model` label (gateway-wide, workers) come when no model is named, or with includeGlobal.',
  fields: (t) => ({
    metrics: t.stringList({ description: `Metric names (see metricNames): ${HISTORY_METRIC_NAMES.join(', ')}.` }),
    models: t.idList(),
    versions: t.stringList(),
    workers: t.idList({ description: 'Worker ids (worker_* series).' }),
    includeGlobal: t.boolean({ description: 'Include series without a model label (gateway-wide, workers).' }),
  }),
});

const MetricPointRef = builder.objectRef<{ at: number; value: number }>('MetricPoint').implement({
  fields: (t) => ({
    at: t.exposeFloat('at', { description: 'Start of the step, ms since the epoch.' }),
    value: t.exposeFloat('value'),
  }),
});

interface Summary {
  min: number;
  max: number;
  avg: number;
  last: number;
  /** sum of the points: meaningful for counts (requests, errors). */
  total: number;
}

const MetricSummaryRef = builder.objectRef<Summary>('MetricSummary').implement({
  description: 'Over the points of the answer.',
  fields: (t) => ({
    min: t.exposeFloat('min'),
    max: t.exposeFloat('max'),
    avg: t.exposeFloat('avg'),
    last: t.exposeFloat('last'),
    total: t.exposeFloat('total', { description: 'Sum of the points (requests, errors: the count over the window).' }),
  }),
});

function summaryOf(s: MetricSeries): Summary {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let total = 0;
  for (const p of s.points) {
    if (p.value < min) min = p.value;
    if (p.value > max) max = p.value;
    total += p.value;
  }
  return { min, max, total, avg: total / s.points.length, last: s.points[s.points.length - 1]!.value };
}

const MetricSeriesRef = builder.objectRef<MetricSeries>('MetricSeries').implement({
  fields: (t) => ({
    metric: t.exposeString('metric'),
    labels: t.field({ type: 'JSON', description: 'The series labels (model, version, worker, device).', resolve: (s) => s.labels }),
    model: t.string({ nullable: true, resolve: (s) => s.labels.model ?? null }),
    version: t.string({ nullable: true, resolve: (s) => s.labels.version ?? null }),
    points: t.field({ type: [MetricPointRef], resolve: (s) => s.points }),
    summary: t.field({ type: MetricSummaryRef, resolve: summaryOf }),
  }),
});

const MetricsSourceEnum = builder.enumType('MetricsSource', {
  values: { RING: { description: 'The in-memory ring (tick resolution).' }, ROLLUPS: { description: 'Per-minute rollups from the database, and the ring.' } },
});

const MetricsHistoryRef = builder.objectRef<HistoryAnswer>('MetricsHistory').implement({
  fields: (t) => ({
    from: t.exposeFloat('from', { description: 'Window start, ms since the epoch.' }),
    to: t.exposeFloat('to', { description: 'Window end (the last tick), ms since the epoch.' }),
    step: t.float({ description: 'Seconds per point (raised to a minute where rollups are read).', resolve: (a) => a.stepMs / 1000 }),
    source: t.field({ type: MetricsSourceEnum, resolve: (a) => (a.fromRollups ? 'ROLLUPS' : 'RING') }),
    series: t.field({ type: [MetricSeriesRef], resolve: (a) => a.series }),
  }),
});

const MetricInfoRef = builder.objectRef<{ name: string; help: string }>('MetricInfo').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    help: t.exposeString('help'),
    aggregation: t.string({ description: 'How samples combine into a step: sum, avg or max.', resolve: (m) => aggregationOf(m.name) }),
    replicas: t.string({
      description: "How the rollups of several gateway replicas combine: sum (each replica's own counts, rates and in-flight), max or avg.",
      resolve: (m) => replicasOf(m.name),
    }),
  }),
});

builder.queryFields((t) => ({
  metricNames: t.field({
    type: [MetricInfoRef],
    description: 'The metrics of the history (`metrics`, `metricsUpdates`, alert rules).',
    authScopes: { permission: 'metrics:read' },
    resolve: () => HISTORY_METRIC_NAMES.map((name) => ({ name, help: HISTORY_METRICS[name].help })),
  }),
  metrics: t.field({
    type: MetricsHistoryRef,
    description:
      'Time series of the gateway metrics over the last `window` seconds, one point per `step` seconds: from the in-memory ring (monitoring.history.ring, tick resolution), and per-minute rollups in the database for older parts (kept retentionDays).',
    authScopes: { permission: 'metrics:read' },
    args: {
      filter: t.arg({ type: MetricsFilter }),
      window: t.arg.int({ description: 'Seconds back from now (default 3600; at most the retention).', defaultValue: 3600 }),
      step: t.arg.int({ description: 'Seconds per point (default: the window in about 300 points; at least the tick).' }),
    },
    resolve: async (_r, args, ctx) => {
      const history = ctx.services.metricsHistory;
      const cfg = history.config;
      const filter = resolveFilter(ctx, args.filter);
      const maxWindow = cfg.persist ? cfg.retentionDays * 86_400 : Math.floor(cfg.ring / 1000);
      const window = args.window ?? 3600;
      if (!Number.isInteger(window) || window < 1 || window > maxWindow) throw invalid('window', `between 1 and ${maxWindow} seconds`);
      const tickSeconds = Math.max(1, Math.ceil(cfg.tickMs / 1000));
      const step = args.step ?? Math.max(tickSeconds, Math.ceil(window / DEFAULT_POINTS));
      if (step < tickSeconds || step > window) throw invalid('step', `between ${tickSeconds} (the tick) and the window (${window}) seconds`);
      if (window / step > cfg.maxPointsPerSeries)
        throw invalid(
          'step',
          `window / step may give at most ${cfg.maxPointsPerSeries} points: use a step of at least ${Math.ceil(window / cfg.maxPointsPerSeries)} s`,
        );
      return history.read(filter, window * 1000, step * 1000, cfg.maxSeriesPerAnswer);
    },
  }),
}));

const MetricValueRef = builder.objectRef<MetricSeries>('MetricValue').implement({
  description: "A series' value in a snapshot: its samples of the interval combined (sum for counts, max for percentiles, else the mean).",
  fields: (t) => ({
    metric: t.exposeString('metric'),
    labels: t.field({ type: 'JSON', description: 'The series labels (model, version, worker, device).', resolve: (s) => s.labels }),
    model: t.string({ nullable: true, resolve: (s) => s.labels.model ?? null }),
    version: t.string({ nullable: true, resolve: (s) => s.labels.version ?? null }),
    value: t.float({ resolve: (s) => s.points[0]?.value ?? 0 }),
  }),
});

const MetricsSnapshotRef = builder.objectRef<MetricsSnapshot>('MetricsSnapshot').implement({
  fields: (t) => ({
    at: t.exposeFloat('at', { description: 'The tick the snapshot was computed at, ms since the epoch (delivery lag = receive time − at).' }),
    intervalMs: t.exposeInt('intervalMs'),
    series: t.field({ type: [MetricValueRef], resolve: (s) => s.series }),
  }),
});

builder.subscriptionFields((t) => ({
  metricsUpdates: t.field({
    type: MetricsSnapshotRef,
    description:
      'A snapshot of the metrics every intervalMs (at least 250 ms and one tick): computed once per tick for all subscribers with the same filter. A slow client skips snapshots, it never queues them.',
    authScopes: { permission: 'metrics:read' },
    args: {
      intervalMs: t.arg.int({ defaultValue: 1000, description: 'Milliseconds between snapshots (250 … 3,600,000; default 1000).' }),
      filter: t.arg({ type: MetricsFilter }),
    },
    subscribe: (_r, args, ctx) => {
      const interval = args.intervalMs ?? 1000;
      if (!Number.isInteger(interval) || interval < MIN_INTERVAL_MS || interval > 3_600_000)
        throw invalid('intervalMs', `between ${MIN_INTERVAL_MS} and 3600000`);
      return ctx.services.liveMetrics.subscribe(resolveFilter(ctx, args.filter), interval, ctx.signal);
    },
    resolve: (s) => s,
  }),
}));
