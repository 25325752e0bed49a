import type { RateLimitCharge, RateLimitDecision, RateLimitStore } from '../plugin/contract.ts';
import { gcraAdjust, gcraSpend } from './gcra.ts';

export interface MemoryStoreOptions {
  /** Clock in ms (tests pass a fake one). */
  now?: () => number;
  /** Most keys kept; beyond it keys whose bucket is full again are dropped, then the oldest. */
  maxKeys?: number;
  /** Keys whose bucket is full again are swept at most this often, ms (they cost nothing to forget). */
  sweepEveryMs?: number;
}

/**
 * The default `limits.store`: GCRA state in this process (limits hold per replica; use the Redis
 * store to share them). Synchronous inside, so every call is atomic.
 */
export class MemoryRateLimitStore implements RateLimitStore {
  private readonly tats = new Map<string, number>();
  private readonly now: () => number;
  private readonly maxKeys: number;
  private readonly sweepEveryMs: number;
  private lastSweep: number;

  constructor(opts: MemoryStoreOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.maxKeys = opts.maxKeys ?? 1_000_000;
    this.sweepEveryMs = opts.sweepEveryMs ?? 30_000;
    this.lastSweep = this.now();
  }

  /** Keys held (for tests and metrics). */
  get size(): number {
    return this.tats.size;
  }

  spendNow(charges: readonly RateLimitCharge[]): RateLimitDecision[] {
    const now = this.now();
    const steps = charges.map((c) => gcraSpend(this.tats.get(c.key), now, c));
    if (steps.every((s) => s.decision.allowed)) steps.forEach((s, i) => this.set(charges[i]!.key, s.tat, now));
    return steps.map((s) => s.decision);
  }

  async spend(charges: readonly RateLimitCharge[]): Promise<RateLimitDecision[]> {
    return this.spendNow(charges);
  }

  async adjust(charges: readonly RateLimitCharge[]): Promise<void> {
    const now = this.now();
    for (const c of charges) this.set(c.key, gcraAdjust(this.tats.get(c.key), now, c), now);
  }

  private set(key: string, tat: number, now: number): void {
    if (tat <= now) {
      this.tats.delete(key);
      return;
    }
    if (now - this.lastSweep >= this.sweepEveryMs) this.sweep(now);
    if (!this.tats.has(key) && this.tats.size >= this.maxKeys) this.evict(now);
    this.tats.set(key, tat);
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [k, t] of this.tats) if (t <= now) this.tats.delete(k);
  }

  private evict(now: number): void {
    this.sweep(now);
    if (this.tats.size < this.maxKeys) return;
    // Still full: drop the oldest tenth (insertion order); those keys start again with a full bucket.
    let n = Math.ceil(this.maxKeys / 10);
    for (const k of this.tats.keys()) {
      if (n-- <= 0) break;
      this.tats.delete(k);
    }
  }
}
