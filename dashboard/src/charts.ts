import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** Line colours, in order of the series; the browser test looks for the first one's pixels. */
export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#17becf', '#8c564b', '#e377c2'];

export interface MetricValue {
  metric: string;
  model: string | null;
  version: string | null;
  labels: Record<string, string>;
  value: number;
}

export interface ChartSpec {
  id: string;
  title: string;
  unit: string;
  /** Metric name → the suffix of its line names (latency: " p95"). */
  metrics: Record<string, string>;
  /** How versions (and devices) of one model combine into its line. */
  combine: 'sum' | 'max';
}

export const LIVE_CHARTS: ChartSpec[] = [
  {
    id: 'latency',
    title: 'Latency percentiles',
    unit: 'ms',
    metrics: { latency_p50_ms: ' p50', latency_p95_ms: ' p95', latency_p99_ms: ' p99' },
    combine: 'max',
  },
  { id: 'throughput', title: 'Throughput', unit: 'req/s', metrics: { requests_per_second: '' }, combine: 'sum' },
  { id: 'errors', title: 'Errors', unit: 'per interval', metrics: { errors: '' }, combine: 'sum' },
  { id: 'queue', title: 'Queue depth and in flight', unit: 'requests', metrics: { queue_depth: ' queued', in_flight: ' in flight' }, combine: 'sum' },
  { id: 'tokens', title: 'Tokens per second', unit: 'tokens/s', metrics: { tokens_per_second: '' }, combine: 'sum' },
  { id: 'resources', title: 'Worker resources', unit: 'CPU cores', metrics: { worker_cpu_cores: '' }, combine: 'sum' },
];

/** The line a series belongs to: its model, else its worker, else the gateway as a whole. */
function lineOf(v: MetricValue, suffix: string): string {
  return (v.model ?? (v.labels.worker ? `worker ${v.labels.worker}` : 'all models')) + suffix;
}

/** One value per line of the chart from a snapshot's series. */
export function linesOf(spec: ChartSpec, series: readonly MetricValue[]): Map<string, number> {
  const out = new Map<string, number>();
  // The gateway-wide series repeats the per-model ones: shown only for a metric without any.
  const perModel = new Set(series.filter((v) => v.model !== null).map((v) => v.metric));
  for (const v of series) {
    const suffix = spec.metrics[v.metric];
    if (suffix === undefined || !Number.isFinite(v.value)) continue;
    if (v.model === null && !v.labels.worker && perModel.has(v.metric)) continue;
    const key = lineOf(v, suffix);
    const prev = out.get(key);
    out.set(key, prev === undefined ? v.value : spec.combine === 'sum' ? prev + v.value : Math.max(prev, v.value));
  }
  return out;
}

/** A uPlot chart whose lines appear as their series do; keeps the last `maxPoints` points. */
export class LineChart {
  private plot: uPlot | undefined;
  private keys: string[] = [];
  private xs: number[] = [];
  private ys = new Map<string, (number | null)[]>();
  readonly root: HTMLElement;
  private readonly body: HTMLElement;
  private readonly latest: HTMLElement;

  constructor(
    parent: HTMLElement,
    readonly spec: Pick<ChartSpec, 'id' | 'title' | 'unit'>,
    private readonly maxPoints = 120,
  ) {
    this.root = document.createElement('figure');
    this.root.className = 'card chart';
    this.root.dataset.chart = spec.id;
    const caption = document.createElement('figcaption');
    caption.textContent = `${spec.title} (${spec.unit})`;
    this.latest = document.createElement('span');
    this.latest.className = 'latest muted';
    caption.append(' ', this.latest);
    this.body = document.createElement('div');
    this.root.append(caption, this.body);
    parent.append(this.root);
  }

  get points(): number {
    return this.xs.length;
  }

  /** Appends one point (at: ms since the epoch) to every line; a line without a value gets a gap. */
  push(at: number, values: Map<string, number>): void {
    for (const key of values.keys()) {
      if (!this.ys.has(key))
        this.ys.set(
          key,
          this.xs.map(() => null),
        );
    }
    this.xs.push(at / 1000);
    for (const [key, col] of this.ys) col.push(values.get(key) ?? null);
    if (this.xs.length > this.maxPoints) {
      this.xs.shift();
      for (const col of this.ys.values()) col.shift();
    }
    this.render();
  }

  /** Replaces the data (the history view). */
  replace(xsMs: number[], lines: Map<string, (number | null)[]>): void {
    this.xs = xsMs.map((x) => x / 1000);
    this.ys = new Map(lines);
    this.render();
  }

  private render(): void {
    const keys = [...this.ys.keys()].sort();
    this.root.dataset.points = String(this.xs.length);
    this.root.dataset.lines = keys.join('|');
    this.latest.textContent = keys
      .map((k) => {
        const col = this.ys.get(k)!;
        const last = col[col.length - 1];
        return last === null || last === undefined ? '' : `${k}: ${formatNumber(last)}`;
      })
      .filter(Boolean)
      .join(' · ');
    if (!keys.length) this.latest.textContent = 'no data yet';
    const data = [this.xs, ...keys.map((k) => this.ys.get(k)!)] as uPlot.AlignedData;
    if (this.plot && keys.join('\0') === this.keys.join('\0')) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.keys = keys;
    this.plot = new uPlot(
      {
        width: Math.max(280, this.body.clientWidth || 420),
        height: 200,
        series: [{}, ...keys.map((label, i) => ({ label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: false, points: { show: false } }))],
        axes: [{}, { size: 56 }],
        legend: { show: true },
        cursor: { drag: { x: false, y: false } },
      },
      data,
      this.body,
    );
  }

  destroy(): void {
    this.plot?.destroy();
    this.root.remove();
  }
}

export function formatNumber(n: number): string {
  if (n === 0) return '0';
  const a = Math.abs(n);
  if (a >= 100) return n.toFixed(0);
  if (a >= 1) return n.toFixed(2);
  return n.toPrecision(2);
}
