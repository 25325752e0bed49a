import type { Logger } from 'pino';
import { McpError, toMcpError, type ErrorCode } from '../errors.ts';
import type { InferenceRequest, RoutingAttempt, RoutingCandidate, RoutingDecision } from '../inference/types.ts';
import type { Fleet, InstanceHandle, ModelView } from '../models/fleet.ts';
import type { BackendCall, Balancer } from '../plugin/contract.ts';
import type { PluginHost } from '../plugin/host.ts';
import type { InstanceHealth } from './resilience/instance-health.ts';
import { LatencyWindow } from './latency-window.ts';
import { chooseVariant, pickVariant } from './traffic-split.ts';
import { RequestDeadline } from './deadline.ts';

export interface RouterOptions {
  /** Balancer used when a model names none. */
  defaultBalancer: string;
  /** Attempts per request across instances (first try included). */
  maxAttempts: number;
  /** Deadline applied when the request has none, ms. */
  defaultTimeoutMs: number;
  /** Hedged requests (non-streamed only). */
  hedging?: { enabled: boolean; percentile: number; minDelayMs: number };
  /** Retry calls to non-idempotent models (routing.idempotent = false) after failures where the model may have run. */
  retryNonIdempotent?: boolean;
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

export interface RouteScope {
  /** Ends the request on the chosen instance (outstanding count, passive health, balancer feedback). */
  done(ok: boolean, error?: McpError): void;
}

export interface Routed<T> {
  value: T;
  handle: InstanceHandle;
  decision: RoutingDecision;
  scope: RouteScope;
}

/** Failures that say something about the instance (5xx, unreachable, timeouts): they feed breakers and outlier detection. */
const INSTANCE_FAILURES = new Set<ErrorCode>(['MCP_UPSTREAM_ERROR', 'MCP_UPSTREAM_UNAVAILABLE', 'MCP_DEADLINE_EXCEEDED', 'MCP_INTERNAL']);


type Outcome<T> =
  | { h: InstanceHandle; ok: true; value: T; started: number; end: () => void }
  | { h: InstanceHandle; ok: false; err: unknown; started: number; end: () => void };

/** An attempt in flight and the controller that aborts it alone. */
interface Running<T> { p: Promise<Outcome<T>>; ctl?: AbortController }

/** Resolves after `ms` or when `signal` aborts (never rejects); the timer is cleared either way. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(t); signal.removeEventListener('abort', done); resolve(); };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Chooses, for each request, a model version (pinned, traffic split over ready variants,
 * default) and an instance (balancer over ready, healthy candidates), runs the call, and
 * fails over: retryable failures go to another instance within the retry budget and the
 * deadline (429s honour Retry-After), then to fallback models in order. Optionally hedges
 * slow non-streamed requests and mirrors a fraction of the traffic to a shadow version.
 */
export class Router {
  private readonly latency = new Map<string, LatencyWindow>();
  private listener: RoutingListener | undefined;
  /** The decision for each request routed (success or failure), for the inference observers. */
  private readonly decisions = new WeakMap<InferenceRequest, RoutingDecision>();

  constructor(
    private readonly fleet: Fleet,
    private readonly plugins: PluginHost,
    private readonly health: InstanceHealth,
    private readonly options: RouterOptions,
    private readonly logger: Logger,
  ) {
    // An instance that left the pool: every balancer drops its state (and our latency windows stay per version).
    health.onLeave((id) => {
      for (const name of this.plugins.names('balancer')) this.plugins.get('balancer', name).forget?.(id);
    });
  }

  /** Registers the traffic manager (shadow answers). */
  setListener(listener: RoutingListener): void {
    this.listener = listener;
  }

  /** The routing decision for `req` once route() has chosen or failed (model, version, variant, instance). */
  decisionOf(req: InferenceRequest): RoutingDecision | undefined {
    return this.decisions.get(req);
  }

  healthOf(instanceId: string): string {
    return this.health.stateOf(instanceId);
  }

  /** Closes the instance's circuit and lifts its ejection and throttle (admin action); the state afterwards. */
  resetHealth(instanceId: string): string {
    return this.health.reset(instanceId);
  }

  /** Recent latency percentile of a model version (ms), or undefined with no data. */
  latencyPercentile(modelId: string, version: string, p: number): number | undefined {
    return this.latency.get(`${modelId}@${version}`)?.percentile(p);
  }

