import type { ErrorCode, McpError } from '../errors.ts';
import type { Fleet, InstanceHandle } from '../models/fleet.ts';
import type { BackendCall, Balancer } from '../plugin/contract.ts';
import type { AttemptTrace } from '../tracing/inference-trace.ts';
import type { LatencyWindow } from './latency-window.ts';
import type { InstanceHealth } from './resilience/instance-health.ts';

/** What a request runs on the instance chosen for it. */
export type Run<T> = (h: InstanceHandle, call: BackendCall) => Promise<T>;

/** How an attempt's call settled (the promise never rejects); `latencyMs` is the time to answer or to the error. */
export type Settled<T> = { ok: true; value: T; latencyMs: number } | { ok: false; error: unknown; latencyMs: number };

/** Everything an attempt reports to: outstanding counts, passive health, the balancer, the version's latencies. */
export interface AttemptSinks {
  fleet: Fleet;
  health: InstanceHealth;
  balancer: Balancer;
  /** Latencies of the model version the instance serves (the hedging delay reads them). */
  latency: LatencyWindow;
}

/** Failures that say something about the instance (5xx, unreachable, timeouts): they feed breakers and outlier detection. */
const INSTANCE_FAILURES = new Set<ErrorCode>(['MCP_UPSTREAM_ERROR', 'MCP_UPSTREAM_UNAVAILABLE', 'MCP_DEADLINE_EXCEEDED', 'MCP_INTERNAL']);

/**
 * One call on one instance, from begin to finish, for every kind of call (first try, retry,
 * hedge, stream, shadow). Starting it takes the breaker's half-open trial when there is one and
 * counts the call as outstanding on the instance; a successful answer's time goes to the
 * version's latency window. finish() gives the verdict (balancer feedback, passive health) and
 * abandon() gives none (a hedged twin answered first); either ends the attempt exactly once.
 */
export class Attempt<T> {
  readonly instance: InstanceHandle;
  /** The call's outcome; never rejects. */
  readonly settled: Promise<Settled<T>>;
  private readonly started: number;
  private readonly end: () => void;
  private readonly ctl: AbortController | undefined;
  private closed = false;

  /**
   * `abortable`: the attempt gets its own abort controller on top of `call.signal` (hedged attempts, aborted alone).
   * `trace`: its spans, when the request is traced (ended with the attempt).
   */
  constructor(
    private readonly sinks: AttemptSinks,
    h: InstanceHandle,
    run: Run<T>,
    call: BackendCall,
    abortable = false,
    private readonly trace?: AttemptTrace,
  ) {
    this.instance = h;
    this.ctl = abortable ? new AbortController() : undefined;
    const c = this.ctl ? { ...call, signal: AbortSignal.any([call.signal, this.ctl.signal]) } : call;
    sinks.health.onAttempt(h.id);
    this.end = sinks.fleet.begin(h);
    this.started = performance.now();
    let p: Promise<T>;
    try {
      p = run(h, c);
    } catch (err) {
      p = Promise.reject(err);
    }
    this.settled = p.then(
      (value): Settled<T> => {
        const latencyMs = this.elapsed();
        if (!this.closed) sinks.latency.add(latencyMs);
        trace?.answered(value);
        return { ok: true, value, latencyMs };
      },
      (error: unknown): Settled<T> => ({ ok: false, error, latencyMs: this.elapsed() }),
    );
  }

  /** Time since the call started, ms. */
  elapsed(): number {
    return performance.now() - this.started;
  }

  /**
   * Ends the attempt with its verdict: the instance stops counting the call, the balancer learns
   * the outcome and latency, passive health the success or the instance failure (a cancel frees
   * a half-open trial; a 429 is a throttle, not a verdict). Later calls do nothing.
   */
  finish(ok: boolean, error?: McpError): void {
    if (this.closed) return;
    this.closed = true;
    const id = this.instance.id;
    const latencyMs = this.elapsed();
    this.end();
    this.trace?.end(ok, error);
    this.sinks.balancer.observe?.(id, { ok, latencyMs });
    if (ok) this.sinks.health.onResult(id, true);
    else if (error) this.report(error);
  }

  /**
   * Ends the attempt without a verdict (its hedged twin answered first): aborts the call; once it
   * settles the instance stops counting it and its half-open trial is freed. Later calls do nothing.
   */
  abandon(reason: McpError): void {
    if (this.closed) return;
    this.closed = true;
    this.trace?.end(false, reason, true);
    this.ctl?.abort(reason);
    void this.settled.then(() => {
      this.end();
      this.sinks.health.onCancel(this.instance.id);
    });
  }

  private report(e: McpError): void {
    const id = this.instance.id;
    if (e.code === 'MCP_CANCELLED') this.sinks.health.onCancel(id);
    else if (e.code === 'MCP_UPSTREAM_RATE_LIMITED')
      return; // throttled instead (Retry-After): not a health verdict
    else if (INSTANCE_FAILURES.has(e.code)) this.sinks.health.onResult(id, false);
  }
}
