import type { Logger } from 'pino';
import type { AdmissionService } from '../admission/admission-service.ts';
import { PASS } from '../admission/ticket.ts';
import { McpError, toMcpError } from '../errors.ts';
import type { InferenceOutput, InferenceRequest, InferenceTask, RoutingDecision } from '../inference/types.ts';
import type { Fleet, InstanceHandle, ModelView } from '../models/fleet.ts';
import type { BackendCall, Balancer } from '../plugin/contract.ts';
import type { PluginHost } from '../plugin/host.ts';
import { Attempt, type AttemptSinks, type Run, type Settled } from './attempt.ts';
import { RequestDeadline } from './deadline.ts';
import { DecisionTrace, RoutingFailure, type DecisionTarget } from './decision.ts';
import type { RouterColdStart } from '../scaling/hold.ts';
import { LatencyWindow } from './latency-window.ts';
import type { InstanceHealth } from './resilience/instance-health.ts';
import type { RoutingTrace } from '../tracing/inference-trace.ts';
import { chooseVersion, type InstanceReadiness } from './version.ts';

export interface RouterOptions {
  /** Balancer used when a model names none. */
  defaultBalancer: string;
  /** Attempts per request across instances (first try included). */
  maxAttempts: number;
  /** Deadline applied when the request has none, ms. */
  defaultTimeoutMs: number;
  /** Hedged requests (non-streamed only). */
  hedging: { enabled: boolean; percentile: number; minDelayMs: number };
  /** Retry calls to non-idempotent models (routing.idempotent = false) after failures where the model may have run. */
  retryNonIdempotent: boolean;
}

/** What the router tells the traffic manager (per-variant stats, records, shadow answers). */
export interface RoutingListener {
  /** A mirrored (shadow) request finished; its answer is recorded, never returned. */
  onShadow(req: InferenceRequest, outcome: ShadowOutcome): void;
}

export interface ShadowOutcome {
  model: string;
  version: string;
  instanceId: string;
  ok: boolean;
  errorCode?: string;
  latencyMs: number;
  output?: string;
  usage?: { promptTokens: number; completionTokens: number };
}

/** A routed request: the answer, the instance that gave it and the decision. */
export interface Routed<T> {
  value: T;
  handle: InstanceHandle;
  decision: RoutingDecision;
  /**
   * Ends the request on the instance (outstanding count, balancer feedback, passive health) and
   * its deadline timer. The caller calls it once the answer is out (a stream: when it ends or
   * fails); later calls do nothing.
   */
  finish(ok: boolean, error?: McpError): void;
}

/** Where a request goes on one model: the version chosen, its instances, its balancer. */
interface Target extends DecisionTarget {
  balancer: Balancer;
  /** Failures where the model may have run are retried (routing.idempotent, or retryNonIdempotent). */
  idempotent: boolean;
  sinks: AttemptSinks;
}

/** One request being routed: what it runs, its deadline, the decision taking shape. */
interface Trip<T> {
  readonly req: InferenceRequest;
  readonly run: Run<T>;
  readonly streaming: boolean;
  readonly limit: RequestDeadline;
  readonly deadline: number;
  readonly trace: DecisionTrace;
  /** The routing span, when the request is traced. */
  readonly spans: RoutingTrace | undefined;
  /** Attempts started, hedges included; every one after the first takes retry budget. */
  sent: number;
  lastError: McpError | undefined;
  budgetExhausted: boolean;
}

/** An attempt and how it settled. */
interface Outcome<T> {
  attempt: Attempt<T>;
  result: Settled<T>;
}

/** A failed settlement. */
type Failed = Extract<Settled<unknown>, { ok: false }>;

/** What comes after a model's attempts: the answer, the next (fallback) model, or the end. */
type Step<T> = Routed<T> | 'next' | 'stop';

const NOTHING_TRIED: ReadonlySet<string> = new Set();

