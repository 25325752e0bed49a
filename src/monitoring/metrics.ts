import { collectDefaultMetrics, type Registry } from 'prom-client';
import type { EventBus } from '../events/bus.ts';
import type { InferenceObserver, InferenceOutcome } from '../inference/service.ts';
import type { InferenceRequest } from '../inference/types.ts';
import type { Fleet, ModelView } from '../models/fleet.ts';
import { CounterFamily, HistogramFamily, exponentialBuckets, type CounterSeries, type HistogramSeries } from './families.ts';
import { RecentRate } from './recent-rate.ts';

/** The one label value every request for a model the registry does not know is counted under. */
export const UNKNOWN_LABEL = '__unknown__';
/** The `role` label of requests without a principal (auth off, anonymous access). */
export const ANONYMOUS_ROLE = 'anonymous';
/** The `role` label of a principal whose first role is not in the role table. */
export const OTHER_ROLE = 'other';

/** Where label values come from: the registry (known models) and the role table. */
export interface LabelSources {
  /** Whether the registry knows the model (only then is its id a label value). */
  knownModel(modelId: string): boolean;
  /** Role names a `role` label may take (built-in and configured roles). */
  roles: ReadonlySet<string>;
}

/** Seconds: 0.5 ms to 10 minutes, ×2.5 apart (p50/p95/p99 of ms-fast classifiers and minute-long generations alike). */
export const LATENCY_BUCKETS = exponentialBuckets(0.0005, 2.5, 16);
/** Seconds between streamed chunks: 0.1 ms to ~5 s. */
const INTER_TOKEN_BUCKETS = exponentialBuckets(0.0001, 2, 16);
/** Completion tokens per second: 1 to ~32k. */
const TOKENS_PER_SECOND_BUCKETS = exponentialBuckets(1, 2, 16);
const SCORE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1];

type ReqLabels = 'model' | 'version' | 'entry';

/** The series of one (model, served model, version, entry): kept, so a request only does map lookups and number updates. */
class EntrySeries {
  private readonly codes = new Map<string, CounterSeries<ReqLabels | 'code'>>();
  readonly ok: CounterSeries<ReqLabels | 'code'>;
  readonly latency: HistogramSeries<ReqLabels>;
  constructor(
    private readonly m: GatewayMetrics,
    private readonly labels: Readonly<Record<ReqLabels, string>>,
  ) {
    this.ok = m.requests.of({ ...labels, code: 'OK' });
    this.latency = m.latency.of(labels);
  }
  code(code: string): CounterSeries<ReqLabels | 'code'> {
    let s = this.codes.get(code);
    if (!s) {
      s = this.m.requests.of({ ...this.labels, code });
      this.codes.set(code, s);
    }
    return s;
  }
}

/** Per (model, served model, version): entries and the generative and routing series. */
class VersionSeries {
  private readonly entries = new Map<string, EntrySeries>();
  private readonly labels: Readonly<Record<'model' | 'version', string>>;
  // Created on first use: a model that never streams or generates shows none of these.
  private ttftSeries: HistogramSeries<'model' | 'version'> | undefined;
  private interTokenSeries: HistogramSeries<'model' | 'version'> | undefined;
  private tpsSeries: HistogramSeries<'model' | 'version'> | undefined;
  private retriesSeries: CounterSeries<'model' | 'version'> | undefined;
  private hedgesSeries: CounterSeries<'model' | 'version'> | undefined;
  constructor(
    private readonly m: GatewayMetrics,
    private readonly model: string,
    private readonly version: string,
  ) {
    this.labels = { model, version };
  }
  get ttft(): HistogramSeries<'model' | 'version'> {
    return (this.ttftSeries ??= this.m.timeToFirstToken.of(this.labels));
  }
  get interToken(): HistogramSeries<'model' | 'version'> {
    return (this.interTokenSeries ??= this.m.interTokenLatency.of(this.labels));
  }
  get tokensPerSecond(): HistogramSeries<'model' | 'version'> {
    return (this.tpsSeries ??= this.m.tokensPerSecond.of(this.labels));
  }
  get retries(): CounterSeries<'model' | 'version'> {
    return (this.retriesSeries ??= this.m.retries.of(this.labels));
  }
  get hedges(): CounterSeries<'model' | 'version'> {
    return (this.hedgesSeries ??= this.m.hedges.of(this.labels));
  }
  entry(entry: string): EntrySeries {
    let s = this.entries.get(entry);
    if (!s) {
      s = new EntrySeries(this.m, { model: this.model, version: this.version, entry });
      this.entries.set(entry, s);
    }
    return s;
  }
}

