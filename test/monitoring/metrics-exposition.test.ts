import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { pipelinedRequests } from '../support/pipelined-http.ts';

const ECHO = [{ use: './examples/capibara-plugin-echo' }];
const REGISTER = 'mutation { registerModel(input: { id: "kept", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }';
const OPENMETRICS = 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5';
const PROMTOOL = spawnSync('promtool', ['--version']).status === 0;

/** Distinct values of one label across the samples of a metric family. */
function labelValues(text: string, family: string, label: string): Set<string> {
  const out = new Set<string>();
  const re = new RegExp(`${label}="([^"]*)"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(family)) continue;
    const m = re.exec(line);
    if (m) out.add(m[1]!);
  }
  return out;
}

/** The value of the one sample line that starts with `prefix`. */
function sample(text: string, prefix: string): number {
  const lines = text.split('\n').filter((l) => l.startsWith(prefix));
  expect(lines, prefix).toHaveLength(1);
  return Number(lines[0]!.split(' ').pop());
}

describe('GET /metrics and GET /api/v1/metrics', () => {
  let gw: TestGateway;
  const inferenceIds: string[] = [];
  const scrape = async (accept?: string) => (await fetch(`${gw.url}/metrics`, accept ? { headers: { accept } } : {})).text();
  const infer = (model: string) => fetch(`${gw.url}/api/v1/models/${encodeURIComponent(model)}/inference`, { method: 'POST', body: '{"input":"hello"}' });

  beforeAll(async () => {
    gw = await startTestGateway({ plugins: ECHO });
    expect((await gw.gql(REGISTER)).errors).toBeUndefined();
    for (let i = 0; i < 3; i++) {
      const r = await infer('kept');
      expect(r.status).toBe(200);
      inferenceIds.push(((await r.json()) as { id: string }).id);
    }
    // A streamed chat completion: time to first token, inter-token latency and tokens/s.
    const chat = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'kept', stream: true, messages: [{ role: 'user', content: 'one two three four' }] }),
    });
    expect(chat.status).toBe(200);
    expect(await chat.text()).toContain('[DONE]');
  }, 60_000);
  afterAll(() => gw?.close());

  it('10,000 requests for random unknown model names add at most one label value', async () => {
    const first = await scrape();
    expect((await infer(`nope-${randomUUID()}`)).status).toBe(404);
    const before = await scrape();
    const families = ['mcp_inference_requests_total', 'mcp_inference_duration_seconds_bucket', 'mcp_inference_requests_by_role_total', 'mcp_tokens_total'];
    const modelsBefore = new Set(families.flatMap((f) => [...labelValues(first, f, 'model')]));
    // Series of the request path (instance health series follow probes and breakers, on their own schedule).
    const modelSeries = (text: string) =>
      new Set(
        text
          .split('\n')
          .filter((l) => l.includes('model="') && !l.startsWith('mcp_instance_'))
          .map((l) => l.slice(0, l.lastIndexOf(' '))),
      );
    const seriesBefore = modelSeries(before);
    // The other 9,999 on the same REST route, pipelined on 16 keep-alive sockets: fetch would spend as much
    // CPU per request as the gateway, and the subject here is the gateway's label resolution.
    const statuses = await pipelinedRequests(
      gw.url,
      9_999,
      () => ({ method: 'POST', path: `/api/v1/models/${encodeURIComponent(`nope-${randomUUID()}`)}/inference`, body: '{"input":"hello"}' }),
      { timeoutMs: 200_000 },
    );
    expect(Object.fromEntries(statuses)).toEqual({ 404: 9_999 });
    const after = await scrape();
    const modelsAfter = new Set(families.flatMap((f) => [...labelValues(after, f, 'model')]));
    const newModels = [...modelsAfter].filter((m) => !modelsBefore.has(m));
    expect(newModels.length).toBeLessThanOrEqual(1);
    expect([...modelsAfter].sort()).toEqual(['__unknown__', 'kept']);
    expect(after).not.toMatch(/model="nope/);
    expect(sample(after, 'mcp_inference_requests_total{model="__unknown__",version="",entry="rest",code="MCP_MODEL_NOT_FOUND"}')).toBe(10_000);
    // After the first unknown request (which made the fixed set of the unknown label), the others add no series.
    const added = [...modelSeries(after)].filter((l) => !seriesBefore.has(l));
    expect(added).toEqual([]);
  }, 240_000);

  it('counts requests, latency, tokens and streaming figures under registry labels, with conventional names and types', async () => {
    const text = await scrape();
    expect(sample(text, 'mcp_inference_requests_total{model="kept",version="v1",entry="rest",code="OK"}')).toBe(3);
    expect(sample(text, 'mcp_inference_duration_seconds_count{model="kept",version="v1",entry="rest"}')).toBe(3);
    expect(sample(text, 'mcp_inference_duration_seconds_bucket{model="kept",version="v1",entry="rest",le="+Inf"}')).toBe(3);
    expect(sample(text, 'mcp_time_to_first_token_seconds_count{model="kept",version="v1"}')).toBe(1);
    expect(sample(text, 'mcp_inter_token_latency_seconds_count{model="kept",version="v1"}')).toBe(1);
    expect(sample(text, 'mcp_generation_tokens_per_second_count{model="kept",version="v1"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'mcp_tokens_total{model="kept",kind="completion"}')).toBeGreaterThan(0);
    // Auth is off in this gateway: the anonymous principal has the admin role.
    expect(sample(text, 'mcp_inference_requests_by_role_total{model="kept",role="admin"}')).toBe(4);
    expect(sample(text, 'mcp_instance_inflight_requests{model="kept",version="v1"')).toBe(0);
    expect(sample(text, 'mcp_instance_ready{model="kept",version="v1"')).toBe(1);
    expect(sample(text, 'mcp_worker_up{worker="embedded"}')).toBe(1);
    expect(text).toMatch(/^# TYPE mcp_tfjs_batches_total counter$/m);
    expect(text).toMatch(/^# TYPE mcp_tfjs_queue_full_rejections_total counter$/m);
    expect(text).toMatch(/^# TYPE mcp_breaker_transitions_total counter$/m);
    expect(text).toMatch(/^# TYPE mcp_router_retries_total counter$/m);
    expect(text).toMatch(/^process_cpu_seconds_total /m);
    expect(text).not.toMatch(/process_process_|mcp_process_/);
  });

  it('submitFeedback scores show as mcp_feedback_score (accuracy = sum / count)', async () => {
    const fb = 'mutation($id: ID!, $s: Float!) { submitFeedback(inferenceId: $id, score: $s) { version } }';
    for (const [i, id] of inferenceIds.entries()) expect((await gw.gql(fb, { id, s: i === 0 ? 0 : 1 })).errors).toBeUndefined();
    const text = await scrape();
    expect(sample(text, 'mcp_feedback_score_count{model="kept",version="v1"}')).toBe(3);
    expect(sample(text, 'mcp_feedback_score_sum{model="kept",version="v1"}')).toBe(2);
  });

  it.skipIf(!PROMTOOL)('passes promtool check metrics (skipped when promtool, Debian package prometheus, is not installed)', async () => {
    const text = await scrape();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('answers OpenMetrics when asked, and the text format stays unchanged afterwards', async () => {
    const res = await fetch(`${gw.url}/metrics`, { headers: { accept: OPENMETRICS } });
    expect(res.headers.get('content-type')).toMatch(/^application\/openmetrics-text; version=1\.0\.0/);
    const om = await res.text();
    expect(om.endsWith('# EOF\n')).toBe(true);
    expect(om).toMatch(/^# TYPE mcp_inference_requests counter$/m);
    expect(om).toMatch(/^mcp_inference_requests_total\{model="kept",version="v1",entry="rest",code="OK"\} 3$/m);
    expect(om).toMatch(/^# TYPE mcp_inference_duration_seconds histogram$/m);
    const text = await scrape();
    expect(text).toMatch(/^# TYPE mcp_inference_requests_total counter$/m);
    expect(text).toMatch(/^mcp_inference_requests_total\{model="kept",version="v1",entry="rest",code="OK"\} 3$/m);
    expect(text).not.toContain('# EOF');
  });

  it('GET /api/v1/metrics gives latency, throughput, error rate and queue depth per model', async () => {
    const body = (await (await fetch(`${gw.url}/api/v1/metrics`)).json()) as {
      requests: number;
      models: Array<{
        model: string;
        requests: number;
        errors: number;
        errorRate: number;
        throughputPerSecond: number;
        queueDepth: number;
        latencyMs: { p50: number; p95: number; p99: number; mean: number };
      }>;
    };
    const kept = body.models.find((m) => m.model === 'kept')!;
    expect(kept).toMatchObject({ requests: 4, errors: 0, errorRate: 0, queueDepth: 0 });
    expect(kept.latencyMs.p50).toBeGreaterThan(0);
    expect(kept.latencyMs.p99).toBeGreaterThanOrEqual(kept.latencyMs.p50);
    expect(kept.throughputPerSecond).toBeGreaterThanOrEqual(0);
    const unknown = body.models.find((m) => m.model === '__unknown__');
    expect(unknown).toMatchObject({ errors: 10_000, errorRate: 1 });
    // The flood took seconds: the once-a-second snapshots saw part of it.
    expect((unknown as { throughputPerSecond: number }).throughputPerSecond).toBeGreaterThan(0);
    expect(body.models.map((m) => m.model).sort()).toEqual(['__unknown__', 'kept']);
  });
});

describe('GET /metrics with auth on', () => {
  it('needs metrics:read unless auth.publicMetrics', async () => {
    const gw = await startTestGateway({ plugins: ECHO, auth: { enabled: true } });
    try {
      expect((await fetch(`${gw.url}/metrics`)).status).toBe(401);
      const ok = await fetch(`${gw.url}/metrics`, { headers: { ...(await gw.login()), accept: OPENMETRICS } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('# EOF');
    } finally {
      await gw.close();
    }
    const open = await startTestGateway({ plugins: ECHO, auth: { enabled: true, publicMetrics: true } });
    try {
      expect((await fetch(`${open.url}/metrics`)).status).toBe(200);
    } finally {
      await open.close();
    }
  }, 120_000);
});