/** Resolves after `ms` or when `signal` aborts (never rejects); the timer is cleared either way. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Whether the instance serves the task (an instance that lists no tasks serves any). */
function serves(h: InstanceHandle, task: InferenceTask): boolean {
  const tasks = h.loaded?.tasks;
  return !tasks || tasks.includes(task);
}

/** The text a shadow answer is compared by. */
function shadowText(out: InferenceOutput): string | undefined {
  return out.text ?? (out.embeddings || out.tensors ? JSON.stringify(out.embeddings ?? out.tensors) : undefined);
}

/**
 * Routes each request top-down: the model and its fallbacks → a version (pinned, traffic split,
 * default) → the candidates (ready, serving the task, healthy) → the balancer's pick → an
 * Attempt (hedged when slow) → on a retryable failure another instance within the retry budget
 * and the deadline (429s honour Retry-After), then the next fallback model. A fraction of the
 * traffic is mirrored to a shadow version through the same steps. The decision is returned with
 * the answer (Routed.decision) or carried by the error (RoutingFailure.decision).
 */
export class Router {
  private readonly latency = new Map<string, LatencyWindow>();
  private readonly readiness: InstanceReadiness;
  private readonly describe = (h: InstanceHandle): string => this.stateOf(h);
  private listener: RoutingListener | undefined;
  private admission: AdmissionService | undefined;
  private coldStart: RouterColdStart | undefined;

  constructor(
    private readonly fleet: Fleet,
    private readonly plugins: PluginHost,
    private readonly health: InstanceHealth,
    private readonly options: RouterOptions,
    private readonly logger: Logger,
  ) {
    this.readiness = { ready: (h) => this.routable(h), healthy: (h) => this.routable(h) && this.health.allows(h.id) };
    // An instance that left the pool: every balancer drops its state (and our latency windows stay per version).
    health.onLeave((id) => {
      for (const name of this.plugins.names('balancer')) this.plugins.get('balancer', name).forget?.(id);
    });
  }

  /** Registers the traffic manager (shadow answers). */
  setListener(listener: RoutingListener): void {
    this.listener = listener;
  }

  /** Admission queues per model version (src/admission): a request takes a slot before its attempts and gives it back when it ends. */
  setAdmission(admission: AdmissionService): void {
    this.admission = admission;
  }

  /** Where requests for a version at zero instances wait for the first one (src/scaling/hold.ts). */
  setColdStart(coldStart: RouterColdStart): void {
    this.coldStart = coldStart;
  }

  /** p95 latency of the version's last requests (up to 512), ms; undefined before any. */
  latencyP95(modelId: string, version: string): number | undefined {
    return this.latency.get(`${modelId}@${version}`)?.percentile(95);
  }

  healthOf(instanceId: string): string {
    return this.health.stateOf(instanceId);
  }

  /** Closes the instance's circuit and lifts its ejection and throttle (admin action); the state afterwards. */
  resetHealth(instanceId: string): string {
    return this.health.reset(instanceId);
  }

  /**
   * Routes `req` and runs `run` on the chosen instance, retrying retryable failures on other
   * instances within the retry budget and the deadline, then trying fallback models. The caller
   * ends the answer with Routed.finish(); a failure is thrown (a RoutingFailure once routing began).
   */
  async route<T>(req: InferenceRequest, run: Run<T>, opts: { streaming?: boolean } = {}): Promise<Routed<T>> {
    const deadline = req.deadline ?? Date.now() + this.options.defaultTimeoutMs;
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new McpError('MCP_DEADLINE_EXCEEDED', 'the request deadline had already passed', { details: { deadline } });
    const limit = new RequestDeadline(req.signal, remaining);
    const spans = req.trace?.routing(req);
    const trip: Trip<T> = {
      req,
      run,
      streaming: opts.streaming === true,
      limit,
      deadline,
      trace: new DecisionTrace(req, this.describe),
      spans,
      sent: 0,
      lastError: undefined,
      budgetExhausted: false,
    };
    try {
      // On success Routed.finish disposes the deadline when the request ends.
      const routed = await this.routeWithin(trip);
      spans?.end(routed.decision);
      return routed;
    } catch (err) {
      limit.dispose();
      spans?.end(err instanceof RoutingFailure ? err.decision : undefined, err);
      throw err;
    }
  }