  private async view(modelId: string): Promise<ModelView> {
    const view = this.fleet.view(modelId) ?? (await this.fleet.refresh(modelId));
    if (!view) throw new McpError('MCP_MODEL_NOT_FOUND', `no model "${modelId}"`, { details: { model: modelId } });
    return view;
  }

  private balancer(view: ModelView): { name: string; balancer: Balancer } {
    const name = view.routing.balancer ?? this.options.defaultBalancer;
    return { name, balancer: this.plugins.get('balancer', name) };
  }

  private routable(h: InstanceHandle): boolean {
    return h.status === 'ready' && !h.draining && h.loaded !== undefined;
  }

  private stateOf(h: InstanceHandle): string {
    if (h.draining) return 'draining';
    if (h.status !== 'ready' || !h.loaded) return `not-ready:${h.status}`;
    return this.health.stateOf(h.id);
  }

  /**
   * The version this request goes to. The split picks among ready variants (a not-ready canary
   * gets nothing); when the picked variant has no healthy instance (all ejected or circuits
   * open) the request goes to another healthy variant and the decision says which one it was
   * diverted from, so the canary's health still counts against it (automatic rollback).
   */
  private chooseVersion(view: ModelView, req: InferenceRequest): { version: string; variant?: string; diverted?: string } {
    if (req.version) {
      if (!view.versions.has(req.version)) {
        throw new McpError('MCP_VERSION_NOT_FOUND', `model "${view.id}" has no version "${req.version}"`, { details: { model: view.id, version: req.version } });
      }
      return { version: req.version };
    }
    const split = view.routing.split;
    if (split && Object.keys(split).length) {
      const key = this.splitKey(view, req);
      const variants = Object.entries(split).map(([name, weight]) => {
        const pool = view.versions.get(name) ?? [];
        return { name, weight, ready: pool.some((h) => this.routable(h)), healthy: pool.some((h) => this.routable(h) && this.health.allows(h.id)) };
      });
      const picked = pickVariant(variants, key);
      if (picked?.healthy) return { version: picked.name, variant: picked.name };
      if (picked) {
        const other = chooseVariant(variants.map((v) => ({ ...v, ready: v.healthy })), key);
        if (other) return { version: other, variant: other, diverted: picked.name };
      }
    }
    const version = view.defaultVersion ?? view.versions.keys().next().value;
    if (!version) throw new McpError('MCP_NO_HEALTHY_INSTANCE', `model "${view.id}" has no versions`, { details: { model: view.id } });
    return { version };
  }

  /** Key of a sticky traffic split: the principal, or a header (absent → random assignment). */
  private splitKey(view: ModelView, req: InferenceRequest): string | undefined {
    const sticky = view.routing.sticky;
    if (!sticky) return undefined;
    if (sticky.by === 'principal') return req.principal?.id;
    const name = (sticky.header ?? 'x-mcp-affinity-key').toLowerCase();
    const v = req.headers?.[name];
    const value = Array.isArray(v) ? v[0] : v;
    if (value) return value;
    return name === 'x-mcp-affinity-key' && !req.headers ? req.affinityKey : undefined;
  }

  private window(modelId: string, version: string): LatencyWindow {
    const key = `${modelId}@${version}`;
    let w = this.latency.get(key);
    if (!w) { w = new LatencyWindow(512, 16); this.latency.set(key, w); }
    return w;
  }

  private hedgeDelay(modelId: string, version: string): number {
    const h = this.options.hedging!;
    const w = this.latency.get(`${modelId}@${version}`);
    const p = w && w.samples >= 20 ? w.percentile(h.percentile) ?? 0 : 0;
    return Math.max(h.minDelayMs, p);
  }

  /**
   * Routes `req` and runs `run` on the chosen instance, retrying retryable failures on other
   * instances within the retry budget and the deadline, then trying fallback models.
   */
  async route<T>(
    req: InferenceRequest,
    run: (h: InstanceHandle, call: BackendCall) => Promise<T>,
    opts: { streaming?: boolean } = {},
  ): Promise<Routed<T>> {
    const deadline = req.deadline ?? Date.now() + this.options.defaultTimeoutMs;
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new McpError('MCP_DEADLINE_EXCEEDED', 'the request deadline had already passed', { details: { deadline } });
    const limit = new RequestDeadline(req.signal, remaining);
    try {
      // On success the returned scope disposes the deadline when the request ends.
      return await this.routeWithin(limit, deadline, req, run, opts);
    } catch (err) {
      limit.dispose();
      throw err;
    }
  }

