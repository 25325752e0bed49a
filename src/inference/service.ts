import type { Logger } from 'pino';
import { McpError, toMcpError } from '../errors.ts';
import { RoutingFailure } from '../routing/decision.ts';
import type { Admission, LimitsService } from '../limits/limits-service.ts';
import type { ResponseCache } from '../cache/response-cache.ts';
import type { Routed, Router } from '../routing/router.ts';
import type { InferenceChunk, InferenceOutput, InferenceRequest, InferenceResult, RoutingDecision } from './types.ts';

export interface InferenceOutcome {
  ok: boolean;
  errorCode?: string;
  latencyMs: number;
  result?: InferenceResult;
  decision?: RoutingDecision;
  /** Streamed answers: ms from arrival to the first chunk, and how many chunks there were. */
  firstTokenMs?: number;
  chunks?: number;
}

export interface InferenceObserver {
  /**
   * Called once per finished client request (metrics, usage records); `decision` is the router's,
   * failures included. An observer that returns a Promise holds the answer until it settles (a
   * durable audit record); when it rejects, a successful request fails with its error.
   */
  onFinished(req: InferenceRequest, outcome: InferenceOutcome): void;
}

/** A streamed answer: the chunks, and the route that serves them (known once the first chunk is out). */
export interface InferenceStream extends AsyncIterable<InferenceChunk> {
  readonly meta: () => Pick<InferenceResult, 'id' | 'model' | 'version' | 'instanceId' | 'runtime' | 'routing'> | undefined;
}

/** The routing decision behind a failure, when routing began. */
function failureDecision(err: unknown): RoutingDecision | undefined {
  return err instanceof RoutingFailure ? err.decision : undefined;
}

/** Hands the entry point an admitted call's limits state (for its RateLimit headers). */
function announced(req: InferenceRequest, a: Admission): Admission {
  if (a.policies.length) req.onLimits?.(a.policies);
  return a;
}

/** The one inference path: every entry point builds an InferenceRequest and calls this. */
export class InferenceService {
  private readonly observers: InferenceObserver[] = [];
  private cache: ResponseCache | undefined;

  constructor(
    private readonly router: Router,
    private readonly logger: Logger,
    /** Rate and token limits: every call is admitted first, and its token reservation settled when it ends. */
    private readonly limits?: LimitsService,
  ) {}

  observe(observer: InferenceObserver): void {
    this.observers.push(observer);
  }

  /** Answers deterministic requests of models that opted in from the response cache (after admission), and keeps their answers. */
  useCache(cache: ResponseCache): void {
    this.cache = cache;
  }

  /**
   * Tells the observers how a client request ended, with the router's decision when routing began;
   * returns what the answer must wait for (the observers' promises), if anything.
   */
  private report(
    req: InferenceRequest,
    started: number,
    outcome: Omit<InferenceOutcome, 'latencyMs' | 'decision'>,
    decision?: RoutingDecision,
  ): Promise<unknown> | undefined {
    const latencyMs = performance.now() - started;
    req.trace?.finished({ ...outcome, decision });
    let waits: Array<Promise<unknown>> | undefined;
    for (const o of this.observers) {
      try {
        const wait: unknown = o.onFinished(req, { ...outcome, latencyMs, decision });
        if (wait instanceof Promise) {
          wait.catch(() => {}); // handled by whoever awaits the result below
          (waits ??= []).push(wait);
        }
      } catch (err) {
        this.logger.warn({ err }, 'inference observer failed');
      }
    }
    if (!waits) return undefined;
    const all = waits.length === 1 ? waits[0]! : Promise.all(waits);
    all.catch(() => {});
    return all;
  }

  /**
   * Admits the call under the rate and token limits and hands the entry point the limits' state (RateLimit
   * headers); undefined without limits. Synchronous with the memory store: no promise on the hot path then.
   */
  private admit(req: InferenceRequest): Admission | Promise<Admission> | undefined {
    if (!this.limits?.active) return undefined;
    const a = this.limits.admit(req);
    return a instanceof Promise ? a.then((x) => announced(req, x)) : announced(req, a);
  }