  /** The model, then its fallbacks in order, until one answers. */
  private async routeWithin<T>(trip: Trip<T>): Promise<Routed<T>> {
    const { view, models } = await this.chooseModelChain(trip.req.model);
    this.health.recordRequest();
    for (const [i, modelId] of models.entries()) {
      if (i > 0) trip.trace.fallbacks.push(modelId);
      const mview = i === 0 ? view : await this.fallbackView(modelId);
      if (!mview) continue;
      const target = this.chooseTarget(modelId, mview, i === 0 ? trip.req.version : undefined, trip.req);
      trip.trace.target = target;
      if (i === 0) this.mirror(trip, mview, modelId, target.version);
      const step = await this.tryTarget(trip, target);
      if (step === 'stop') break;
      if (step !== 'next') return step;
    }
    throw this.fail(trip, trip.lastError ?? new McpError('MCP_NO_HEALTHY_INSTANCE', `model "${trip.req.model}" has no ready instance`));
  }

  /** The model asked for and the models it falls back to, in order. */
  private async chooseModelChain(modelId: string): Promise<{ view: ModelView; models: string[] }> {
    const view = this.fleet.view(modelId) ?? (await this.fleet.refresh(modelId));
    if (!view) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${modelId}"`, { details: { model: modelId } });
    return { view, models: [view.id, ...(view.routing.fallbacks ?? []).filter((m) => m !== view.id)] };
  }

  private async fallbackView(modelId: string): Promise<ModelView | undefined> {
    return this.fleet.view(modelId) ?? (await this.fleet.refresh(modelId).catch(() => undefined));
  }

  /** The version of this model the request goes to, with its pool and balancer. */
  private chooseTarget(modelId: string, view: ModelView, pinned: string | undefined, req: InferenceRequest): Target {
    const choice = chooseVersion(view, pinned, req, this.readiness);
    return this.targetOf(modelId, view, choice.version, choice.variant, choice.diverted);
  }

  private targetOf(modelId: string, view: ModelView, version: string, variant?: string, diverted?: string): Target {
    const balancerName = view.routing.balancer ?? this.options.defaultBalancer;
    const balancer = this.plugins.get('balancer', balancerName);
    return {
      modelId,
      version,
      variant,
      diverted,
      balancerName,
      balancer,
      pool: view.versions.get(version) ?? [],
      idempotent: view.routing.idempotent !== false || this.options.retryNonIdempotent,
      sinks: { fleet: this.fleet, health: this.health, balancer, latency: this.window(modelId, version) },
    };
  }

  /**
   * The version's admission slot (src/admission), then its attempts; the slot goes back when the
   * answer is out (Routed.finish) or the attempts end without one. A refused admission goes to
   * the next model with its error (429/503 with Retry-After when none is left).
   */
  private async tryTarget<T>(trip: Trip<T>, target: Target): Promise<Step<T>> {
    // A task no ready instance serves is refused before it takes a slot or waits for one.
    const unsupported = this.unsupportedTask(target, trip.req.input.task);
    if (unsupported) {
      trip.lastError = unsupported;
      return 'stop';
    }
    if (!this.admission) return this.attemptTarget(trip, target);
    // No instance yet (scaled to zero, or still loading): admission has no capacity to count, so the
    // request waits for the first instance first, and then takes a slot of the capacity it brings.
    if (!target.pool.some((h) => this.routable(h))) {
      await this.awaitLoading(trip, target);
      if (!this.freshPool(target).some((h) => this.routable(h)) && !(await this.awaitColdStart(trip, target))) return this.noCandidate(trip, target);
      target.pool = this.freshPool(target);
    }
    let ticket;
    try {
      const t = this.admission.admit(trip.req, target.modelId, target.version, trip.deadline, trip.limit.signal);
      ticket = t instanceof Promise ? await t : t;
    } catch (err) {
      trip.lastError = this.classify(err, trip);
      return trip.limit.signal.aborted ? 'stop' : 'next';
    }
    let step: Step<T>;
    try {
      step = await this.attemptTarget(trip, target);
    } catch (err) {
      ticket.release();
      throw err;
    }
    if (typeof step === 'string' || ticket === PASS) {
      ticket.release();
      return step;
    }
    const finish = step.finish;
    const slot = ticket;
    return {
      ...step,
      finish: (ok, error) => {
        slot.release();
        finish(ok, error);
      },
    };
  }

