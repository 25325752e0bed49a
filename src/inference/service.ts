import type { Logger } from 'pino';
import { McpError, toMcpError } from '../errors.ts';
import type { InstanceHandle } from '../models/fleet.ts';
import type { Router, RouteScope } from '../routing/router.ts';
import type { InferenceChunk, InferenceRequest, InferenceResult, InferenceTask, RoutingDecision } from './types.ts';

export interface InferenceOutcome { ok: boolean; errorCode?: string; latencyMs: number; result?: InferenceResult; decision?: RoutingDecision }

export interface InferenceObserver {
  /** Called once per finished client request (metrics, usage records); `decision` is the router's, failures included. */
  onFinished(req: InferenceRequest, outcome: InferenceOutcome): void;
}

/** A streamed answer: the chunks, and the route that serves them (known once the first chunk is out). */
export interface InferenceStream extends AsyncIterable<InferenceChunk> {
  readonly meta: () => Pick<InferenceResult, 'id' | 'model' | 'version' | 'instanceId' | 'runtime' | 'routing'> | undefined;
}

function checkTask(task: InferenceTask, h: InstanceHandle): void {
  const tasks = h.loaded?.tasks;
  if (tasks && !tasks.includes(task)) {
    throw new McpError('MCP_UNSUPPORTED_PARAMETER', `model "${h.modelId}" (version ${h.version}) does not support task "${task}"; it supports ${tasks.join(', ')}`, {
      details: { task, supported: tasks },
    });
  }
}

/** The one inference path: every entry point builds an InferenceRequest and calls this. */
export class InferenceService {
  private readonly observers: InferenceObserver[] = [];

  constructor(private readonly router: Router, private readonly logger: Logger) {}

  observe(observer: InferenceObserver): void {
    this.observers.push(observer);
  }

  private finish(req: InferenceRequest, started: number, outcome: { ok: boolean; errorCode?: string; result?: InferenceResult }): void {
    const latencyMs = performance.now() - started;
    const decision = this.router.decisionOf(req);
    for (const o of this.observers) {
      try {
        o.onFinished(req, { ...outcome, latencyMs, decision });
      } catch (err) {
        this.logger.warn({ err }, 'inference observer failed');
      }
    }
  }

  async infer(req: InferenceRequest): Promise<InferenceResult> {
    const started = performance.now();
    try {
      const { value, handle, decision, scope } = await this.router.route(req, async (h, call) => {
        checkTask(req.input.task, h);
        return h.loaded!.infer(req.input, call);
      });
      const result: InferenceResult = {
        ...value, id: req.id, model: req.model, version: handle.version, instanceId: handle.id,
        latencyMs: performance.now() - started, runtime: handle.loaded?.runtime,
        routing: req.explain ? decision : undefined,
      };
      scope.done(true);
      this.finish(req, started, { ok: true, result });
      return result;
    } catch (err) {
      const e = toMcpError(err);
      this.finish(req, started, { ok: false, errorCode: e.code });
      throw e;
    }
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
      let scope: RouteScope | undefined;
      let usage: InferenceChunk['usage'];
      let text = '';
      let rest: AsyncIterator<InferenceChunk> | undefined;
      let settled = false;
      try {
        const routed = await self.router.route(req, async (h, call) => {
          checkTask(req.input.task, h);
          const loaded = h.loaded!;
          if (!loaded.stream) {
            const out = await loaded.infer(req.input, call);
            return { first: { text: out.text ?? '', finishReason: out.finishReason ?? 'stop', usage: out.usage } as InferenceChunk, rest: undefined };
          }
          const it = loaded.stream(req.input, call)[Symbol.asyncIterator]();
          const first = await it.next();
          return { first: first.done ? undefined : first.value, rest: first.done ? undefined : it };
        }, { streaming: true });
        scope = routed.scope;
        const h = routed.handle;
        meta = { id: req.id, model: req.model, version: h.version, instanceId: h.id, runtime: h.loaded?.runtime, routing: req.explain ? routed.decision : undefined };
        const first = routed.value.first;
        rest = routed.value.rest;
        if (first) {
          text += first.text;
          usage = first.usage ?? usage;
          yield first;
        }
        if (rest) {
          for (;;) {
            const next = await rest.next();
            if (next.done) break;
            text += next.value.text;
            usage = next.value.usage ?? usage;
            yield next.value;
          }
        }
        settled = true;
        scope.done(true);
        self.finish(req, started, { ok: true, result: { ...meta, text, usage, latencyMs: performance.now() - started } });
      } catch (err) {
        settled = true;
        const e = toMcpError(req.signal.aborted ? new McpError('MCP_CANCELLED') : err);
        scope?.done(false, e);
        self.finish(req, started, { ok: false, errorCode: e.code });
        throw e;
      } finally {
        if (!settled) {
          // The consumer stopped early (return(): a graphql-ws `complete`, a `break`): stop the
          // backend's stream (closes the upstream request) and release the instance.
          const e = new McpError('MCP_CANCELLED', 'the client stopped reading the stream');
          try {
            await rest?.return?.();
          } catch { /* the stream is abandoned either way */ }
          scope?.done(false, e);
          self.finish(req, started, { ok: false, errorCode: e.code });
        }
      }
    }
    const gen = run();
    return { [Symbol.asyncIterator]: () => gen, meta: () => meta };
  }
}
