/**
 * least-outstanding balancer: picks the eligible candidate with the fewest in-flight
 * requests (BalancerCandidate.outstanding); ties are broken uniformly at random
 * (reservoir sampling, no allocation).
 */
import { z } from 'zod';
import { definePlugin, type Balancer, type BalanceContext, type BalancerCandidate, type BalancerPick } from 'capibara-mcp';
import { effectiveExclude } from 'capibara-mcp/sdk';

export const leastOutstandingOptions = z.strictObject({
  /** Return `scores`: each eligible candidate's outstanding count (lower is better). */
  explain: z.boolean().default(true),
  /** At most this many candidates get a score (the chosen one always does): building a 128-key object costs ~4 µs. */
  maxScores: z.number().int().min(1).default(16),
});
export type LeastOutstandingOptions = z.input<typeof leastOutstandingOptions>;

export interface LeastOutstandingDeps {
  random?: () => number;
}

/** Least outstanding among `candidates` minus `exclude` (ignored when it would leave none); exported for reuse. */
export function pickLeastOutstanding<C extends BalancerCandidate>(
  candidates: readonly C[],
  excludeAsked: ReadonlySet<string> | undefined,
  random: () => number,
): C {
  const n = candidates.length;
  const exclude = effectiveExclude(candidates, excludeAsked);
  let best: C | undefined;
  let min = Infinity;
  let ties = 0;
  for (let i = 0; i < n; i++) {
    const c = candidates[i]!;
    if (exclude !== undefined && exclude.has(c.id)) continue;
    let o = c.outstanding;
    if (!(o >= 0)) o = 0; // NaN / negative: treat as idle
    if (o < min || best === undefined) {
      min = o;
      best = c;
      ties = 1;
    } else if (o === min) {
      ties++;
      if (random() * ties < 1) best = c;
    }
  }
  return best ?? candidates[0]!;
}

export function createLeastOutstanding(options: LeastOutstandingOptions = {}, deps: LeastOutstandingDeps = {}): Balancer {
  const explain = options.explain ?? true;
  const maxScores = options.maxScores ?? 16;
  const random = deps.random ?? Math.random;
  return {
    pick<C extends BalancerCandidate>(candidates: readonly C[], context: BalanceContext): BalancerPick<C> {
      const chosen = pickLeastOutstanding(candidates, context.exclude, random);
      if (!explain) return { chosen };
      const scores: Record<string, number> = {};
      const exclude = context.exclude;
      const co = chosen.outstanding;
      scores[chosen.id] = co >= 0 && co < Infinity ? co : 0;
      let k = 1;
      for (let i = 0; i < candidates.length && k < maxScores; i++) {
        const c = candidates[i]!;
        if (c === chosen || (exclude !== undefined && exclude.has(c.id))) continue;
        const o = c.outstanding;
        scores[c.id] = o >= 0 && o < Infinity ? o : 0;
        k++;
      }
      return { chosen, scores };
    },
    forget() {
      /* stateless */
    },
  };
}

export default definePlugin({
  name: 'least-outstanding',
  kind: 'balancer',
  apiVersion: '^1.0.0',
  description: 'Fewest in-flight requests wins; ties broken at random.',
  options: leastOutstandingOptions,
  setup: (_ctx, options) => createLeastOutstanding(options),
});