  /** Attempts on one model version, up to maxAttempts, each on an instance not tried yet. */
  private async attemptTarget<T>(trip: Trip<T>, target: Target): Promise<Step<T>> {
    const tried = new Set<string>();
    for (let n = 0; n < this.options.maxAttempts; n++) {
      if (trip.limit.signal.aborted) return 'stop';
      let candidates = this.eligible(target, trip.req.input.task, tried);
      if (!candidates.length && (await this.awaitThrottled(trip, target, tried))) candidates = this.eligible(target, trip.req.input.task, tried);
      if (!candidates.length && (await this.awaitLoading(trip, target))) candidates = this.eligible(target, trip.req.input.task, tried);
      if (!candidates.length && (await this.awaitColdStart(trip, target))) candidates = this.eligible(target, trip.req.input.task, tried);
      if (!candidates.length) return this.noCandidate(trip, target);
      if (trip.sent > 0 && !this.health.tryRetry()) {
        trip.budgetExhausted = true;
        return 'stop';
      }
      const { attempt, result } = await this.runAttempt(trip, target, candidates, tried);
      if (result.ok) return this.routed(trip, target, attempt, result);
      const next = this.afterFailure(trip, target, attempt, result, tried);
      if (next !== 'retry') return next;
    }
    return 'next';
  }

  /** The task is checked here, once: when no ready instance of the version serves it, the request fails. */
  private unsupportedTask(target: Target, task: InferenceTask): McpError | undefined {
    let anyReady = false;
    for (const h of target.pool) {
      if (!this.routable(h)) continue;
      if (serves(h, task)) return undefined;
      anyReady = true;
    }
    if (!anyReady) return undefined;
    const ready = target.pool.filter((h) => this.routable(h));
    const supported = [...new Set(ready.flatMap((h) => h.loaded!.tasks))];
    const message = `model "${ready[0]!.modelId}" (version ${target.version}) does not support task "${task}"; it supports ${supported.join(', ')}`;
    return new McpError('MCP_UNSUPPORTED_PARAMETER', message, { details: { task, supported } });
  }

  /** Ready instances that serve the task, were not tried and are allowed by their health. */
  private eligible(target: Target, task: InferenceTask, tried: ReadonlySet<string>): InstanceHandle[] {
    return target.pool.filter((h) => this.routable(h) && serves(h, task) && !tried.has(h.id) && this.health.allows(h.id));
  }

  /**
   * When only throttled (429 + Retry-After) instances are left and the first comes back before
   * the deadline, waits for it and makes the instances that came back candidates again. Whether it did.
   */
  private async awaitThrottled<T>(trip: Trip<T>, target: Target, tried: Set<string>): Promise<boolean> {
    if (trip.lastError?.code !== 'MCP_UPSTREAM_RATE_LIMITED') return false;
    const task = trip.req.input.task;
    let until = Infinity;
    for (const h of target.pool) {
      const t = this.routable(h) && serves(h, task) ? this.health.throttledUntil(h.id) : undefined;
      if (t !== undefined && t < until) until = t;
    }
    if (!(until < trip.deadline - 5)) return false;
    await sleep(until - Date.now() + 1, trip.limit.signal);
    if (trip.limit.signal.aborted) return false;
    for (const h of target.pool) if (this.health.throttledUntil(h.id) === undefined) tried.delete(h.id);
    return true;
  }

