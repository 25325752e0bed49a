/**
 * What the gateway's recent metrics look like to their readers (the GraphQL `metrics` query, the
 * `metricsUpdates` subscription, alert rules, the dashboard): named series with labels, sampled on
 * a fixed tick by the metrics history. The history is the one implementation; readers never touch
 * prom-client or the request path.
 */

/** One sample of one series: `at` in ms since the epoch. */
export interface MetricPoint {
  at: number;
  value: number;
}

/** Which series: a metric name and labels every matching series must carry (subset match). */
export interface MetricSelector {
  metric: string;
  labels?: Readonly<Record<string, string>>;
}

export interface MetricSeries {
  metric: string;
  labels: Readonly<Record<string, string>>;
  points: MetricPoint[];
}

export interface MetricSource {
  /** The names `range` knows (e.g. `latency_p95_ms`, `requests_per_second`, `error_rate`, `queue_depth`). */
  names(): readonly string[];
  /** Every series matching `sel` over [now - windowMs, now], one point per `stepMs` (aggregated from finer samples). */
  range(sel: MetricSelector, windowMs: number, stepMs: number): MetricSeries[];
  /** Called after each sampling tick with its time; returns an unsubscribe function. */
  onTick(listener: (at: number) => void): () => void;
}