  private async routeWithin<T>(
    limit: RequestDeadline,
    deadline: number,
    req: InferenceRequest,
    run: (h: InstanceHandle, call: BackendCall) => Promise<T>,
    opts: { streaming?: boolean },
  ): Promise<Routed<T>> {
    const signal = limit.signal;
    const attempts: RoutingAttempt[] = [];
    const fallbacks: string[] = [];
    const scores: Record<string, number> = {};
    let lastError: McpError | undefined;
    let lastPool: { modelId: string; version: string; variant?: string; diverted?: string; balancer: string; pool: InstanceHandle[] } | undefined;
    let sent = 0;
    let hedged = false;
    let shadow: string | undefined;
    let budgetExhausted = false;
    const view = await this.view(req.model);
    const models = [view.id, ...(view.routing.fallbacks ?? []).filter((m) => m !== view.id)];
    this.health.recordRequest();

    const decisionOf = (chosen: string): RoutingDecision => {
      const p = lastPool;
      // The listener needs model/version/variant/chosen only; the per-candidate account is built when asked for.
      const candidates: RoutingCandidate[] = req.explain ? (p?.pool ?? []).map((c) => ({ instanceId: c.id, score: scores[c.id], state: this.stateOf(c) })) : [];
      const d: RoutingDecision = {
        model: p?.modelId ?? req.model, version: p?.version ?? '', variant: p?.variant, balancer: p?.balancer ?? '',
        candidates, chosen, attempts, fallbacks,
      };
      if (hedged) d.hedged = true;
      if (shadow) d.shadow = shadow;
      if (p?.diverted) d.diverted = p.diverted;
      return d;
    };
    const fail = (e: McpError): McpError => {
      const d = decisionOf('');
      this.decisions.set(req, d);
      if (budgetExhausted && !e.details?.retryBudgetExhausted) {
        e = new McpError(e.code, e.message, { details: { ...e.details, retryBudgetExhausted: true }, retryable: e.retryable, mayHaveExecuted: e.mayHaveExecuted, status: e.status, cause: e.cause });
      }
      if (!req.explain) return e;
      return new McpError(e.code, e.message, { details: { ...e.details, routing: d, attempts, fallbacks }, retryable: e.retryable, mayHaveExecuted: e.mayHaveExecuted, status: e.status, cause: e.cause });
    };

    const attempt = (h: InstanceHandle, hedge: boolean): Running<T> => {
      const ctl = hedge ? new AbortController() : undefined;
      const callSignal = ctl ? AbortSignal.any([signal, ctl.signal]) : signal;
      this.health.onAttempt(h.id);
      const end = this.fleet.begin(h);
      const started = performance.now();
      sent++;
      let p: Promise<T>;
      try { p = run(h, { requestId: req.id, signal: callSignal, deadline }); } catch (err) { p = Promise.reject(err); }
      return {
        ctl,
        p: p.then(
          (value): Outcome<T> => ({ h, ok: true, value, started, end }),
          (err: unknown): Outcome<T> => ({ h, ok: false, err, started, end }),
        ),
      };
    };

    outer:
    for (const [mi, modelId] of models.entries()) {
      if (mi > 0) fallbacks.push(modelId);
      const mview = mi === 0 ? view : (this.fleet.view(modelId) ?? await this.fleet.refresh(modelId).catch(() => undefined));
      if (!mview) continue;
      const { version, variant, diverted } = this.chooseVersion(mview, mi === 0 ? req : { ...req, version: undefined });
      const { name: balancerName, balancer } = this.balancer(mview);
      const pool = mview.versions.get(version) ?? [];
      lastPool = { modelId, version, variant, diverted, balancer: balancerName, pool };
      if (mi === 0) shadow = this.maybeMirror(mview, version, req, deadline);
      const idempotent = mview.routing.idempotent !== false || this.options.retryNonIdempotent === true;
      const tried = new Set<string>();
      for (let n = 0; n < this.options.maxAttempts; n++) {
        if (signal.aborted) break outer;
        let candidates = pool.filter((h) => this.routable(h) && !tried.has(h.id) && this.health.allows(h.id));
        if (!candidates.length) {
          // Only throttled (429 + Retry-After) instances left: wait for the first to come back when that is before the deadline.
          let until = Infinity;
          for (const h of pool) {
            const t = this.routable(h) ? this.health.throttledUntil(h.id) : undefined;
            if (t !== undefined && t < until) until = t;
          }
          if (until < deadline - 5 && lastError?.code === 'MCP_UPSTREAM_RATE_LIMITED') {
            await sleep(until - Date.now() + 1, signal);
            if (signal.aborted) break outer;
            for (const h of pool) if (this.health.throttledUntil(h.id) === undefined) tried.delete(h.id);
            candidates = pool.filter((h) => this.routable(h) && !tried.has(h.id) && this.health.allows(h.id));
          }
        }
        if (!candidates.length) {
          if (!lastError) {
            const anyReady = pool.some((h) => this.routable(h));
            if (!anyReady) this.fleet.catchUp(modelId);
            lastError = anyReady
              ? new McpError('MCP_CIRCUIT_OPEN', `every instance of model "${modelId}" version ${version} is unhealthy, ejected or has an open circuit`, { retryable: true, details: { model: modelId, version } })
              : new McpError('MCP_NO_HEALTHY_INSTANCE', `model "${modelId}" version ${version} has no ready instance`, { retryable: true, details: { model: modelId, version } });
          }
          break;
        }
        if (sent > 0 && !this.health.tryRetry()) { budgetExhausted = true; break outer; }
        const pick = balancer.pick(candidates, { affinityKey: req.affinityKey, exclude: tried });
        if (pick.scores) Object.assign(scores, pick.scores);
        const h = pick.chosen;
        tried.add(h.id);

        let o: Outcome<T>;
        const hedging = candidates.length > 1 && this.options.hedging?.enabled === true && !opts.streaming;
        const r1 = attempt(h, hedging);
        if (!hedging) o = await r1.p;
        else {
          const delay = this.hedgeDelay(modelId, version);
          const timer = new AbortController();
          const early = await Promise.race([r1.p, sleep(Math.min(delay, deadline - Date.now()), AbortSignal.any([signal, timer.signal])).then(() => undefined)]);
          timer.abort();
          if (early) o = early;
          else {
            const rest = candidates.filter((c) => c.id !== h.id && this.health.allows(c.id));
            if (signal.aborted || !rest.length || !this.health.tryRetry()) o = await r1.p;
            else {
              hedged = true;
              const pick2 = balancer.pick(rest, { affinityKey: req.affinityKey, exclude: tried });
              if (pick2.scores) Object.assign(scores, pick2.scores);
              tried.add(pick2.chosen.id);
              o = await this.firstSuccess(r1, attempt(pick2.chosen, true), balancer);
            }
          }
        }

        const latencyMs = performance.now() - o.started;
        if (o.ok) {
          attempts.push({ instanceId: o.h.id, version, outcome: 'ok', latencyMs });
          this.window(modelId, version).add(latencyMs);
          const decision = decisionOf(o.h.id);
          this.decisions.set(req, decision);
          const done = o;
          let finished = false;
          const scope: RouteScope = {
            done: (ok, error) => {
              if (finished) return;
              finished = true;
              limit.dispose();
              done.end();
              balancer.observe?.(done.h.id, { ok, latencyMs: performance.now() - done.started });
              if (ok) this.health.onResult(done.h.id, true);
              else if (error) this.reportFailure(done.h.id, error);
            },
          };
          if (!opts.streaming) scope.done(true);
          return { value: o.value, handle: o.h, decision, scope };
        }
        o.end();
        const e = this.classify(o.err, req, limit, deadline);
        attempts.push({ instanceId: o.h.id, version, outcome: 'error', errorCode: e.code, latencyMs });
        balancer.observe?.(o.h.id, { ok: false, latencyMs });
        this.reportFailure(o.h.id, e);
        lastError = e;
        if (!e.retryable || signal.aborted) throw fail(e);
        // A model that is not idempotent is retried only where the backend says the request never ran.
        if (!idempotent && e.mayHaveExecuted) throw fail(e);
        const retryAfter = Number(e.details?.retryAfterMs ?? 0);
        if (retryAfter > 0) {
          this.health.throttle(o.h.id, retryAfter);
          // No other instance and the upstream wants us back only after the deadline: answer now, with its Retry-After.
          if (Date.now() + retryAfter >= deadline && !pool.some((c) => c.id !== o.h.id && !tried.has(c.id) && this.routable(c) && this.health.allows(c.id))) {
            if (mi === models.length - 1) throw fail(e);
            continue outer;
          }
        }
      }
    }
    throw fail(lastError ?? new McpError('MCP_NO_HEALTHY_INSTANCE', `model "${req.model}" has no ready instance`));
  }