  async infer(req: InferenceRequest): Promise<InferenceResult> {
    const started = performance.now();
    req.trace?.started(req);
    let admission: Admission | undefined;
    let result: InferenceResult | undefined;
    let done: { result: InferenceResult; wait: Promise<unknown> | undefined };
    const cache = this.cache;
    try {
      const admitting = this.admit(req);
      admission = admitting instanceof Promise ? await admitting : admitting;
      const plan = cache?.plan(req);
      const hit = plan ? await cache!.lookup(req, plan) : undefined;
      if (hit?.kind === 'result') {
        const { instanceId, runtime } = hit;
        result = { ...hit.output, id: req.id, model: req.model, version: plan!.version!, instanceId, latencyMs: performance.now() - started, runtime };
        done = { result, wait: this.report(req, started, { ok: true, result }) };
      } else {
        const { value, handle, decision, finish } = await this.router.route(req, (h, call) => h.loaded!.infer(req.input, call));
        result = {
          ...value,
          id: req.id,
          model: req.model,
          version: handle.version,
          instanceId: handle.id,
          latencyMs: performance.now() - started,
          runtime: handle.loaded?.runtime,
          routing: req.explain ? decision : undefined,
        };
        finish(true);
        if (plan)
          cache!.keep(plan, { kind: 'result', output: outputOf(value), instanceId: handle.id, runtime: handle.loaded?.runtime }, decision, handle.version);
        done = { result, wait: this.report(req, started, { ok: true, result }, decision) };
      }
    } catch (err) {
      const e = toMcpError(err);
      await this.report(req, started, { ok: false, errorCode: e.code }, failureDecision(err))?.catch(() => {});
      throw e;
    } finally {
      // A failed call produced nothing: its whole reservation goes back.
      void admission?.settle({ totalTokens: result?.usage?.totalTokens, producedChars: result?.text?.length ?? 0, ran: result !== undefined });
    }
    // A durable record: answered once it is committed; a refused record fails the request.
    if (done.wait) await done.wait;
    return done.result;
  }

