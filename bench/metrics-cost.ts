/**
 * Metric recording cost per inference request: µs per GatewayMetrics.onFinished (requests by code,
 * latency histogram, role, tokens, retries; streaming figures for a share of the requests), side by
 * side in one run with two prom-client ways of recording the same request, and the minor GCs each
 * way causes (a proxy for allocation: none per request means none in a million requests).
 *
 *   npx tsx bench/metrics-cost.ts            # BENCH_REQUESTS (default 1,000,000) × BENCH_RUNS (default 5), median
 *
 * 0. The loop alone, for scale.
 * a. GatewayMetrics (src/monitoring): series looked up by model → version → entry, numbers updated.
 * b. prom-client, a label object per call: what GatewayMetrics did before (inc/observe with labels).
 * c. prom-client children kept per series (`.labels()` once): still hashes the labels on every call.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { Counter, Histogram, Registry } from 'prom-client';
import type { InferenceOutcome } from '../src/inference/service.ts';
import type { InferenceRequest, RoutingDecision } from '../src/inference/types.ts';
import { GatewayMetrics } from '../src/monitoring/metrics.ts';

const N = Number(process.env.BENCH_REQUESTS ?? 1_000_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const MODELS = ['chat', 'embed', 'classify', 'vision'];
const ENTRIES = ['graphql', 'rest', 'openai', 'kserve'];
const signal = new AbortController().signal;

// 1,000 prepared requests and outcomes (what the inference service hands its observers).
const cases: Array<{ req: InferenceRequest; o: InferenceOutcome }> = Array.from({ length: 1000 }, (_, i) => {
  const model = MODELS[i % MODELS.length]!;
  const version = i % 10 === 0 ? 'canary' : 'v1';
  const ok = i % 50 !== 0;
  const generative = model === 'chat';
  const decision: RoutingDecision = {
    model,
    version,
    balancer: 'p2c-ewma',
    candidates: [],
    chosen: `${model}-1`,
    attempts: [{ instanceId: `${model}-1`, version, outcome: ok ? 'ok' : 'error', latencyMs: 3 }],
    fallbacks: [],
  };
  const usage = generative ? { promptTokens: 20, completionTokens: 64, totalTokens: 84 } : undefined;
  const latencyMs = 2 + (i % 97);
  const req = {
    id: `r${i}`,
    model,
    input: { task: 'generate', prompt: 'x' },
    stream: generative && i % 2 === 0,
    signal,
    entry: ENTRIES[i % ENTRIES.length]!,
    principal: { id: `key-${i % 100}`, via: 'api-key', roles: ['developer'] },
  } as InferenceRequest;
  const result = ok ? { id: req.id, model, version, instanceId: decision.chosen, latencyMs, ...(usage ? { usage } : {}) } : undefined;
  const o: InferenceOutcome = {
    ok,
    latencyMs,
    decision,
    ...(ok ? { result } : { errorCode: 'MCP_UPSTREAM_ERROR' }),
    ...(req.stream && ok ? { firstTokenMs: 1.5, chunks: 64 } : {}),
  };
  return { req, o };
});

type Recorder = (req: InferenceRequest, o: InferenceOutcome) => void;

function ours(): Recorder {
  const m = new GatewayMetrics(new Registry(), { knownModel: (id) => MODELS.includes(id), roles: new Set(['admin', 'developer']) });
  return (req, o) => m.onFinished(req, o);
}

const BUCKETS = [0.0005, 0.00125, 0.003, 0.008, 0.02, 0.05, 0.12, 0.3, 0.75, 1.9, 4.8, 12, 30, 75, 186, 466];

function promClientPerCall(): Recorder {
  const r = new Registry();
  const requests = new Counter({ name: 'req_total', help: 'h', labelNames: ['model', 'version', 'entry', 'code'], registers: [r] });
  const latency = new Histogram({ name: 'lat_seconds', help: 'h', labelNames: ['model', 'version', 'entry'], buckets: BUCKETS, registers: [r] });
  const tokens = new Counter({ name: 'tok_total', help: 'h', labelNames: ['model', 'kind'], registers: [r] });
  const byRole = new Counter({ name: 'role_total', help: 'h', labelNames: ['model', 'role'], registers: [r] });
  const ttft = new Histogram({ name: 'ttft_seconds', help: 'h', labelNames: ['model', 'version'], buckets: BUCKETS, registers: [r] });
  return (req, o) => {
    const d = o.decision!;
    requests.inc({ model: req.model, version: d.version, entry: req.entry, code: o.ok ? 'OK' : (o.errorCode ?? 'MCP_INTERNAL') });
    latency.observe({ model: req.model, version: d.version, entry: req.entry }, o.latencyMs / 1000);
    byRole.inc({ model: req.model, role: req.principal?.roles[0] ?? 'anonymous' });
    if (o.result?.usage) {
      tokens.inc({ model: req.model, kind: 'prompt' }, o.result.usage.promptTokens);
      tokens.inc({ model: req.model, kind: 'completion' }, o.result.usage.completionTokens);
    }
    if (o.firstTokenMs !== undefined) ttft.observe({ model: req.model, version: d.version }, o.firstTokenMs / 1000);
  };
}

function promClientChildren(): Recorder {
  const r = new Registry();
  const requests = new Counter({ name: 'req_total', help: 'h', labelNames: ['model', 'version', 'entry', 'code'], registers: [r] });
  const latency = new Histogram({ name: 'lat_seconds', help: 'h', labelNames: ['model', 'version', 'entry'], buckets: BUCKETS, registers: [r] });
  const tokens = new Counter({ name: 'tok_total', help: 'h', labelNames: ['model', 'kind'], registers: [r] });
  const byRole = new Counter({ name: 'role_total', help: 'h', labelNames: ['model', 'role'], registers: [r] });
  const ttft = new Histogram({ name: 'ttft_seconds', help: 'h', labelNames: ['model', 'version'], buckets: BUCKETS, registers: [r] });
  type Kids = { req: Map<string, ReturnType<typeof requests.labels>>; lat: ReturnType<typeof latency.labels>; ttft: ReturnType<typeof ttft.labels> };
  const perKey = new Map<string, Map<string, Map<string, Kids>>>();
  const perModel = new Map<
    string,
    { prompt: ReturnType<typeof tokens.labels>; completion: ReturnType<typeof tokens.labels>; role: ReturnType<typeof byRole.labels> }
  >();
  return (req, o) => {
    const d = o.decision!;
    let mm = perKey.get(req.model);
    if (!mm) perKey.set(req.model, (mm = new Map()));
    let vm = mm.get(d.version);
    if (!vm) mm.set(d.version, (vm = new Map()));
    let k = vm.get(req.entry);
    if (!k) {
      const labels = { model: req.model, version: d.version, entry: req.entry };
      vm.set(req.entry, (k = { req: new Map(), lat: latency.labels(labels), ttft: ttft.labels({ model: req.model, version: d.version }) }));
    }
    const code = o.ok ? 'OK' : (o.errorCode ?? 'MCP_INTERNAL');
    let c = k.req.get(code);
    if (!c) k.req.set(code, (c = requests.labels({ model: req.model, version: d.version, entry: req.entry, code })));
    c.inc();
    k.lat.observe(o.latencyMs / 1000);
    let pm = perModel.get(req.model);
    if (!pm) {
      const model = req.model;
      perModel.set(
        model,
        (pm = {
          prompt: tokens.labels({ model, kind: 'prompt' }),
          completion: tokens.labels({ model, kind: 'completion' }),
          role: byRole.labels({ model, role: 'developer' }),
        }),
      );
    }
    pm.role.inc();
    if (o.result?.usage) {
      pm.prompt.inc(o.result.usage.promptTokens);
      pm.completion.inc(o.result.usage.completionTokens);
    }
    if (o.firstTokenMs !== undefined) k.ttft.observe(o.firstTokenMs / 1000);
  };
}

let minorGcs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === 1) minorGcs++;
}).observe({ entryTypes: ['gc'] });

async function run(record: Recorder): Promise<{ us: number; gcs: number }> {
  for (let i = 0; i < 50_000; i++) record(cases[i % 1000]!.req, cases[i % 1000]!.o); // warm-up (and series creation)
  await new Promise((r) => setTimeout(r, 20));
  const gc0 = minorGcs;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const c = cases[i % 1000]!;
    record(c.req, c.o);
  }
  const us = ((performance.now() - t0) * 1000) / N;
  await new Promise((r) => setTimeout(r, 20)); // let the GC observer report
  return { us, gcs: minorGcs - gc0 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
let sink = 0;
const variants: Array<[string, () => Recorder]> = [
  ['0. the loop alone (reads the latency)', () => (_req, o) => void (sink += o.latencyMs)],
  ['a. GatewayMetrics (series kept, numbers updated)', ours],
  ['b. prom-client, label object per call (before)', promClientPerCall],
  ['c. prom-client, children kept per series', promClientChildren],
];
const results = new Map<string, { us: number[]; gcs: number[] }>(variants.map(([name]) => [name, { us: [], gcs: [] }]));
for (let r = 0; r < RUNS; r++) {
  // Alternate the order between runs so no variant always runs first.
  const order = r % 2 === 0 ? variants : [...variants].reverse();
  for (const [name, make] of order) {
    const out = await run(make());
    results.get(name)!.us.push(out.us);
    results.get(name)!.gcs.push(out.gcs);
  }
}
const base = median(results.get(variants[1]![0])!.us);
console.log(`metric recording per request, ${N.toLocaleString('en')} requests × ${RUNS} runs (median); minor GCs per ${N.toLocaleString('en')} requests`);
console.log('| variant | µs/request | ratio to a | minor GCs |');
console.log('|---|---:|---:|---:|');
if (sink < 0) console.log(sink);
for (const [name, r] of results) {
  const us = median(r.us);
  console.log(`| ${name} | ${us.toFixed(3)} | ${(us / base).toFixed(1)}× | ${median(r.gcs)} |`);
}