/** Per requested model (a registry id, or UNKNOWN_LABEL): everything its requests record into. */
class ModelSeries {
  /** served model → version → series (a fallback model's version shows as `model@version`). */
  private readonly served = new Map<string, Map<string, VersionSeries>>();
  private readonly byRole = new Map<string, CounterSeries<'model' | 'role'>>();
  readonly promptTokens: CounterSeries<'model' | 'kind'>;
  readonly completionTokens: CounterSeries<'model' | 'kind'>;
  private fallbackSeries: CounterSeries<'model'> | undefined;
  readonly recent = new RecentRate();
  requests = 0;
  errors = 0;
  constructor(
    private readonly m: GatewayMetrics,
    readonly model: string,
  ) {
    this.promptTokens = m.tokens.of({ model, kind: 'prompt' });
    this.completionTokens = m.tokens.of({ model, kind: 'completion' });
  }
  get fallbacks(): CounterSeries<'model'> {
    return (this.fallbackSeries ??= this.m.fallbacks.of({ model: this.model }));
  }
  version(servedModel: string, version: string): VersionSeries {
    let byVersion = this.served.get(servedModel);
    if (!byVersion) {
      byVersion = new Map();
      this.served.set(servedModel, byVersion);
    }
    let s = byVersion.get(version);
    if (!s) {
      s = new VersionSeries(this.m, this.model, servedModel === this.model || !version ? version : `${servedModel}@${version}`);
      byVersion.set(version, s);
    }
    return s;
  }
  role(role: string): CounterSeries<'model' | 'role'> {
    let s = this.byRole.get(role);
    if (!s) {
      s = this.m.requestsByRole.of({ model: this.model, role });
      this.byRole.set(role, s);
    }
    return s;
  }
}

/** Requests outstanding on a model's instances. */
function outstanding(view: ModelView | undefined): number {
  let n = 0;
  if (view) for (const pool of view.versions.values()) for (const h of pool) n += h.outstanding;
  return n;
}

/** Per-model figures for GET /api/v1/metrics. */
export interface ModelSummary {
  model: string;
  requests: number;
  errors: number;
  errorRate: number;
  /** Requests per second over the last minute (0 until the first once-a-second snapshot). */
  throughputPerSecond: number;
  /** Errors / requests over the last minute (0 without requests). */
  recentErrorRate: number;
  /** Requests outstanding on the model's instances now (queued or running there). */
  queueDepth: number;
  /** Latency percentiles since start, ms (from the histogram, interpolated within a bucket); null without requests. */
  latencyMs: { p50: number | null; p95: number | null; p99: number | null; mean: number | null };
}

/**
 * Prometheus metrics of the inference path (scraped at /metrics). Label values come from the
 * registry only: a model it does not know is counted under `model="__unknown__"`, so clients
 * cannot grow the label set. `version` is the version the router chose, failures included (a
 * fallback model's shows as `model@version`). The principal is counted by its role (bounded by
 * the role table), never by id. Recording a request is a few map lookups and number updates.
 */
export class GatewayMetrics implements InferenceObserver {
  readonly requests: CounterFamily<ReqLabels | 'code'>;
  readonly latency: HistogramFamily<ReqLabels>;
  readonly tokens: CounterFamily<'model' | 'kind'>;
  readonly requestsByRole: CounterFamily<'model' | 'role'>;
  readonly timeToFirstToken: HistogramFamily<'model' | 'version'>;
  readonly interTokenLatency: HistogramFamily<'model' | 'version'>;
  readonly tokensPerSecond: HistogramFamily<'model' | 'version'>;
  readonly retries: CounterFamily<'model' | 'version'>;
  readonly hedges: CounterFamily<'model' | 'version'>;
  readonly fallbacks: CounterFamily<'model'>;
  readonly feedback: HistogramFamily<'model' | 'version'>;
  private readonly models = new Map<string, ModelSeries>();
  private readonly unknown: ModelSeries;
  private readonly started = Date.now();