  /**
   * When no instance of the version is ready here yet but some are loading on this replica (a model
   * another replica registered, heard of just now), waits for those loads within the deadline
   * instead of failing at once. Whether it waited (and the deadline did not pass).
   */
  private async awaitLoading<T>(trip: Trip<T>, target: Target): Promise<boolean> {
    if (trip.sent > 0 || target.pool.some((h) => this.routable(h))) return false;
    const loads = this.fleet.catchUp(target.modelId);
    if (!loads) return false;
    const done = new AbortController();
    await Promise.race([loads.finally(() => done.abort()), sleep(trip.deadline - Date.now(), AbortSignal.any([trip.limit.signal, done.signal]))]);
    done.abort();
    return !trip.limit.signal.aborted && Date.now() < trip.deadline;
  }

  /**
   * When the version has no instance at all that could take the request (scaled to zero, or the first
   * one still starting), holds it for the cold start (bounded; MCP_SCALE_FROM_ZERO_TIMEOUT after) and
   * follows the view the new instance arrives in. Whether an instance became routable.
   */
  private async awaitColdStart<T>(trip: Trip<T>, target: Target): Promise<boolean> {
    if (!this.coldStart || trip.sent > 0 || target.pool.some((h) => this.routable(h))) return false;
    const fresh = () => this.freshPool(target);
    try {
      const ok = await this.coldStart.hold(target.modelId, target.version, trip.limit.signal, trip.deadline, () => fresh().some((h) => this.routable(h)));
      if (ok) target.pool = fresh();
      return ok;
    } catch (err) {
      trip.lastError = toMcpError(err);
      return false;
    }
  }

  /** The version's instances in the fleet's current view (a version that appeared since the target was built included). */
  private freshPool(target: Target): InstanceHandle[] {
    return this.fleet.view(target.modelId)?.versions.get(target.version) ?? [];
  }

  /** No instance left on this version: say why (unless an attempt failed already) and go to the next model. */
  private noCandidate<T>(trip: Trip<T>, target: Target): Step<T> {
    if (trip.limit.signal.aborted) return 'stop';
    if (!trip.lastError) {
      const { modelId, version } = target;
      const anyReady = target.pool.some((h) => this.routable(h));
      if (!anyReady) this.fleet.catchUp(modelId);
      const options = { retryable: true, details: { model: modelId, version } };
      trip.lastError = anyReady
        ? new McpError('MCP_CIRCUIT_OPEN', `every instance of model "${modelId}" version ${version} is unhealthy, ejected or has an open circuit`, options)
        : new McpError('MCP_NO_HEALTHY_INSTANCE', `model "${modelId}" version ${version} has no ready instance`, options);
    }
    return 'next';
  }

  /** The balancer picks among the candidates; the pick counts as tried. */
  private pick<T>(trip: Trip<T>, target: Target, candidates: InstanceHandle[], tried: Set<string>): InstanceHandle {
    const p = target.balancer.pick(candidates, { affinityKey: trip.req.affinityKey, exclude: tried });
    trip.trace.scored(p.scores);
    tried.add(p.chosen.id);
    return p.chosen;
  }

  private start<T>(trip: Trip<T>, target: Target, h: InstanceHandle, abortable: boolean): Attempt<T> {
    trip.sent++;
    const call: BackendCall = { requestId: trip.req.id, signal: trip.limit.signal, deadline: trip.deadline };
    const spans = trip.spans?.attempt(h.id, h.version, h.backend);
    if (spans?.traceparent) call.traceparent = spans.traceparent;
    if (spans?.tracestate) call.tracestate = spans.tracestate;
    return new Attempt(target.sinks, h, trip.run, call, abortable, spans);
  }