  /** The first successful outcome of two hedged attempts (or the last failure); the loser is aborted and cleaned up when it settles. */
  private async firstSuccess<T>(a: Running<T>, b: Running<T>, balancer: Balancer): Promise<Outcome<T>> {
    const first = await Promise.race([a.p.then((o) => ({ o, i: 0 })), b.p.then((o) => ({ o, i: 1 }))]);
    const other = first.i === 0 ? b : a;
    if (first.o.ok) {
      other.ctl?.abort(new McpError('MCP_CANCELLED', 'the hedged twin answered first'));
      void other.p.then((o) => { o.end(); this.health.onCancel(o.h.id); });
      return first.o;
    }
    // The first to finish failed: account for it and wait for the other.
    first.o.end();
    const e = toMcpError(first.o.err);
    balancer.observe?.(first.o.h.id, { ok: false, latencyMs: performance.now() - first.o.started });
    this.reportFailure(first.o.h.id, e);
    return other.p;
  }

  private reportFailure(id: string, e: McpError): void {
    if (e.code === 'MCP_CANCELLED') { this.health.onCancel(id); return; }
    if (e.code === 'MCP_UPSTREAM_RATE_LIMITED') return; // throttled instead (Retry-After): not a health verdict
    if (INSTANCE_FAILURES.has(e.code)) this.health.onResult(id, false);
  }