  constructor(
    readonly registry: Registry,
    private readonly labels: LabelSources,
  ) {
    collectDefaultMetrics({ register: registry });
    // Gauges named like counters (promtool refuses them); the same figures stay, by type, in nodejs_active_{handles,requests,resources}.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
    const r = registry;
    this.requests = new CounterFamily(
      'mcp_inference_requests_total',
      'Inference requests by outcome code (OK or an MCP_* code).',
      ['model', 'version', 'entry', 'code'],
      r,
    );
    this.latency = new HistogramFamily(
      'mcp_inference_duration_seconds',
      'End-to-end inference latency seen by the gateway.',
      ['model', 'version', 'entry'],
      LATENCY_BUCKETS,
      r,
    );
    this.tokens = new CounterFamily('mcp_tokens_total', 'Tokens processed (kind: prompt or completion).', ['model', 'kind'], r);
    this.requestsByRole = new CounterFamily(
      'mcp_inference_requests_by_role_total',
      'Inference requests by the first role of the principal (anonymous without one, other when not in the role table).',
      ['model', 'role'],
      r,
    );
    this.timeToFirstToken = new HistogramFamily(
      'mcp_time_to_first_token_seconds',
      'Streamed requests: time from arrival to the first chunk.',
      ['model', 'version'],
      LATENCY_BUCKETS,
      r,
    );
    this.interTokenLatency = new HistogramFamily(
      'mcp_inter_token_latency_seconds',
      'Streamed requests: mean time between chunks after the first, one observation per request.',
      ['model', 'version'],
      INTER_TOKEN_BUCKETS,
      r,
    );
    this.tokensPerSecond = new HistogramFamily(
      'mcp_generation_tokens_per_second',
      'Generative requests: completion tokens per second of generation (after the first chunk when streamed).',
      ['model', 'version'],
      TOKENS_PER_SECOND_BUCKETS,
      r,
    );
    this.retries = new CounterFamily('mcp_router_retries_total', 'Attempts after the first on another instance (retries and hedges).', ['model', 'version'], r);
    this.hedges = new CounterFamily('mcp_router_hedged_requests_total', 'Requests that sent a hedged second attempt.', ['model', 'version'], r);
    this.fallbacks = new CounterFamily('mcp_router_fallbacks_total', 'Fallback models tried after the requested one failed.', ['model'], r);
    this.feedback = new HistogramFamily(
      'mcp_feedback_score',
      'Feedback scores (0-1) from submitFeedback; accuracy = _sum / _count.',
      ['model', 'version'],
      SCORE_BUCKETS,
      r,
    );
    this.unknown = new ModelSeries(this, UNKNOWN_LABEL);
  }

  /** The series of a requested model: its own when the registry knows it, else the one unknown series (never a new label value). */
  private model(modelId: string): ModelSeries {
    const s = this.models.get(modelId);
    if (s) return s;
    if (!this.labels.knownModel(modelId)) return this.unknown;
    const created = new ModelSeries(this, modelId);
    this.models.set(modelId, created);
    return created;
  }

  /**
   * Until `signal` aborts: snapshots each model's totals once a second (throughput and recent error
   * rate of the summary) and forgets the series of models deleted on any replica.
   */
  watch(events: EventBus, signal: AbortSignal): void {
    const timer = setInterval(() => {
      for (const m of this.models.values()) m.recent.snapshot(m.requests, m.errors);
      this.unknown.recent.snapshot(this.unknown.requests, this.unknown.errors);
    }, 1000);
    timer.unref();
    signal.addEventListener('abort', () => clearInterval(timer), { once: true });
    void (async () => {
      for await (const e of events.subscribe('modelEvents', signal)) if (e.type === 'MODEL_DELETED') this.forgetModel(e.modelId);
    })();
  }

  /** Forgets a deleted model's series (they leave the exposition). */
  forgetModel(modelId: string): void {
    if (!this.models.delete(modelId)) return;
    const match = (l: { model?: string }) => l.model === modelId;
    for (const f of [this.requests, this.latency, this.tokens, this.requestsByRole, this.timeToFirstToken, this.interTokenLatency]) f.remove(match);
    for (const f of [this.tokensPerSecond, this.retries, this.hedges, this.fallbacks, this.feedback]) f.remove(match);
  }

