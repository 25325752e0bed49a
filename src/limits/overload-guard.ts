/**
 * The gateway's own protection against overload: a bound on requests in flight (and, optionally, on
 * event-loop delay). A request past the bound is refused at once, before its body is read, so the
 * requests already admitted keep a bounded latency and the process never builds a backlog it cannot
 * drain. The HTTP edge asks `tryAdmit()` per request and calls the returned release when the
 * request is over; everything else here is counting.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config/schema.ts';
import { McpError } from '../errors.ts';

export type OverloadConfig = Config['server']['overload'];

/** Why a request was shed. */
export type OverloadReason = 'inflight' | 'event_loop_delay';

export class OverloadGuard {
  private inflightNow = 0;
  private lagging = false;
  private readonly histogram: IntervalHistogram | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly rejectedTotal: Counter<'reason' | 'entry'>;
  /** The 503 every refused request gets (one object: refusing must cost next to nothing). */
  readonly error: McpError;

  constructor(
    private readonly config: OverloadConfig,
    registry: Registry,
  ) {
    this.error = new McpError('MCP_OVERLOADED', 'the gateway is at its bound of in-flight work; retry after the time in Retry-After', {
      details: { retryAfterMs: config.retryAfterSeconds * 1000 },
      retryable: true,
      mayHaveExecuted: false,
    });
    this.rejectedTotal = new Counter({
      name: 'mcp_overload_rejected_total',
      help: 'Requests refused with 503 MCP_OVERLOADED before their body was read, by reason (inflight, event_loop_delay) and entry point.',
      labelNames: ['reason', 'entry'],
      registers: [registry],
    });
    const inflight = () => this.inflightNow;
    new Gauge({
      name: 'mcp_http_inflight_requests',
      help: 'HTTP requests in flight that count against server.overload.maxInflight (health, readiness and metrics excluded).',
      registers: [registry],
      collect() {
        this.set(inflight());
      },
    });
    new Gauge({
      name: 'mcp_overload_limit',
      help: 'The configured bound of requests in flight (server.overload.maxInflight; 0: no bound).',
      registers: [registry],
    }).set(config.maxInflight);
    if (config.maxEventLoopDelayMs > 0) {
      const histogram = monitorEventLoopDelay({ resolution: 10 });
      histogram.enable();
      this.histogram = histogram;
      this.timer = setInterval(() => {
        // The worst delay of the last window, in ms: one blocked tick is enough to shed for a window.
        this.lagging = histogram.max / 1e6 > config.maxEventLoopDelayMs;
        histogram.reset();
      }, config.eventLoopWindowMs);
      this.timer.unref();
    }
  }

  /** Requests admitted and not yet over. */
  get inflight(): number {
    return this.inflightNow;
  }

  /**
   * Admits one request (returns undefined: call release() once when it is over) or refuses it
   * (returns why: answer with `error`, and count it with rejected()).
   */
  tryAdmit(): OverloadReason | undefined {
    const max = this.config.maxInflight;
    if (max > 0 && this.inflightNow >= max) return 'inflight';
    // Never shed the only request: a process slow for another reason still serves one at a time.
    if (this.lagging && this.inflightNow > 0) return 'event_loop_delay';
    this.inflightNow++;
    return undefined;
  }

  /** Counts a refused request in mcp_overload_rejected_total. */
  rejected(reason: OverloadReason, entry: string): void {
    this.rejectedTotal.inc({ reason, entry });
  }

  release(): void {
    this.inflightNow--;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.histogram?.disable();
  }
}