  private classify(err: unknown, req: InferenceRequest, limit: RequestDeadline, deadline: number): McpError {
    if (req.signal.aborted) return new McpError('MCP_CANCELLED', 'the client went away');
    if (limit.timedOut || Date.now() >= deadline) {
      return new McpError('MCP_DEADLINE_EXCEEDED', `no answer before the deadline (${new Date(deadline).toISOString()})`, { details: { deadline } });
    }
    return toMcpError(err);
  }

  /**
   * Mirrors `req` to the model's shadow version (a fraction of the requests): a separate,
   * non-streamed call started after the primary is dispatched, bounded by the request's
   * deadline and never retried; its answer goes to the listener (recorded), never to the client.
   */
  private maybeMirror(view: ModelView, version: string, req: InferenceRequest, deadline: number): string | undefined {
    const sh = view.routing.shadow;
    if (!sh || sh.version === version || !(sh.fraction > 0) || Math.random() >= sh.fraction) return undefined;
    const pool = (view.versions.get(sh.version) ?? []).filter((h) => this.routable(h) && this.health.allows(h.id) && (!h.loaded!.tasks || h.loaded!.tasks.includes(req.input.task)));
    if (!pool.length) return undefined;
    const { balancer } = this.balancer(view);
    setImmediate(() => {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return;
      const h = balancer.pick(pool, { affinityKey: req.affinityKey }).chosen;
      if (!h.loaded) return;
      this.health.onAttempt(h.id);
      const end = this.fleet.begin(h);
      const started = performance.now();
      const signal = AbortSignal.timeout(remaining);
      h.loaded.infer(req.input, { requestId: `${req.id}:shadow`, signal, deadline }).then(
        (out) => {
          const latencyMs = performance.now() - started;
          end();
          balancer.observe?.(h.id, { ok: true, latencyMs });
          this.health.onResult(h.id, true);
          this.listener?.onShadow(req, {
            model: view.id, version: sh.version, instanceId: h.id, ok: true, latencyMs,
            output: out.text ?? (out.embeddings || out.tensors ? JSON.stringify(out.embeddings ?? out.tensors) : undefined),
            usage: out.usage,
          });
        },
        (err: unknown) => {
          const latencyMs = performance.now() - started;
          end();
          const e = signal.aborted ? new McpError('MCP_DEADLINE_EXCEEDED') : toMcpError(err);
          balancer.observe?.(h.id, { ok: false, latencyMs });
          this.reportFailure(h.id, e);
          this.listener?.onShadow(req, { model: view.id, version: sh.version, instanceId: h.id, ok: false, errorCode: e.code, latencyMs });
        },
      ).catch((err: unknown) => this.logger.warn({ err }, 'shadow bookkeeping failed'));
    });
    return sh.version;
  }
}
