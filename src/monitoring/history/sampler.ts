import type { InstanceHandle } from '../../models/fleet.ts';
import type { WorkerLoad } from '../../workers/worker-registry.ts';
import type { HistogramSeries } from '../families.ts';
import { LATENCY_BUCKETS, type GatewayMetrics } from '../metrics.ts';
import type { HistoryMetric } from './catalog.ts';

/** Where the sampler reads: the request metrics, the instances, the workers' last load reports. */
export interface SampleSources {
  metrics: GatewayMetrics;
  handles(): Iterable<InstanceHandle>;
  workerLoads(): ReadonlyMap<string, WorkerLoad>;
}

/** Receives one tick's values. */
export type SampleSink = (metric: HistoryMetric, labels: Readonly<Record<string, string>>, value: number) => void;

const ANY = () => true;
const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/** Quantile p of a histogram (bucket counts, not cumulative), in the bounds' unit, interpolated within a bucket. */
export function quantile(counts: Float64Array, total: number, bounds: readonly number[], p: number): number {
  const rank = p * total;
  let acc = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i]!;
    if (n > 0 && acc + n >= rank) {
      const lo = i === 0 ? 0 : bounds[i - 1]!;
      const hi = bounds[i] ?? bounds[bounds.length - 1]!;
      return lo + ((hi - lo) * (rank - acc)) / n;
    }
    acc += n;
  }
  return bounds[bounds.length - 1]!;
}

/** Running totals of one (model, version) — or of the gateway — and their values at the previous tick. */
class Totals {
  requests = 0;
  errors = 0;
  prevRequests = 0;
  prevErrors = 0;
  readonly latency = new Float64Array(LATENCY_BUCKETS.length + 1);
  readonly prevLatency = new Float64Array(LATENCY_BUCKETS.length + 1);
  readonly ttft = new Float64Array(LATENCY_BUCKETS.length + 1);
  readonly prevTtft = new Float64Array(LATENCY_BUCKETS.length + 1);
  inFlight = 0;
  ready = 0;
  hasInstances = false;
  seen = false;
  constructor(readonly labels: Readonly<Record<string, string>>) {}
  reset(): void {
    this.prevRequests = this.requests;
    this.prevErrors = this.errors;
    this.prevLatency.set(this.latency);
    this.prevTtft.set(this.ttft);
    this.requests = this.errors = this.inFlight = this.ready = 0;
    this.latency.fill(0);
    this.ttft.fill(0);
    this.hasInstances = this.seen = false;
  }
}

/** A counter's increase since the last tick; a drop (series forgotten and recreated) counts from zero. */
const delta = (cur: number, prev: number) => (cur >= prev ? cur - prev : cur);

/**
 * Turns the gateway's cumulative metrics into per-tick values: counts and rates from counter
 * deltas, percentiles from histogram bucket deltas, gauges as read. Per (model, version), plus
 * gateway-wide series without a model label; labels come from the metrics' registry-bounded labels.
 */
export class Sampler {
  private readonly byVersion = new Map<string, Totals>();
  private readonly gateway = new Totals(NO_LABELS);
  private readonly tokens = new Map<string, { cur: number; prev: number; labels: Readonly<Record<string, string>> }>();
  private tokensGateway = { cur: 0, prev: 0 };
  private readonly cpu = new Map<string, number>();
  private lastAt: number | undefined;

  constructor(private readonly src: SampleSources) {}

  private totals(model: string, version: string): Totals {
    const key = `${model}\u0000${version}`;
    let t = this.byVersion.get(key);
    if (!t) {
      t = new Totals(Object.freeze({ model, version }));
      this.byVersion.set(key, t);
    }
    t.seen = true;
    return t;
  }

  private addHistogram(series: Iterable<HistogramSeries<'model' | 'version' | 'entry'> | HistogramSeries<'model' | 'version'>>, pick: 'latency' | 'ttft'): void {
    for (const s of series) {
      const t = this.totals(s.labels.model, s.labels.version);
      const into = pick === 'latency' ? t.latency : t.ttft;
      const gw = pick === 'latency' ? this.gateway.latency : this.gateway.ttft;
      for (let i = 0; i < s.counts.length; i++) {
        into[i]! += s.counts[i]!;
        gw[i]! += s.counts[i]!;
      }
    }
  }

