import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { InferenceRequest, RoutingDecision } from '../inference/types.ts';
import { HistogramFamily } from './families.ts';
import { GatewayMetrics, UNKNOWN_LABEL } from './metrics.ts';

function request(model: string, roles?: string[]): InferenceRequest {
  return {
    id: 'r',
    model,
    input: { task: 'generate', prompt: 'hi' } as InferenceRequest['input'],
    stream: false,
    signal: new AbortController().signal,
    entry: 'graphql',
    ...(roles ? { principal: { id: 'p-1', via: 'api-key', roles } } : {}),
  };
}

function decision(over: Partial<RoutingDecision> = {}): RoutingDecision {
  return { model: 'chat', version: 'v2', balancer: 'p2c-ewma', candidates: [], chosen: 'i-1', attempts: [], fallbacks: [], ...over };
}

const attempt = (instanceId: string, outcome: 'ok' | 'error') => ({ instanceId, version: 'v2', outcome, latencyMs: 1 });

function setup(): { registry: Registry; metrics: GatewayMetrics; text: () => Promise<string> } {
  const registry = new Registry();
  const metrics = new GatewayMetrics(registry, { knownModel: (id) => id === 'chat' || id === 'backup', roles: new Set(['admin', 'developer']) });
  return { registry, metrics, text: () => registry.metrics() };
}

describe('HistogramFamily', () => {
  it('renders exactly what a prom-client Histogram renders for the same observations', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const buckets = [0.001, 0.01, 0.1, 1, 10];
    const a = new HistogramFamily('h_seconds', 'help', ['model'], buckets, ours).of({ model: 'm' });
    const b = new Histogram({ name: 'h_seconds', help: 'help', labelNames: ['model'], buckets, registers: [theirs] }).labels({ model: 'm' });
    for (const v of [0, 0.001, 0.0011, 0.05, 0.1, 3, 10, 11, 1e6]) {
      a.observe(v);
      b.observe(v);
    }
    // The same samples (prom-client puts `le` first, we put it last).
    const normal = (t: string) => t.replace(/\{([^}]*)\}/g, (_, inner: string) => `{${inner.split(',').sort().join(',')}}`);
    expect(normal(await ours.metrics())).toBe(normal(await theirs.metrics()));
  });
});

describe('GatewayMetrics', () => {
  it('counts retries, hedges and fallbacks from the routing decision, a fallback model under model@version', async () => {
    const { metrics, text } = setup();
    metrics.onFinished(request('chat', ['admin']), {
      ok: true,
      latencyMs: 12,
      decision: decision({ attempts: [attempt('i-1', 'error'), attempt('i-2', 'ok')] }),
    });
    metrics.onFinished(request('chat', ['admin']), {
      ok: true,
      latencyMs: 30,
      decision: decision({ attempts: [attempt('i-1', 'ok'), attempt('i-2', 'ok')], hedged: true }),
    });
    metrics.onFinished(request('chat', ['admin']), {
      ok: false,
      errorCode: 'MCP_UPSTREAM_ERROR',
      latencyMs: 40,
      decision: decision({ model: 'backup', version: 'v1', fallbacks: ['backup'], attempts: [attempt('i-1', 'error'), attempt('b-1', 'error')] }),
    });
    const t = await text();
    expect(t).toContain('mcp_router_retries_total{model="chat",version="v2"} 2');
    expect(t).toContain('mcp_router_hedged_requests_total{model="chat",version="v2"} 1');
    expect(t).toContain('mcp_router_fallbacks_total{model="chat"} 1');
    expect(t).toContain('mcp_router_retries_total{model="chat",version="backup@v1"} 1');
    expect(t).toContain('mcp_inference_requests_total{model="chat",version="backup@v1",entry="graphql",code="MCP_UPSTREAM_ERROR"} 1');
    expect(t).toContain('mcp_inference_requests_total{model="chat",version="v2",entry="graphql",code="OK"} 2');
  });

  it('labels principals by a known role only: anonymous without a principal, other for a role outside the role table', async () => {
    const { metrics, text } = setup();
    metrics.onFinished(request('chat', ['developer']), { ok: true, latencyMs: 1, decision: decision() });
    metrics.onFinished(request('chat', ['tenant-42-custom']), { ok: true, latencyMs: 1, decision: decision() });
    metrics.onFinished(request('chat', []), { ok: true, latencyMs: 1, decision: decision() });
    metrics.onFinished(request('chat'), { ok: true, latencyMs: 1, decision: decision() });
    const t = await text();
    expect(t).toContain('mcp_inference_requests_by_role_total{model="chat",role="developer"} 1');
    expect(t).toContain('mcp_inference_requests_by_role_total{model="chat",role="other"} 2');
    expect(t).toContain('mcp_inference_requests_by_role_total{model="chat",role="anonymous"} 1');
    expect(t).not.toContain('tenant-42');
    expect(t).not.toContain('p-1');
  });

  it('streaming figures: time to first token, inter-token latency and tokens per second', async () => {
    const { metrics, text } = setup();
    const usage = { promptTokens: 3, completionTokens: 10, totalTokens: 13 };
    const result = { id: 'r', model: 'chat', version: 'v2', instanceId: 'i-1', latencyMs: 1000, text: 'x', usage };
    metrics.onFinished(request('chat'), { ok: true, latencyMs: 1000, firstTokenMs: 100, chunks: 10, result, decision: decision() });
    const t = await text();
    expect(t).toContain('mcp_time_to_first_token_seconds_sum{model="chat",version="v2"} 0.1');
    expect(t).toContain('mcp_inter_token_latency_seconds_sum{model="chat",version="v2"} 0.1');
    expect(t).toContain('mcp_generation_tokens_per_second_sum{model="chat",version="v2"} 11.11');
    expect(t).toContain('mcp_tokens_total{model="chat",kind="completion"} 10');
  });

  it('feedback scores per registry model; an unknown model is one label; a deleted model leaves the exposition', async () => {
    const { metrics, text } = setup();
    metrics.onFeedback('chat', 'v2', 1);
    metrics.onFeedback('chat', 'v2', 0.5);
    metrics.onFeedback('gone-model', 'v9', 0.3);
    metrics.onFinished(request('chat'), { ok: true, latencyMs: 1, decision: decision() });
    let t = await text();
    expect(t).toContain('mcp_feedback_score_sum{model="chat",version="v2"} 1.5');
    expect(t).toContain('mcp_feedback_score_count{model="chat",version="v2"} 2');
    expect(t).toContain(`mcp_feedback_score_count{model="${UNKNOWN_LABEL}",version=""} 1`);
    expect(t).not.toContain('gone-model');
    metrics.forgetModel('chat');
    t = await text();
    expect(t).not.toContain('model="chat"');
    expect(metrics.summary().models.map((m) => m.model)).toEqual([]);
  });
});
