import {
  SpanKind,
  SpanStatusCode,
  defaultTextMapSetter,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapPropagator,
  type Tracer,
} from '@opentelemetry/api';
import { ATTR_ERROR_TYPE, ATTR_HTTP_RESPONSE_STATUS_CODE } from '@opentelemetry/semantic-conventions';
import {
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MAX_TOKENS,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_REQUEST_STOP_SEQUENCES,
  ATTR_GEN_AI_REQUEST_STREAM,
  ATTR_GEN_AI_REQUEST_TEMPERATURE,
  ATTR_GEN_AI_REQUEST_TOP_P,
  ATTR_GEN_AI_RESPONSE_FINISH_REASONS,
  ATTR_GEN_AI_RESPONSE_ID,
  ATTR_GEN_AI_RESPONSE_MODEL,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
} from '@opentelemetry/semantic-conventions/incubating';
import { toMcpError } from '../errors.ts';
import type { InferenceInput, InferenceOutput, InferenceRequest, RoutingDecision, Usage } from '../inference/types.ts';

/** gen_ai.operation.name of a task (the GenAI conventions' names where one fits, the task otherwise). */
function operationOf(task: InferenceInput['task']): string {
  return task === 'chat' ? 'chat' : task === 'generate' ? 'text_completion' : task === 'embed' ? 'embeddings' : task;
}

/** The GenAI request attributes of an inference. */
function requestAttributes(req: InferenceRequest): Attributes {
  const a: Attributes = {
    [ATTR_GEN_AI_OPERATION_NAME]: operationOf(req.input.task),
    [ATTR_GEN_AI_REQUEST_MODEL]: req.model,
    [ATTR_GEN_AI_REQUEST_STREAM]: req.stream,
  };
  const p = 'parameters' in req.input ? req.input.parameters : undefined;
  if (p?.maxTokens !== undefined) a[ATTR_GEN_AI_REQUEST_MAX_TOKENS] = p.maxTokens;
  if (p?.temperature !== undefined) a[ATTR_GEN_AI_REQUEST_TEMPERATURE] = p.temperature;
  if (p?.topP !== undefined) a[ATTR_GEN_AI_REQUEST_TOP_P] = p.topP;
  if (p?.stop?.length) a[ATTR_GEN_AI_REQUEST_STOP_SEQUENCES] = p.stop;
  return a;
}

function setUsage(span: Span, usage: Usage | undefined, finishReason: string | undefined): void {
  if (usage) {
    span.setAttribute(ATTR_GEN_AI_USAGE_INPUT_TOKENS, usage.promptTokens);
    span.setAttribute(ATTR_GEN_AI_USAGE_OUTPUT_TOKENS, usage.completionTokens);
  }
  if (finishReason) span.setAttribute(ATTR_GEN_AI_RESPONSE_FINISH_REASONS, [finishReason]);
}

/** Marks a span failed with the error's stable code (never its details: they may name secrets). */
function fail(span: Span, err: unknown): void {
  const e = toMcpError(err);
  span.setAttribute(ATTR_ERROR_TYPE, e.code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.code });
}

/** How an inference ended, as the InferenceService reports it. */
export interface TracedOutcome {
  ok: boolean;
  errorCode?: string;
  result?: { id?: string; model?: string; version?: string; usage?: Usage; finishReason?: string };
  decision?: RoutingDecision;
}

/**
 * The spans of one inference: the entry (SERVER, with the GenAI attributes of the whole request),
 * auth, the routing decision, each attempt and its backend call (CLIENT, whose context goes
 * upstream as `traceparent`). Entry points make one with Tracing.begin() and put it on the
 * InferenceRequest (`trace`); the service, router and attempts add their spans under it.
 */
export class InferenceTrace {
  private ended = false;

  constructor(
    private readonly tracer: Tracer,
    private readonly propagator: TextMapPropagator,
    private readonly entry: Span,
    private readonly ctx: Context,
  ) {}

  /** The span of `auth` (a child of the entry), ended when it settles. */
  auth<T>(work: Promise<T>): Promise<T> {
    const span = this.tracer.startSpan('auth', { kind: SpanKind.INTERNAL }, this.ctx);
    return work.then(
      (v) => {
        span.end();
        return v;
      },
      (err: unknown) => {
        fail(span, err);
        span.end();
        throw err;
      },
    );
  }

  /** Authentication that ran before the trace began (GraphQL: with the context), as an `auth` span from `start` to `end` (epoch ms). */
  authRan(start: number, end: number): void {
    this.tracer.startSpan('auth', { kind: SpanKind.INTERNAL, startTime: start }, this.ctx).end(end);
  }

  /** The request reached the InferenceService: its GenAI request attributes and the span name `{operation} {model}`. */
  started(req: InferenceRequest): void {
    const attrs = requestAttributes(req);
    this.entry.setAttributes(attrs);
    this.entry.setAttribute('capibara.request.id', req.id);
    if (req.principal) this.entry.setAttribute('capibara.principal.id', req.principal.id);
  }

