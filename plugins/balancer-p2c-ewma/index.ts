/**
 * p2c-ewma balancer (the default): power of two choices over peak-EWMA latency ×
 * (outstanding + 1), as in Finagle's and Linkerd's (tower) `PeakEwma`.
 *
 * Per instance it keeps a latency estimate `cost` (ms):
 * - a slower observation than the estimate replaces it at once (peak sensitivity);
 * - a faster one is blended in with weight 1 − e^(−Δt/τ), τ = `decayMs` (default 10 s),
 *   so the estimate decays with time, not with request count;
 * - between observations the estimate relaxes toward the *neutral* cost with the same τ,
 *   so an instance penalised long ago (or idle) is tried again instead of being starved
 *   (tower relaxes toward 0, which floods a long-idle instance; we relax toward neutral);
 * - a failed request counts as a slow one: max(latency, errorPenaltyFactor × fleet
 *   average) (or `errorPenaltyMs` before any success was seen), so an instance that fails
 *   fast does not become a black hole that attracts all traffic.
 *
 * The neutral cost is `unobservedLatencyMs` when set, else `unobservedFactor` (0.75) × the
 * fleet-wide EWMA of successful latencies: instances never observed look slightly better
 * than an average one (new instances get tried) but their outstanding count still
 * multiplies it, so they are not flooded before their first answer.
 *
 * Each pick samples two distinct eligible candidates at random and takes the lower
 * score = cost × (outstanding + 1). Scores of the two sampled candidates are returned.
 */
import { z } from 'zod';
import { definePlugin, type Balancer, type BalanceContext, type BalancerCandidate, type BalancerPick } from 'capibara-mcp';

export const p2cEwmaOptions = z.strictObject({
  /** Time constant τ of the latency EWMA, ms. */
  decayMs: z.number().positive().default(10_000),
  /** Cost given to instances never observed (and the value idle estimates relax to); default: derived from the fleet. */
  unobservedLatencyMs: z.number().positive().optional(),
  /** Neutral cost = this × fleet-wide average latency, when `unobservedLatencyMs` is not set (< 1 = optimistic). */
  unobservedFactor: z.number().positive().default(0.75),
  /** A failure costs at least this many × the fleet average latency. */
  errorPenaltyFactor: z.number().min(1).default(5),
  /** A failure costs at least this (ms) before any success has been observed. */
  errorPenaltyMs: z.number().nonnegative().default(1000),
  /** Return `scores` for the two sampled candidates (lower is better). */
  explain: z.boolean().default(true),
});
export type P2cEwmaOptions = z.input<typeof p2cEwmaOptions>;

export interface P2cEwmaDeps {
  random?: () => number;
  /** Monotonic clock in ms (default performance.now). */
  now?: () => number;
}

interface Stat {
  cost: number;
  stamp: number;
}

/** Extra methods for tests and the admin API. */
export interface P2cEwmaBalancer extends Balancer {
  /** Current latency estimate of `id` (ms), as used by pick(). */
  costOf(id: string): number;
}

const FLEET_ALPHA = 0.05;

