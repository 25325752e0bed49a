/**
 * round-robin balancer: hands requests to the candidates in turn, skipping instances
 * already tried for this request (BalanceContext.exclude) when another one exists.
 * Ignores weight and outstanding; use weighted-random, least-outstanding or p2c-ewma
 * when instances differ.
 */
import { z } from 'zod';
import { definePlugin, type Balancer, type BalanceContext, type BalancerCandidate, type BalancerPick } from 'capibara-mcp';

export const roundRobinOptions = z.strictObject({
  /** Return `scores` (the chosen candidate scores 0). */
  explain: z.boolean().default(true),
});
export type RoundRobinOptions = z.input<typeof roundRobinOptions>;

export interface RoundRobinDeps {
  /** Random source in [0,1) for the starting offset (default Math.random). */
  random?: () => number;
}

export function createRoundRobin(options: RoundRobinOptions = {}, deps: RoundRobinDeps = {}): Balancer {
  const explain = options.explain ?? true;
  // Random start so several gateway replicas do not move in lock-step.
  let cursor = Math.floor((deps.random ?? Math.random)() * 65536);
  return {
    pick<C extends BalancerCandidate>(candidates: readonly C[], context: BalanceContext): BalancerPick<C> {
      const n = candidates.length;
      const start = cursor % n;
      let idx = start;
      const exclude = context.exclude;
      if (exclude !== undefined && exclude.size > 0) {
        for (let step = 0; step < n; step++) {
          const i = (start + step) % n;
          if (!exclude.has(candidates[i]!.id)) {
            idx = i;
            break;
          }
        }
      }
      cursor = idx + 1;
      if (cursor > 0x3fffffff) cursor = 0;
      const chosen = candidates[idx]!;
      return explain ? { chosen, scores: { [chosen.id]: 0 } } : { chosen };
    },
    forget() {
      /* no per-instance state */
    },
  };
}

export default definePlugin({
  name: 'round-robin',
  kind: 'balancer',
  apiVersion: '^1.0.0',
  description: 'Round-robin over the candidates; skips already-tried instances.',
  options: roundRobinOptions,
  setup: (_ctx, options) => createRoundRobin(options),
});