  /** The span of the routing decision, the attempts' parent. */
  routing(req: InferenceRequest): RoutingTrace {
    const span = this.tracer.startSpan(`route ${req.model}`, { kind: SpanKind.INTERNAL, attributes: { [ATTR_GEN_AI_REQUEST_MODEL]: req.model } }, this.ctx);
    return new RoutingTrace(this.tracer, this.propagator, span, trace.setSpan(this.ctx, span), req);
  }

  /** The inference ended: response attributes, the error code on failure; ends the entry span (once). */
  finished(o: TracedOutcome): void {
    if (this.ended) return;
    this.ended = true;
    const span = this.entry;
    const r = o.result;
    if (r) {
      if (r.id) span.setAttribute(ATTR_GEN_AI_RESPONSE_ID, r.id);
      if (r.model) span.setAttribute(ATTR_GEN_AI_RESPONSE_MODEL, r.version ? `${r.model}:${r.version}` : r.model);
      setUsage(span, r.usage, r.finishReason);
    }
    if (!o.ok) {
      span.setAttribute(ATTR_ERROR_TYPE, o.errorCode ?? 'MCP_INTERNAL');
      span.setStatus({ code: SpanStatusCode.ERROR, message: o.errorCode });
    }
    span.end();
  }

  /** The entry failed before or outside the service (auth, validation): the error's code and HTTP status; ends the entry span unless the service did. */
  failed(err: unknown): void {
    if (this.ended) return;
    const e = toMcpError(err);
    this.entry.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, e.status);
    this.finished({ ok: false, errorCode: e.code });
  }
}

/** The routing decision's span: the model version, balancer, chosen instance, attempts and fallbacks. */
export class RoutingTrace {
  private attempts = 0;

  constructor(
    private readonly tracer: Tracer,
    private readonly propagator: TextMapPropagator,
    private readonly span: Span,
    private readonly ctx: Context,
    private readonly req: InferenceRequest,
  ) {}

  /** One attempt on `instanceId` (a span) and its backend call (a CLIENT span whose context is sent upstream). */
  attempt(instanceId: string, version: string, backend: string): AttemptTrace {
    const n = ++this.attempts;
    const span = this.tracer.startSpan(
      `attempt ${n}`,
      { kind: SpanKind.INTERNAL, attributes: { 'capibara.attempt': n, 'capibara.instance.id': instanceId, 'capibara.model.version': version } },
      this.ctx,
    );
    const operation = operationOf(this.req.input.task);
    const client = this.tracer.startSpan(
      `${operation} ${this.req.model}`,
      { kind: SpanKind.CLIENT, attributes: { ...requestAttributes(this.req), [ATTR_GEN_AI_PROVIDER_NAME]: backend, 'capibara.instance.id': instanceId } },
      trace.setSpan(this.ctx, span),
    );
    const carrier: { traceparent?: string; tracestate?: string } = {};
    this.propagator.inject(trace.setSpan(this.ctx, client), carrier, defaultTextMapSetter);
    return new AttemptTrace(span, client, carrier.traceparent, carrier.tracestate);
  }

  /** Routing ended: the decision's attributes, the error on failure. */
  end(decision: RoutingDecision | undefined, err?: unknown): void {
    const s = this.span;
    if (decision) {
      s.setAttribute('capibara.model.version', decision.version);
      if (decision.variant) s.setAttribute('capibara.routing.variant', decision.variant);
      s.setAttribute('capibara.routing.balancer', decision.balancer);
      if (decision.chosen) s.setAttribute('capibara.instance.id', decision.chosen);
      s.setAttribute('capibara.routing.attempts', decision.attempts.length);
      if (decision.fallbacks.length) s.setAttribute('capibara.routing.fallbacks', decision.fallbacks);
      if (decision.hedged) s.setAttribute('capibara.routing.hedged', true);
    }
    if (err !== undefined) fail(s, err);
    s.end();
  }
}

/** The spans of one attempt and its backend call; `traceparent` is what the backend sends upstream. */
export class AttemptTrace {
  private ended = false;

  constructor(
    private readonly span: Span,
    private readonly client: Span,
    readonly traceparent: string | undefined,
    readonly tracestate: string | undefined,
  ) {}

  /** The backend answered (a whole answer, or the first chunk of a stream): its usage and finish reason. */
  answered(value: unknown): void {
    const out = value as InferenceOutput | undefined;
    if (out && typeof out === 'object') setUsage(this.client, out.usage, out.finishReason);
  }

  /** The attempt ended: ok, failed with `error`, or abandoned (a hedged twin answered first). */
  end(ok: boolean, error?: unknown, abandoned = false): void {
    if (this.ended) return;
    this.ended = true;
    if (abandoned) this.span.setAttribute('capibara.attempt.abandoned', true);
    else if (!ok) {
      fail(this.span, error);
      fail(this.client, error);
    }
    this.client.end();
    this.span.end();
  }
}
