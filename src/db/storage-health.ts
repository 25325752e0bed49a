import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import { toMcpError, type McpError } from '../errors.ts';
import { storageFailure, storageFailureReason } from './storage-errors.ts';

export type StorageState = 'up' | 'degraded';

export interface StorageHealthOptions {
  /** Time between probes while storage answers, ms; while it does not, probes run at most every second. */
  probeIntervalMs: number;
  /** A probe that has not answered after this long counts as failed (a partition holds the query for ever), ms. */
  probeTimeoutMs: number;
}

/**
 * The one owner of "can the gateway reach its database now". Failed requests (through classify())
 * and a periodic probe (Database.ping) move it between up and degraded; each transition is
 * logged once ("storage unavailable" at warn, "storage recovered" at info) instead of one error
 * per failed request. /readyz, the `health` query and the mcp_storage_up gauge read it.
 */
export class StorageHealth {
  private up = true;
  private downSince = 0;
  private failedRequests = 0;
  private probing: Promise<boolean> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(
    private readonly ping: () => Promise<boolean>,
    private readonly logger: Logger,
    registry: Registry,
    private readonly o: StorageHealthOptions,
  ) {
    const self = this;
    new Gauge({
      name: 'mcp_storage_up',
      help: 'Whether the database answers (1) or the gateway runs degraded without it (0).',
      registers: [registry],
      collect() {
        this.set(self.up ? 1 : 0);
      },
    });
  }

  get state(): StorageState {
    return this.up ? 'up' : 'degraded';
  }

  /**
   * What a request's error becomes at the edge (GraphQL, REST, OpenAI, KServe): a storage failure
   * is MCP_STORAGE_UNAVAILABLE (503, no SQL in it) and marks storage down; anything else as
   * toMcpError maps it.
   */
  classify(err: unknown): McpError {
    const storage = storageFailure(err);
    if (!storage) return toMcpError(err);
    this.markDown(err);
    this.failedRequests++;
    return storage;
  }

  /** Starts the periodic probe. */
  start(): void {
    if (this.closed || this.timer) return;
    const interval = this.up ? this.o.probeIntervalMs : Math.min(this.o.probeIntervalMs, 1000);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.probe().finally(() => this.start());
    }, interval);
    this.timer.unref?.();
  }

  /** Pings the database now (one ping at a time, bounded by probeTimeoutMs) and records the outcome. */
  probe(): Promise<boolean> {
    this.probing ??= (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<false>((r) => {
        timer = setTimeout(() => r(false), this.o.probeTimeoutMs);
        timer.unref?.();
      });
      try {
        const ok = await Promise.race([this.ping().catch(() => false), timedOut]);
        if (ok) this.markUp();
        else this.markDown(new Error(`no answer to the probe within ${this.o.probeTimeoutMs} ms`));
        return ok;
      } finally {
        clearTimeout(timer);
        this.probing = undefined;
      }
    })();
    return this.probing;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private markDown(err: unknown): void {
    if (!this.up) return;
    this.up = false;
    this.downSince = Date.now();
    this.failedRequests = 0;
    const reason = storageFailure(err) ? storageFailureReason(err) : (err as Error).message;
    this.logger.warn({ reason }, 'storage unavailable');
    // Probe sooner while down, so recovery is seen within a second.
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.start();
    }
  }

  private markUp(): void {
    if (this.up) return;
    this.up = true;
    this.logger.info({ downMs: Date.now() - this.downSince, failedRequests: this.failedRequests }, 'storage recovered');
  }
}