  /** One attempt on the balancer's pick, hedged when it is slow (non-streamed requests with another candidate). */
  private async runAttempt<T>(trip: Trip<T>, target: Target, candidates: InstanceHandle[], tried: Set<string>): Promise<Outcome<T>> {
    const hedging = candidates.length > 1 && this.options.hedging.enabled && !trip.streaming;
    const first = this.start(trip, target, this.pick(trip, target, candidates, tried), hedging);
    if (!hedging) return { attempt: first, result: await first.settled };
    return this.hedge(trip, target, first, candidates, tried);
  }

  /**
   * When the first attempt has not answered after the version's latency percentile, a second
   * goes to another candidate (it takes retry budget); the first success wins.
   */
  private async hedge<T>(trip: Trip<T>, target: Target, first: Attempt<T>, candidates: InstanceHandle[], tried: Set<string>): Promise<Outcome<T>> {
    const timer = new AbortController();
    const delay = Math.min(this.hedgeDelay(target), trip.deadline - Date.now());
    const early = await Promise.race([first.settled, sleep(delay, AbortSignal.any([trip.limit.signal, timer.signal])).then(() => undefined)]);
    timer.abort();
    if (early) return { attempt: first, result: early };
    const rest = candidates.filter((c) => c.id !== first.instance.id && this.health.allows(c.id));
    if (trip.limit.signal.aborted || !rest.length || !this.health.tryRetry()) return { attempt: first, result: await first.settled };
    trip.trace.hedged = true;
    return this.firstSuccess(first, this.start(trip, target, this.pick(trip, target, rest, tried), true));
  }

  /** The first success of two hedged attempts (the other is abandoned), or the later failure (the first one is finished). */
  private async firstSuccess<T>(a: Attempt<T>, b: Attempt<T>): Promise<Outcome<T>> {
    const first = await Promise.race([a.settled.then((result) => ({ attempt: a, result })), b.settled.then((result) => ({ attempt: b, result }))]);
    const other = first.attempt === a ? b : a;
    if (first.result.ok) {
      other.abandon(new McpError('MCP_CANCELLED', 'the hedged twin answered first'));
      return first;
    }
    first.attempt.finish(false, toMcpError(first.result.error));
    return { attempt: other, result: await other.settled };
  }

  private hedgeDelay(target: Target): number {
    const h = this.options.hedging;
    const w = target.sinks.latency;
    const p = w.samples >= 20 ? (w.percentile(h.percentile) ?? 0) : 0;
    return Math.max(h.minDelayMs, p);
  }

  /** The answer: the decision, and the finish that ends the attempt and the deadline. */
  private routed<T>(trip: Trip<T>, target: Target, attempt: Attempt<T>, result: Settled<T> & { ok: true }): Routed<T> {
    trip.trace.attempts.push({ instanceId: attempt.instance.id, version: target.version, outcome: 'ok', latencyMs: result.latencyMs });
    return {
      value: result.value,
      handle: attempt.instance,
      decision: trip.trace.decision(attempt.instance.id),
      finish: (ok, error) => {
        trip.limit.dispose();
        attempt.finish(ok, error);
      },
    };
  }

  /** Classifies and accounts for a failed attempt, then says what comes next: another instance, the next model, or the end. */
  private afterFailure<T>(trip: Trip<T>, target: Target, attempt: Attempt<T>, result: Failed, tried: Set<string>): 'retry' | 'next' | 'stop' {
    const e = this.classify(result.error, trip);
    const h = attempt.instance;
    trip.trace.attempts.push({ instanceId: h.id, version: target.version, outcome: 'error', errorCode: e.code, latencyMs: result.latencyMs });
    attempt.finish(false, e);
    trip.lastError = e;
    if (!e.retryable || trip.limit.signal.aborted) return 'stop';
    // A model that is not idempotent is retried only where the backend says the request never ran.
    if (!target.idempotent && e.mayHaveExecuted) return 'stop';
    const retryAfter = Number(e.details?.retryAfterMs ?? 0);
    if (retryAfter > 0) {
      this.health.throttle(h.id, retryAfter);
      // No other instance and the upstream wants us back only after the deadline: the next model, or the answer now with its Retry-After.
      const others = this.eligible(target, trip.req.input.task, tried).some((c) => c.id !== h.id);
      if (Date.now() + retryAfter >= trip.deadline && !others) return 'next';
    }
    return 'retry';
  }

