/**
 * The metrics the history samples, and how samples of one series combine into a coarser step:
 * `sum` for counts per tick (requests, errors), `max` for latency percentiles (the worst tick of
 * the step), `avg` for rates, ratios and gauges.
 *
 * `replicas` says how the per-minute rollups of several gateway replicas (one table, one row per
 * series and minute) combine: `sum` for what each replica counts on its own (requests, errors,
 * requests/s, tokens/s, in-flight, queue depth: the fleet's figure is the total), `max` for
 * latency percentiles (the worst replica), `avg` for ratios and for series every replica samples
 * alike (error_rate, the worker_* figures from heartbeats). See docs/monitoring.md.
 */
export type StepAggregation = 'sum' | 'avg' | 'max';
export type ReplicaCombination = 'sum' | 'avg' | 'max';

export const HISTORY_METRICS = {
  requests: { agg: 'sum', replicas: 'sum', help: 'Inference requests finished in the step (labels: model, version; none: gateway-wide).' },
  errors: { agg: 'sum', replicas: 'sum', help: 'Inference requests that failed in the step.' },
  error_rate: { agg: 'avg', replicas: 'avg', help: 'errors / requests of a tick (no point when a tick had no request).' },
  requests_per_second: { agg: 'avg', replicas: 'sum', help: 'Requests finished per second.' },
  latency_p50_ms: { agg: 'max', replicas: 'max', help: 'Median latency of the requests of a tick, ms (from histogram bucket deltas).' },
  latency_p95_ms: { agg: 'max', replicas: 'max', help: '95th percentile latency, ms.' },
  latency_p99_ms: { agg: 'max', replicas: 'max', help: '99th percentile latency, ms.' },
  ttft_p95_ms: { agg: 'max', replicas: 'max', help: '95th percentile time to first token of streamed requests, ms.' },
  tokens_per_second: { agg: 'avg', replicas: 'sum', help: 'Completion tokens per second (labels: model; none: gateway-wide).' },
  in_flight: { agg: 'avg', replicas: 'sum', help: "Requests outstanding on a version's instances." },
  queue_depth: { agg: 'avg', replicas: 'sum', help: "Requests outstanding beyond one per ready instance (waiting at the version's backends)." },
  worker_cpu_cores: { agg: 'avg', replicas: 'avg', help: 'CPU of a worker process, cores (from its heartbeats; label: worker).' },
  worker_memory_bytes: { agg: 'avg', replicas: 'avg', help: 'Resident memory of a worker process, bytes (label: worker).' },
  worker_device_memory_bytes: { agg: 'avg', replicas: 'avg', help: 'Memory in use on a worker device, bytes (labels: worker, device).' },
} as const satisfies Record<string, { agg: StepAggregation; replicas: ReplicaCombination; help: string }>;

export type HistoryMetric = keyof typeof HISTORY_METRICS;
export const HISTORY_METRIC_NAMES = Object.keys(HISTORY_METRICS) as HistoryMetric[];

export function aggregationOf(metric: string): StepAggregation {
  return (HISTORY_METRICS as Record<string, { agg: StepAggregation }>)[metric]?.agg ?? 'avg';
}

/** How the rollups of several replicas combine for `metric` (see ReplicaCombination). */
export function replicasOf(metric: string): ReplicaCombination {
  return (HISTORY_METRICS as Record<string, { replicas: ReplicaCombination }>)[metric]?.replicas ?? 'avg';
}

/**
 * Whether a metric's rollup rows hold each replica's time-weighted mean (count 0): averaged
 * gauges and rates that add up across replicas. Their rows merge by adding those means, so a
 * minute's value is the fleet's total; counts (agg sum) add up as they are.
 */
export function isAdditiveMean(metric: string): boolean {
  return aggregationOf(metric) === 'avg' && replicasOf(metric) === 'sum';
}

/** A stable key of a label set: its pairs sorted by name, as JSON. */
export function labelsKey(labels: Readonly<Record<string, string>>): string {
  return JSON.stringify(
    Object.keys(labels)
      .sort()
      .map((k) => [k, labels[k]]),
  );
}

/** A stable key of a series: its metric and its labels. */
export function seriesKey(metric: string, labels: Readonly<Record<string, string>>): string {
  return `${metric}|${labelsKey(labels)}`;
}

/** Which series a reader wants. Series with a `model` label are per model (and version); those without are gateway-wide or per worker. */
export interface SeriesFilter {
  metrics?: readonly string[];
  /** Only these models (their per-model series). */
  models?: readonly string[];
  versions?: readonly string[];
  workers?: readonly string[];
  /** Also series without a `model` label (gateway-wide, workers). Default: when `models` is not given. */
  global?: boolean;
}

export function matches(f: SeriesFilter, metric: string, labels: Readonly<Record<string, string>>): boolean {
  if (f.metrics && !f.metrics.includes(metric)) return false;
  const model = labels.model;
  if (model === undefined) {
    if (!(f.global ?? f.models === undefined)) return false;
    if (f.workers && labels.worker !== undefined && !f.workers.includes(labels.worker)) return false;
    if (f.workers && labels.worker === undefined) return false;
    return true;
  }
  if (f.models && !f.models.includes(model)) return false;
  if (f.versions && labels.version !== undefined && !f.versions.includes(labels.version)) return false;
  return true;
}
