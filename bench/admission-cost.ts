/**
 * Admission cost: µs per request for the admission step the router runs on every request
 * (AdmissionService.admit, then the ticket's release), in one run, interleaved rounds:
 *   - baseline: the same loop calling a no-op in place of admission;
 *   - default: a model with no limit (admission.defaults, maxConcurrentPerInstance 0 — today's behaviour);
 *   - limited, no contention: 64 slots per instance, a slot is free (counted, tenant stats, wait histogram);
 *   - limited, queued: every slot taken, each request waits in the queue and gets the slot the previous one releases.
 *
 *   npx tsx --conditions=capibara-source bench/admission-cost.ts        # BENCH_N (default 1,000,000), BENCH_ROUNDS (5)
 */
import { Registry } from 'prom-client';
import { AdmissionService } from '../src/admission/admission-service.ts';
import { admissionConfigSchema } from '../src/admission/config.ts';
import type { AdmissionTicket } from '../src/admission/ticket.ts';
import { parseInferenceInput } from '../src/inference/request.ts';
import type { InferenceRequest } from '../src/inference/types.ts';
import type { InstanceHandle, ModelView } from '../src/models/fleet.ts';

const N = Number(process.env.BENCH_N ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

const handle = { id: 'i1', modelId: 'm', version: 'v1', status: 'ready', draining: false, loaded: {}, outstanding: 0, weight: 1 } as unknown as InstanceHandle;
const view = (id: string): ModelView => ({ id, task: 'chat', defaultVersion: 'v1', routing: {}, versions: new Map([['v1', [handle]]]) }) as ModelView;
const views = new Map(['free', 'limited', 'queued'].map((id) => [id, view(id)]));
const service = new AdmissionService(
  admissionConfigSchema.parse({ models: { limited: { maxConcurrentPerInstance: 64 }, queued: { maxConcurrentPerInstance: 64, maxQueueSize: 10 } } }),
  { view: (id) => views.get(id) },
  new Registry(),
);
const signal = new AbortController().signal;
const input = parseInferenceInput({ task: 'chat', messages: [{ role: 'user', content: 'hi' }] });
const reqs: InferenceRequest[] = Array.from({ length: 16 }, (_, i) => ({
  id: `r${i}`,
  model: 'm',
  input,
  stream: false,
  signal,
  entry: 'openai',
  principal: { id: `key-${i}`, via: 'api-key', roles: ['developer'] },
}));
const deadline = Date.now() + 3_600_000;

let sink = 0;
const noop = (req: InferenceRequest, model: string, version: string, d: number): AdmissionTicket => {
  sink += d + req.id.length + model.length + version.length;
  return { release() {} };
};

function syncLoop(model: string, admit: typeof noop): number {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const t = admit(reqs[i & 15]!, model, 'v1', deadline) as AdmissionTicket;
    t.release();
  }
  return ((performance.now() - t0) * 1000) / N;
}

/** Every slot taken: each request queues and is granted the slot the previous holder releases. */
async function queuedLoop(): Promise<number> {
  const held: AdmissionTicket[] = [];
  for (let i = 0; i < 64; i++) held.push(service.admit(reqs[i & 15]!, 'queued', 'v1', deadline, signal) as AdmissionTicket);
  const n = Math.max(1, N / 10);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const waiting = service.admit(reqs[i & 15]!, 'queued', 'v1', deadline, signal) as Promise<AdmissionTicket>;
    held[i & 63]!.release();
    held[i & 63] = await waiting;
  }
  const us = ((performance.now() - t0) * 1000) / n;
  for (const t of held) t.release();
  return us;
}

const real = (req: InferenceRequest, model: string, version: string, d: number) => service.admit(req, model, version, d, signal) as AdmissionTicket;
const cases: Record<string, () => Promise<number> | number> = {
  baseline: () => syncLoop('free', noop),
  'default (no limit)': () => syncLoop('free', real),
  'limited, slot free': () => syncLoop('limited', real),
  'limited, queued': () => queuedLoop(),
};
const results: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (let r = 0; r < ROUNDS; r++) for (const [name, f] of Object.entries(cases)) results[name]!.push(await f());

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(results.baseline!);
console.log(`admission cost, ${N.toLocaleString('en')} requests per round (queued: ${(N / 10).toLocaleString('en')}), median of ${ROUNDS} rounds`);
console.log('| case | µs per request | added over baseline (µs) |');
console.log('|---|---:|---:|');
for (const [name, xs] of Object.entries(results)) {
  const m = median(xs);
  console.log(`| ${name} | ${m.toFixed(3)} | ${name === 'baseline' ? '—' : (m - base).toFixed(3)} |`);
}
if (sink === -1) console.log(sink);
