/**
 * Router scenario harness: real gateway (PGlite in memory) in front of real fake OpenAI servers,
 * each behind its own fault-injecting proxy on loopback, and a bounded load generator over
 * REST with undici.
 */
import { Agent, request } from 'undici';
import type { ConfigInput } from '../../src/config/schema.ts';
import { buildInferenceRequest } from '../../src/inference/request.ts';
import { startFakeOpenAI, type FakeOpenAIBehavior, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { startFaultProxy, type Fault, type FaultProxy } from '../../src/testing/fault-proxy.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

export interface Upstream {
  fake: FakeOpenAIServer;
  proxy: FaultProxy;
  url: string;
}

export async function startUpstreams(n: number, behavior: Partial<FakeOpenAIBehavior> = {}, fault: Fault = {}): Promise<Upstream[]> {
  const out: Upstream[] = [];
  for (let i = 0; i < n; i++) {
    const fake = await startFakeOpenAI({ models: ['fake-model'], tokens: ['ok'], ...behavior });
    const proxy = await startFaultProxy({ target: fake.url, seed: i + 1, fault });
    out.push({ fake, proxy, url: proxy.url });
  }
  return out;
}

export async function closeUpstreams(ups: Upstream[]): Promise<void> {
  for (const u of ups) {
    await u.proxy.close();
    await u.fake.close();
  }
}

/** A `generate` model whose versions' instances point at the given upstream URLs (ids `<model>-<version>-<i>`). */
export function modelSeed(id: string, versions: Record<string, string[]>, defaultVersion?: string) {
  return {
    id,
    task: 'generate' as const,
    defaultVersion: defaultVersion ?? Object.keys(versions)[0],
    versions: Object.entries(versions).map(([version, urls]) => ({
      version,
      instances: urls.map((endpoint, i) => ({ id: `${id}-${version}-${i}`, backend: 'openai', endpoint, options: { model: 'fake-model' } })),
    })),
  };
}

/** Small, fast settings for scenario tests; `router` overrides merge one level deep. */
export function routerConfig(overrides: Record<string, Record<string, unknown> | unknown> = {}): ConfigInput['router'] {
  const base: Record<string, Record<string, unknown>> = {
    retryBudget: { ratio: 0.2, minRetriesPerSecond: 10, windowMs: 10_000 },
    circuitBreaker: { consecutiveFailures: 5, failureRateThreshold: 0.5, minRequests: 20, windowMs: 2_000, openMs: 200, maxOpenMs: 400, halfOpenMaxProbes: 1 },
    outlierDetection: { consecutiveFailures: 5, baseEjectionMs: 200, maxEjectionMs: 400, maxEjectionPercent: 34, intervalMs: 1_000 },
    healthCheck: { enabled: false, intervalMs: 100, timeoutMs: 200, healthyThreshold: 1, unhealthyThreshold: 2 },
  };
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(overrides)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && base[k] ? { ...base[k], ...(v as object) } : v;
  }
  return out as ConfigInput['router'];
}

export async function startRouterGateway(input: ConfigInput): Promise<TestGateway> {
  return startTestGateway({
    defaultPlugins: false,
    ...input,
    plugins: [{ use: 'openai', options: { timeouts: { connectMs: 500 } } }, { use: 'p2c-ewma' }, { use: 'round-robin' }, ...(input.plugins ?? [])],
  });
}

export interface Answer {
  status: number;
  code?: string;
  version?: string;
  id?: string;
  ms: number;
  routing?: Record<string, unknown>;
  details?: Record<string, unknown>;
}

/** One REST inference. */
export async function infer(
  gw: TestGateway,
  agent: Agent,
  model: string,
  headers: Record<string, string> = {},
  body: Record<string, unknown> = { prompt: 'hi' },
): Promise<Answer> {
  const t0 = performance.now();
  const r = await request(`${gw.url}/api/v1/models/${model}/inference`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const json = (await r.body.json()) as {
    version?: string;
    id?: string;
    routing?: Record<string, unknown>;
    error?: { code: string; details?: Record<string, unknown> };
  };
  return {
    status: r.statusCode,
    code: json.error?.code,
    version: json.version,
    id: json.id,
    ms: performance.now() - t0,
    routing: json.routing,
    details: json.error?.details,
  };
}

/** `total` requests with `concurrency` workers; returns every answer (in completion order). */
export async function load(
  gw: TestGateway,
  model: string,
  total: number,
  concurrency: number,
  opts: { headers?: (i: number) => Record<string, string>; agent?: Agent; onAnswer?: (a: Answer, i: number) => void } = {},
): Promise<Answer[]> {
  const agent = opts.agent ?? new Agent({ connections: concurrency, pipelining: 1 });
  try {
    return await inPool(total, concurrency, async (i) => {
      const a = await infer(gw, agent, model, opts.headers?.(i) ?? {});
      opts.onAnswer?.(a, i);
      return a;
    });
  } finally {
    if (!opts.agent) await agent.close();
  }
}

/** Runs `one(0 … total-1)` on `concurrency` workers; the answers in completion order. */
async function inPool(total: number, concurrency: number, one: (i: number) => Promise<Answer>): Promise<Answer[]> {
  const answers: Answer[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < total; i = next++) answers.push(await one(i));
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return answers;
}

/**
 * Like load(), without the HTTP hop in front of the gateway: each request is authenticated by the
 * gateway's auth strategies from `headers` and built by the entry points' request builder, then
 * handed to InferenceService, the call REST makes once it has read the body. Router, traffic split,
 * per-variant stats, records and the upstream call are the real ones; about half the CPU of load()
 * per request, for claims that need thousands of draws on a machine that may be busy.
 */
export async function loadInProcess(
  gw: TestGateway,
  model: string,
  total: number,
  concurrency: number,
  opts: { headers?: (i: number) => Record<string, string> } = {},
): Promise<Answer[]> {
  return inPool(total, concurrency, async (i) => {
    const headers = opts.headers?.(i) ?? {};
    const signal = new AbortController().signal; // one per request, like the client connection REST's comes from
    const t0 = performance.now();
    try {
      const principal = await gw.services.auth.require({ headers, entry: 'rest' });
      const input = { task: 'generate', prompt: 'hi' };
      const r = await gw.services.inference.infer(buildInferenceRequest({ headers, model, input, entry: 'rest', signal, principal }));
      return { status: 200, version: r.version, id: r.id, ms: performance.now() - t0 };
    } catch (err) {
      const e = err as { status?: number; code?: string; details?: Record<string, unknown> };
      return { status: e.status ?? 500, code: e.code, ms: performance.now() - t0, details: e.details };
    }
  });
}

/** Keeps `concurrency` workers sending requests for `ms`. */
export async function loadFor(gw: TestGateway, model: string, ms: number, concurrency: number): Promise<Answer[]> {
  const agent = new Agent({ connections: concurrency });
  const answers: Answer[] = [];
  const end = Date.now() + ms;
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < end) answers.push(await infer(gw, agent, model));
      }),
    );
  } finally {
    await agent.close();
  }
  return answers;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(cond: () => boolean | Promise<boolean>, ms = 3000, every = 10): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(every);
  }
  return cond();
}