  /**
   * Streams the answer. Failures before the first token are retried like `infer`; after the
   * first token the stream fails (never retried, the client has seen output).
   */
  stream(req: InferenceRequest): InferenceStream {
    let meta: ReturnType<InferenceStream['meta']>;
    const self = this;
    async function* run(): AsyncGenerator<InferenceChunk> {
      const started = performance.now();
      req.trace?.started(req);
      let routed: Routed<{ first: InferenceChunk | undefined; rest: AsyncIterator<InferenceChunk> | undefined }> | undefined;
      let usage: InferenceChunk['usage'];
      let finishReason: InferenceChunk['finishReason'];
      let text = '';
      let chunks = 0;
      let firstTokenMs: number | undefined;
      let rest: AsyncIterator<InferenceChunk> | undefined;
      let settled = false;
      let admission: Admission | undefined;
      let wait: Promise<unknown> | undefined;
      const cache = self.cache;
      try {
        const admitting = self.admit(req);
        admission = admitting instanceof Promise ? await admitting : admitting;
        const plan = cache?.plan(req);
        const hit = plan ? await cache!.lookup(req, plan) : undefined;
        if (hit?.kind === 'stream') {
          // Replayed as it was streamed: the same chunks, in order.
          meta = { id: req.id, model: req.model, version: plan!.version!, instanceId: hit.instanceId, runtime: hit.runtime, routing: undefined };
          for (const c of hit.chunks) {
            if (chunks++ === 0) firstTokenMs = performance.now() - started;
            text += c.text;
            usage = c.usage ?? usage;
            finishReason = c.finishReason ?? finishReason;
            yield c;
          }
          settled = true;
          wait = self.report(req, started, {
            ok: true,
            result: { ...meta, text, usage, finishReason, latencyMs: performance.now() - started },
            firstTokenMs,
            chunks,
          });
        } else {
          // The chunks kept for the cache, while they fit cache.maxEntryBytes.
          let kept: InferenceChunk[] | undefined = plan?.write ? [] : undefined;
          let keptChars = 0;
          const keep = (c: InferenceChunk) => {
            if (!kept) return;
            keptChars += c.text.length + 64;
            if (keptChars > cache!.maxEntryBytes) kept = undefined;
            else kept.push(c);
          };
          routed = await self.router.route(
            req,
            async (h, call) => {
              const loaded = h.loaded!;
              if (!loaded.stream) {
                const out = await loaded.infer(req.input, call);
                return { first: { text: out.text ?? '', finishReason: out.finishReason ?? 'stop', usage: out.usage } as InferenceChunk, rest: undefined };
              }
              const it = loaded.stream(req.input, call)[Symbol.asyncIterator]();
              const first = await it.next();
              return { first: first.done ? undefined : first.value, rest: first.done ? undefined : it };
            },
            { streaming: true },
          );
          const h = routed.handle;
          const routing = req.explain ? routed.decision : undefined;
          meta = { id: req.id, model: req.model, version: h.version, instanceId: h.id, runtime: h.loaded?.runtime, routing };
          const first = routed.value.first;
          rest = routed.value.rest;
          if (first) {
            firstTokenMs = performance.now() - started;
            chunks++;
            text += first.text;
            usage = first.usage ?? usage;
            finishReason = first.finishReason ?? finishReason;
            keep(first);
            yield first;
          }
          if (rest) {
            for (;;) {
              const next = await rest.next();
              if (next.done) break;
              chunks++;
              text += next.value.text;
              usage = next.value.usage ?? usage;
              finishReason = next.value.finishReason ?? finishReason;
              keep(next.value);
              yield next.value;
            }
          }
          settled = true;
          routed.finish(true);
          // Only a stream that ended well is kept (a failure mid-way throws before this line).
          if (plan && kept) cache!.keep(plan, { kind: 'stream', chunks: kept, instanceId: h.id, runtime: h.loaded?.runtime }, routed.decision, h.version);
          const result = { ...meta, text, usage, finishReason, latencyMs: performance.now() - started };
          wait = self.report(req, started, { ok: true, result, firstTokenMs, chunks }, routed.decision);
        }
      } catch (err) {
        settled = true;
        const e = toMcpError(req.signal.aborted ? new McpError('MCP_CANCELLED') : err);
        routed?.finish(false, e);
        await self.report(req, started, { ok: false, errorCode: e.code }, routed?.decision ?? failureDecision(err))?.catch(() => {});
        throw e;
      } finally {
        if (!settled) {
          // The consumer stopped early (return(): a graphql-ws `complete`, a `break`): stop the
          // backend's stream (closes the upstream request) and release the instance.
          const e = new McpError('MCP_CANCELLED', 'the client stopped reading the stream');
          try {
            await rest?.return?.();
          } catch {
            /* the stream is abandoned either way */
          }
          routed?.finish(false, e);
          void self.report(req, started, { ok: false, errorCode: e.code }, routed?.decision)?.catch(() => {});
        }
        // Reconcile the token reservation with what was produced, finished or cut short.
        void admission?.settle({ totalTokens: usage?.totalTokens, producedChars: text.length, ran: text.length > 0 || usage !== undefined });
      }
      // The stream ends (the client's [DONE]) once a durable record is committed; a refused record ends it with an error.
      if (wait) await wait;
    }
    const gen = run();
    return { [Symbol.asyncIterator]: () => gen, meta: () => meta };
  }
}

/** What the cache keeps of a backend's answer: the output fields, nothing the backend added besides. */
function outputOf(v: InferenceOutput): InferenceOutput {
  const { text, finishReason, tensors, embeddings, usage } = v;
  return { text, finishReason, tensors, embeddings, usage };
}