  /** Reads every source once and hands the tick's values to `out`. */
  sample(at: number, out: SampleSink): void {
    const seconds = this.lastAt === undefined ? 0 : (at - this.lastAt) / 1000;
    const first = this.lastAt === undefined;
    this.lastAt = at;
    for (const t of this.byVersion.values()) t.reset();
    this.gateway.reset();
    const m = this.src.metrics;
    for (const s of m.requests.seriesWhere(ANY)) {
      const t = this.totals(s.labels.model, s.labels.version);
      t.requests += s.value;
      this.gateway.requests += s.value;
      if (s.labels.code !== 'OK') {
        t.errors += s.value;
        this.gateway.errors += s.value;
      }
    }
    this.addHistogram(m.latency.seriesWhere(ANY), 'latency');
    this.addHistogram(m.timeToFirstToken.seriesWhere(ANY), 'ttft');
    for (const h of this.src.handles()) {
      const t = this.totals(h.modelId, h.version);
      t.hasInstances = true;
      t.inFlight += h.outstanding;
      if (h.status === 'ready' && !h.draining) t.ready++;
      this.gateway.inFlight += h.outstanding;
      this.gateway.hasInstances = true;
    }
    if (first) return; // the first tick only sets the baselines
    for (const [key, t] of this.byVersion) {
      if (!t.seen) {
        this.byVersion.delete(key);
        continue;
      }
      this.emit(t, seconds, out);
    }
    this.emit(this.gateway, seconds, out);
    this.sampleTokens(seconds, out);
    this.sampleWorkers(seconds, out);
  }

  private emit(t: Totals, seconds: number, out: SampleSink): void {
    const requests = delta(t.requests, t.prevRequests);
    const errors = delta(t.errors, t.prevErrors);
    out('requests', t.labels, requests);
    out('errors', t.labels, errors);
    out('requests_per_second', t.labels, seconds > 0 ? requests / seconds : 0);
    if (requests > 0) out('error_rate', t.labels, errors / requests);
    const d = t.latency;
    let n = 0;
    for (let i = 0; i < d.length; i++) n += d[i] = delta(d[i]!, t.prevLatency[i]!);
    if (n > 0) {
      out('latency_p50_ms', t.labels, quantile(d, n, LATENCY_BUCKETS, 0.5) * 1000);
      out('latency_p95_ms', t.labels, quantile(d, n, LATENCY_BUCKETS, 0.95) * 1000);
      out('latency_p99_ms', t.labels, quantile(d, n, LATENCY_BUCKETS, 0.99) * 1000);
    }
    for (let i = 0; i < d.length; i++) d[i]! += t.prevLatency[i]!; // back to cumulative
    const f = t.ttft;
    let nf = 0;
    for (let i = 0; i < f.length; i++) nf += f[i] = delta(f[i]!, t.prevTtft[i]!);
    if (nf > 0) out('ttft_p95_ms', t.labels, quantile(f, nf, LATENCY_BUCKETS, 0.95) * 1000);
    for (let i = 0; i < f.length; i++) f[i]! += t.prevTtft[i]!;
    if (t.hasInstances) {
      out('in_flight', t.labels, t.inFlight);
      if (t !== this.gateway) out('queue_depth', t.labels, Math.max(0, t.inFlight - t.ready));
    }
  }

  private sampleTokens(seconds: number, out: SampleSink): void {
    let total = 0;
    const live = new Set<string>();
    for (const s of this.src.metrics.tokens.seriesWhere(ANY)) {
      if (s.labels.kind !== 'completion') continue;
      live.add(s.labels.model);
      let e = this.tokens.get(s.labels.model);
      if (!e) {
        e = { cur: s.value, prev: s.value, labels: Object.freeze({ model: s.labels.model }) };
        this.tokens.set(s.labels.model, e);
      }
      e.prev = e.cur;
      e.cur = s.value;
      total += s.value;
      if (seconds > 0) out('tokens_per_second', e.labels, delta(e.cur, e.prev) / seconds);
    }
    for (const k of this.tokens.keys()) if (!live.has(k)) this.tokens.delete(k);
    this.tokensGateway = { prev: this.tokensGateway.cur, cur: total };
    if (seconds > 0) out('tokens_per_second', NO_LABELS, delta(total, this.tokensGateway.prev) / seconds);
  }

  private sampleWorkers(seconds: number, out: SampleSink): void {
    for (const [worker, load] of this.src.workerLoads()) {
      const labels = { worker };
      if (load.cpuSeconds !== undefined) {
        const prev = this.cpu.get(worker);
        this.cpu.set(worker, load.cpuSeconds);
        if (prev !== undefined && seconds > 0) out('worker_cpu_cores', labels, delta(load.cpuSeconds, prev) / seconds);
      }
      if (load.residentMemoryBytes !== undefined) out('worker_memory_bytes', labels, load.residentMemoryBytes);
      if (load.deviceMemoryUsedBytes) for (const [device, used] of load.deviceMemoryUsedBytes) out('worker_device_memory_bytes', { worker, device }, used);
    }
  }
}