export function createP2cEwma(options: P2cEwmaOptions = {}, deps: P2cEwmaDeps = {}): P2cEwmaBalancer {
  const o = p2cEwmaOptions.parse(options);
  const tau = o.decayMs;
  const random = deps.random ?? Math.random;
  const now = deps.now ?? (() => performance.now());
  const stats = new Map<string, Stat>();
  let fleet = 0; // EWMA of successful latencies across all instances; 0 = none yet
  let fleetSeen = false;

  function neutral(): number {
    if (o.unobservedLatencyMs !== undefined) return o.unobservedLatencyMs;
    return fleetSeen ? Math.max(fleet * o.unobservedFactor, 1e-3) : 1;
  }

  function costAt(id: string, t: number, base: number): number {
    const s = stats.get(id);
    if (s === undefined) return base;
    const dt = t - s.stamp;
    if (dt <= 0) return s.cost;
    return base + (s.cost - base) * Math.exp(-dt / tau);
  }

  function score(c: BalancerCandidate, t: number, base: number): number {
    let out = c.outstanding;
    if (!(out >= 0)) out = 0;
    return costAt(c.id, t, base) * (out + 1);
  }

  return {
    pick<C extends BalancerCandidate>(candidates: readonly C[], context: BalanceContext): BalancerPick<C> {
      const n = candidates.length;
      let exclude = context.exclude;
      let m = n;
      if (exclude !== undefined && exclude.size > 0) {
        m = 0;
        for (let i = 0; i < n; i++) if (!exclude.has(candidates[i]!.id)) m++;
        if (m === 0) {
          exclude = undefined;
          m = n;
        }
      } else exclude = undefined;

      const t = now();
      const base = neutral();
      if (m === 1) {
        let only = candidates[0]!;
        if (exclude !== undefined)
          for (let i = 0; i < n; i++)
            if (!exclude.has(candidates[i]!.id)) {
              only = candidates[i]!;
              break;
            }
        return o.explain ? { chosen: only, scores: { [only.id]: score(only, t, base) } } : { chosen: only };
      }
      let ka = Math.floor(random() * m);
      let kb = Math.floor(random() * (m - 1));
      if (ka >= m) ka = m - 1;
      if (kb >= m - 1) kb = m - 2;
      if (kb >= ka) kb++;
      let a: C;
      let b: C;
      if (exclude === undefined) {
        a = candidates[ka]!;
        b = candidates[kb]!;
      } else {
        a = candidates[0]!;
        b = candidates[0]!;
        let k = 0;
        for (let i = 0; i < n; i++) {
          const c = candidates[i]!;
          if (exclude.has(c.id)) continue;
          if (k === ka) a = c;
          if (k === kb) b = c;
          k++;
        }
      }
      const sa = score(a, t, base);
      const sb = score(b, t, base);
      // NaN-safe: prefer `a` unless `b` is strictly better.
      const chosen = sb < sa ? b : a;
      if (!o.explain) return { chosen };
      const scores: Record<string, number> = {};
      scores[a.id] = sa;
      scores[b.id] = sb;
      return { chosen, scores };
    },

    observe(id: string, outcome: { ok: boolean; latencyMs: number }): void {
      let rtt = outcome.latencyMs;
      if (!(rtt >= 0)) rtt = 0; // NaN/negative
      if (rtt > 3_600_000) rtt = 3_600_000;
      if (outcome.ok) {
        if (fleetSeen) fleet += FLEET_ALPHA * (rtt - fleet);
        else {
          fleet = rtt;
          fleetSeen = true;
        }
      } else {
        rtt = Math.max(rtt, fleetSeen ? fleet * o.errorPenaltyFactor : o.errorPenaltyMs);
      }
      const t = now();
      const s = stats.get(id);
      if (s === undefined) {
        stats.set(id, { cost: rtt, stamp: t });
        return;
      }
      const dt = t - s.stamp;
      // What pick() sees now: the last estimate relaxed toward neutral.
      const seen = costAt(id, t, neutral());
      if (rtt >= seen)
        s.cost = rtt; // peak: jump up at once
      else {
        const w = dt > 0 ? Math.exp(-dt / tau) : 1;
        s.cost = seen * w + rtt * (1 - w);
      }
      s.stamp = t;
    },

    forget(id: string): void {
      stats.delete(id);
    },

    costOf(id: string): number {
      return costAt(id, now(), neutral());
    },
  };
}

export default definePlugin({
  name: 'p2c-ewma',
  kind: 'balancer',
  apiVersion: '^1.0.0',
  description: 'Power of two choices over peak-EWMA latency × (outstanding + 1) (default).',
  options: p2cEwmaOptions,
  setup: (_ctx, options) => createP2cEwma(options),
});
