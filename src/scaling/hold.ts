/**
 * Requests for a model version at zero instances wait here for the first one (scale from zero),
 * bounded by the policy's `holdMs`, then fail with MCP_SCALE_FROM_ZERO_TIMEOUT. The router calls
 * `hold` when a version has no routable instance (the seam: RouterColdStart); the scaling controller
 * reads the number held as demand and is woken at once by the first held request.
 *
 * This is the one hold of scale from zero: the admission queues (src/admission) step aside while a
 * version has no ready instance, and a request the hold lets through takes its admission slot
 * after it, against the capacity the new instance brings (maxConcurrentPerInstance).
 */
import { McpError } from '../errors.ts';
import { RecentSamples } from '../recent-samples.ts';

/** What the router needs of the hold. */
export interface RouterColdStart {
  /**
   * Holds a request for `model@version` until `ready()` says an instance can take it (true), the
   * request's deadline passes or it is cancelled (false), or the hold time runs out (throws
   * MCP_SCALE_FROM_ZERO_TIMEOUT). Answers false at once when the version may not scale from zero.
   */
  hold(model: string, version: string, signal: AbortSignal, deadline: number, ready: () => boolean): Promise<boolean>;
}

interface Waits {
  held: number;
  /** Recent waits (ms) with when they ended, for the queue-wait signal. */
  recent: RecentSamples;
}

const POLL_MS = 20;
const RECENT = 256;

export class ColdStartHold implements RouterColdStart {
  private readonly versions = new Map<string, Waits>();
  private readonly demand = new Set<(model: string, version: string) => void>();

  constructor(
    /** The hold time for a version that may scale from zero; undefined when it may not. */
    private readonly holdMsOf: (model: string, version: string) => number | undefined,
    private readonly maxHeld: number,
  ) {}

  /** Calls fn when a request starts waiting for a version at zero. */
  onDemand(fn: (model: string, version: string) => void): void {
    this.demand.add(fn);
  }

  /** Requests held now for the version. */
  held(model: string, version: string): number {
    return this.versions.get(key(model, version))?.held ?? 0;
  }

  /** p95 of the waits that ended in the last `windowMs` (0 when none) — still-held requests count with their wait so far. */
  waitP95(model: string, version: string, windowMs: number, now = Date.now()): number {
    const w = this.versions.get(key(model, version));
    if (!w) return 0;
    const waits = w.recent.valuesAfter(now - windowMs);
    if (!waits.length) return 0;
    waits.sort((a, b) => a - b);
    return waits[Math.min(waits.length - 1, Math.floor(waits.length * 0.95))]!;
  }

  async hold(model: string, version: string, signal: AbortSignal, deadline: number, ready: () => boolean): Promise<boolean> {
    const holdMs = this.holdMsOf(model, version);
    if (holdMs === undefined || holdMs <= 0) return false;
    const k = key(model, version);
    let w = this.versions.get(k);
    if (!w) this.versions.set(k, (w = { held: 0, recent: new RecentSamples(RECENT) }));
    if (w.held >= this.maxHeld) {
      throw new McpError('MCP_QUEUE_FULL', `${this.maxHeld} requests already wait for model "${model}" version ${version} to scale from zero`, {
        retryable: false,
        mayHaveExecuted: false,
        details: { model, version },
      });
    }
    const started = Date.now();
    const until = Math.min(started + holdMs, deadline);
    w.held++;
    for (const fn of this.demand) fn(model, version);
    try {
      while (!ready()) {
        if (signal.aborted) return false;
        if (Date.now() >= until) {
          if (until >= deadline) return false;
          throw new McpError(
            'MCP_SCALE_FROM_ZERO_TIMEOUT',
            `model "${model}" version ${version} had no ready instance within ${holdMs} ms of scaling from zero`,
            {
              retryable: false,
              mayHaveExecuted: false,
              details: { model, version, holdMs },
            },
          );
        }
        await new Promise((r) => setTimeout(r, Math.min(POLL_MS, Math.max(1, until - Date.now()))));
      }
      return true;
    } finally {
      w.held--;
      const now = Date.now();
      w.recent.add(now, now - started);
    }
  }
}

function key(model: string, version: string): string {
  return `${model}@${version}`;
}
