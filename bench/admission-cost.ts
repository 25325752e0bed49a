/**
 * Admission cost: µs per request for the admission step the router runs on every request
 * (AdmissionService.admit, then the ticket's release), in one run, interleaved rounds:
 *   - baseline: the same loop calling a no-op in place of admission;
 *   - default: a model with no limit (admission.defaults, maxConcurrentPerInstance 0 — today's behaviour);
 *   - limited, no contention: 64 slots per instance, a slot is free (counted, tenant stats, wait histogram);
 *   - limited, queued: every slot taken, each request waits in the queue and gets the slot the previous one releases;
 *   - limited, slot free, 2 replicas: the same with the capacity shared with another gateway replica (the share path).
 * With BENCH_BEFORE=<folder holding an older src/ tree> the same cases run on that build too, interleaved in the
 * same rounds (before/after ratios from one run), e.g. the build before admission shares capacity across replicas:
 *
 *   mkdir -p .bench-before && git archive e1cb61f src | tar -x -C .bench-before
 *   BENCH_BEFORE=.bench-before npx tsx --conditions=capibara-source bench/admission-cost.ts
 *
 *   npx tsx --conditions=capibara-source bench/admission-cost.ts        # BENCH_N (default 1,000,000), BENCH_ROUNDS (5)
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
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
type Service = Pick<AdmissionService, 'admit'>;
const config = admissionConfigSchema.parse({
  models: { limited: { maxConcurrentPerInstance: 64 }, queued: { maxConcurrentPerInstance: 64, maxQueueSize: 10 } },
});
const makeService = (S: typeof AdmissionService) => new S(config, { view: (id) => views.get(id) }, new Registry());
const service = makeService(AdmissionService);
/** The capacity shared with a second replica: this one admits its share (32 of 64). */
const shared = makeService(AdmissionService);
shared.replicasChanged(2, 0);
const beforeDir = process.env.BENCH_BEFORE;
const before: Service | undefined = beforeDir
  ? makeService(
      ((await import(pathToFileURL(resolve(beforeDir, 'src/admission/admission-service.ts')).href)) as { AdmissionService: typeof AdmissionService })
        .AdmissionService,
    )
  : undefined;
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
async function queuedLoop(service: Service): Promise<number> {
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

const real = (s: Service) => (req: InferenceRequest, model: string, version: string, d: number) => s.admit(req, model, version, d, signal) as AdmissionTicket;
const cases: Record<string, () => Promise<number> | number> = { baseline: () => syncLoop('free', noop) };
const builds = [
  ['before: ', before],
  ['', service],
] as const;
// Each case of the two builds side by side, so a pair runs at the same moment's load.
const kinds: Record<string, (s: Service) => Promise<number> | number> = {
  'default (no limit)': (s) => syncLoop('free', real(s)),
  'limited, slot free': (s) => syncLoop('limited', real(s)),
  'limited, queued': (s) => queuedLoop(s),
};
for (const [kind, run] of Object.entries(kinds)) for (const [tag, s] of builds) if (s) cases[tag + kind] = () => run(s);
cases['limited, slot free, 2 replicas'] = () => syncLoop('limited', real(shared));
const results: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
// Odd rounds run the cases in reverse order: no case always runs right after the same other one.
for (let r = 0; r < ROUNDS; r++) {
  const order = Object.entries(cases);
  for (const [name, f] of r % 2 ? order.reverse() : order) results[name]!.push(await f());
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(results.baseline!);
console.log(`admission cost, ${N.toLocaleString('en')} requests per round (queued: ${(N / 10).toLocaleString('en')}), median of ${ROUNDS} rounds`);
console.log('| case | µs per request | added over baseline (µs) | × before (median of per-round ratios) |');
console.log('|---|---:|---:|---:|');
for (const [name, xs] of Object.entries(results)) {
  const m = median(xs);
  // The median of the rounds' own ratios (both builds ran one after the other in each round).
  const old = results[`before: ${name}`];
  const ratio = old ? median(xs.map((x, i) => x / old[i]!)).toFixed(2) : '—';
  console.log(`| ${name} | ${m.toFixed(3)} | ${name === 'baseline' ? '—' : (m - base).toFixed(3)} | ${ratio} |`);
}
if (sink === -1) console.log(sink);