  onFinished(req: InferenceRequest, o: InferenceOutcome): void {
    const m = this.model(req.model);
    const d = o.decision;
    const v = d ? m.version(d.model, d.version) : m.version(m.model, o.result?.version && m !== this.unknown ? o.result.version : '');
    const e = v.entry(req.entry);
    (o.ok ? e.ok : e.code(o.errorCode ?? 'MCP_INTERNAL')).inc();
    const seconds = o.latencyMs / 1000;
    e.latency.observe(seconds);
    m.requests++;
    if (!o.ok) m.errors++;
    const principal = req.principal;
    const role = principal ? principal.roles[0] : undefined;
    m.role(role === undefined ? (principal ? OTHER_ROLE : ANONYMOUS_ROLE) : this.labels.roles.has(role) ? role : OTHER_ROLE).inc();
    if (d) {
      if (d.attempts.length > 1) v.retries.inc(d.attempts.length - 1);
      if (d.hedged) v.hedges.inc();
      if (d.fallbacks.length) m.fallbacks.inc(d.fallbacks.length);
    }
    const usage = o.result?.usage;
    if (usage) {
      m.promptTokens.inc(usage.promptTokens);
      m.completionTokens.inc(usage.completionTokens);
    }
    if (!o.ok) return;
    let generating = seconds;
    if (o.firstTokenMs !== undefined) {
      v.ttft.observe(o.firstTokenMs / 1000);
      generating = (o.latencyMs - o.firstTokenMs) / 1000;
      if (o.chunks !== undefined && o.chunks > 1) v.interToken.observe(generating / (o.chunks - 1));
    }
    if (usage && usage.completionTokens > 0 && generating > 0) v.tokensPerSecond.observe(usage.completionTokens / generating);
  }

  /** A feedback score (0–1) stored for an inference of a registry model version. */
  onFeedback(modelId: string, version: string, score: number): void {
    const model = this.labels.knownModel(modelId) ? modelId : UNKNOWN_LABEL;
    this.feedback.of({ model, version: model === UNKNOWN_LABEL ? '' : version }).observe(score);
  }

  /** Totals since start, and per model: latency, throughput and error rate (GET /api/v1/metrics). */
  summary(fleet?: Pick<Fleet, 'view'>): { uptimeSeconds: number; requests: number; errors: number; errorRate: number; models: ModelSummary[] } {
    let requests = 0;
    let errors = 0;
    const models: ModelSummary[] = [];
    for (const m of [...this.models.values(), this.unknown]) {
      requests += m.requests;
      errors += m.errors;
      if (m.requests === 0) continue;
      const recent = m.recent.since(m.requests, m.errors);
      models.push({
        model: m.model,
        requests: m.requests,
        errors: m.errors,
        errorRate: m.errors / m.requests,
        throughputPerSecond: recent.seconds > 0 ? recent.requests / recent.seconds : 0,
        recentErrorRate: recent.requests ? recent.errors / recent.requests : 0,
        queueDepth: outstanding(fleet?.view(m.model)),
        latencyMs: this.latencyOf(m.model),
      });
    }
    return { uptimeSeconds: (Date.now() - this.started) / 1000, requests, errors, errorRate: requests ? errors / requests : 0, models };
  }

  /** Percentiles of a model's latency histogram (all versions and entries merged), ms. */
  private latencyOf(model: string): ModelSummary['latencyMs'] {
    const merged = new Float64Array(LATENCY_BUCKETS.length + 1);
    let sum = 0;
    let count = 0;
    for (const s of this.latency.seriesWhere((l) => l.model === model)) {
      for (let i = 0; i < merged.length; i++) merged[i]! += s.counts[i]!;
      sum += s.sum;
      count += s.count;
    }
    if (!count) return { p50: null, p95: null, p99: null, mean: null };
    const q = (p: number): number => {
      const rank = p * count;
      let acc = 0;
      for (let i = 0; i < merged.length; i++) {
        const n = merged[i]!;
        if (acc + n >= rank && n > 0) {
          const lo = i === 0 ? 0 : LATENCY_BUCKETS[i - 1]!;
          const hi = LATENCY_BUCKETS[i] ?? LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]!;
          return (lo + ((hi - lo) * (rank - acc)) / n) * 1000;
        }
        acc += n;
      }
      return LATENCY_BUCKETS[LATENCY_BUCKETS.length - 1]! * 1000;
    };
    const round = (x: number) => Math.round(x * 1000) / 1000;
    return { p50: round(q(0.5)), p95: round(q(0.95)), p99: round(q(0.99)), mean: round((sum / count) * 1000) };
  }
}
