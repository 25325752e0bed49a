import { Counter, Histogram, type Registry, collectDefaultMetrics } from 'prom-client';
import type { InferenceObserver, InferenceOutcome } from '../inference/service.ts';
import type { InferenceRequest } from '../inference/types.ts';

/**
 * Prometheus metrics of the inference path; cheap in-memory counters, scraped at /metrics.
 * `version` is the version the router chose, failures included (a fallback model's shows as
 * `model@version`), so per-variant error rates and latency percentiles aggregate across replicas.
 */
export class GatewayMetrics implements InferenceObserver {
  readonly requests: Counter<'model' | 'version' | 'entry' | 'code'>;
  readonly latency: Histogram<'model' | 'version' | 'entry'>;
  readonly tokens: Counter<'model' | 'kind'>;
  private readonly started = Date.now();
  private total = 0;
  private failed = 0;

  constructor(readonly registry: Registry) {
    collectDefaultMetrics({ register: registry, prefix: 'mcp_process_' });
    this.requests = new Counter({
      name: 'mcp_inference_requests_total',
      help: 'Inference requests by outcome code (OK or an MCP_* code).',
      labelNames: ['model', 'version', 'entry', 'code'],
      registers: [registry],
    });
    this.latency = new Histogram({
      name: 'mcp_inference_duration_seconds',
      help: 'End-to-end inference latency seen by the gateway.',
      labelNames: ['model', 'version', 'entry'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
    this.tokens = new Counter({ name: 'mcp_tokens_total', help: 'Tokens processed.', labelNames: ['model', 'kind'], registers: [registry] });
  }

  onFinished(req: InferenceRequest, o: InferenceOutcome): void {
    this.total++;
    if (!o.ok) this.failed++;
    const d = o.decision;
    const version = d?.version ? (d.model === req.model ? d.version : `${d.model}@${d.version}`) : (o.result?.version ?? '');
    this.requests.inc({ model: req.model, version, entry: req.entry, code: o.ok ? 'OK' : (o.errorCode ?? 'MCP_INTERNAL') });
    this.latency.observe({ model: req.model, version, entry: req.entry }, o.latencyMs / 1000);
    if (o.result?.usage) {
      this.tokens.inc({ model: req.model, kind: 'prompt' }, o.result.usage.promptTokens);
      this.tokens.inc({ model: req.model, kind: 'completion' }, o.result.usage.completionTokens);
    }
  }

  /** A summary for GET /api/v1/metrics. */
  summary(): { uptimeSeconds: number; requests: number; errors: number; errorRate: number } {
    return {
      uptimeSeconds: (Date.now() - this.started) / 1000,
      requests: this.total,
      errors: this.failed,
      errorRate: this.total ? this.failed / this.total : 0,
    };
  }
}