  /** The client went away, the deadline passed, or what the backend said. */
  private classify<T>(err: unknown, trip: Trip<T>): McpError {
    if (trip.req.signal.aborted) return new McpError('MCP_CANCELLED', 'the client went away');
    if (trip.limit.timedOut || Date.now() >= trip.deadline) {
      const at = new Date(trip.deadline).toISOString();
      return new McpError('MCP_DEADLINE_EXCEEDED', `no answer before the deadline (${at})`, { details: { deadline: trip.deadline } });
    }
    return toMcpError(err);
  }

  /** The error the request fails with, carrying the decision (in its details too when explain was asked). */
  private fail<T>(trip: Trip<T>, e: McpError): RoutingFailure {
    const decision = trip.trace.decision('');
    let details = e.details;
    if (trip.budgetExhausted && !details?.retryBudgetExhausted) details = { ...details, retryBudgetExhausted: true };
    if (trip.req.explain) details = { ...details, routing: decision, attempts: trip.trace.attempts, fallbacks: trip.trace.fallbacks };
    return new RoutingFailure(e, decision, details);
  }

  /**
   * Shadow traffic: a fraction of the requests is mirrored to the model's shadow version through
   * the same steps (candidates serving the task, the balancer's pick, an Attempt), started after
   * the primary is dispatched, bounded by the request's deadline but not by the client, never
   * retried; its answer goes to the listener (recorded), never to the client.
   */
  private mirror<T>(trip: Trip<T>, view: ModelView, modelId: string, version: string): void {
    const sh = view.routing.shadow;
    if (!sh || sh.version === version || !(sh.fraction > 0) || Math.random() >= sh.fraction) return;
    const target = this.targetOf(modelId, view, sh.version);
    const candidates = this.eligible(target, trip.req.input.task, NOTHING_TRIED);
    if (!candidates.length) return;
    trip.trace.shadow = sh.version;
    const { req, deadline } = trip;
    setImmediate(() => {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return;
      const h = target.balancer.pick(candidates, { affinityKey: req.affinityKey }).chosen;
      if (!h.loaded) return;
      const signal = AbortSignal.timeout(remaining);
      const run: Run<InferenceOutput> = (i, call) => i.loaded!.infer(req.input, call);
      const attempt = new Attempt(target.sinks, h, run, { requestId: `${req.id}:shadow`, signal, deadline });
      const base = { model: view.id, version: sh.version, instanceId: h.id };
      attempt.settled
        .then((r) => {
          if (r.ok) {
            attempt.finish(true);
            this.listener?.onShadow(req, { ...base, ok: true, latencyMs: r.latencyMs, output: shadowText(r.value), usage: r.value.usage });
            return;
          }
          const e = signal.aborted ? new McpError('MCP_DEADLINE_EXCEEDED') : toMcpError(r.error);
          attempt.finish(false, e);
          this.listener?.onShadow(req, { ...base, ok: false, errorCode: e.code, latencyMs: r.latencyMs });
        })
        .catch((err: unknown) => this.logger.warn({ err }, 'shadow bookkeeping failed'));
    });
  }

  private routable(h: InstanceHandle): boolean {
    return h.status === 'ready' && !h.draining && h.loaded !== undefined;
  }

  private stateOf(h: InstanceHandle): string {
    if (h.draining) return 'draining';
    if (h.status !== 'ready' || !h.loaded) return `not-ready:${h.status}`;
    return this.health.stateOf(h.id);
  }

  private window(modelId: string, version: string): LatencyWindow {
    const key = `${modelId}@${version}`;
    let w = this.latency.get(key);
    if (!w) {
      w = new LatencyWindow(512, 16);
      this.latency.set(key, w);
    }
    return w;
  }
}
