/**
 * weighted-random balancer: picks a candidate with probability weight / Σ weights among
 * the eligible candidates (not excluded, finite weight > 0). When every eligible weight is
 * 0 (or invalid) it picks uniformly among them, so a pick always succeeds.
 */
import { z } from 'zod';
import { definePlugin, type Balancer, type BalanceContext, type BalancerCandidate, type BalancerPick } from 'capibara-mcp';
import { effectiveExclude } from 'capibara-mcp/sdk';

export const weightedRandomOptions = z.strictObject({
  /** Return `scores`: the chosen candidate's selection probability (higher = more likely). */
  explain: z.boolean().default(true),
});
export type WeightedRandomOptions = z.input<typeof weightedRandomOptions>;

export interface WeightedRandomDeps {
  random?: () => number;
}

function w(c: BalancerCandidate): number {
  const x = c.weight;
  return x > 0 && x < Infinity ? x : 0;
}

export function createWeightedRandom(options: WeightedRandomOptions = {}, deps: WeightedRandomDeps = {}): Balancer {
  const explain = options.explain ?? true;
  const random = deps.random ?? Math.random;
  return {
    pick<C extends BalancerCandidate>(candidates: readonly C[], context: BalanceContext): BalancerPick<C> {
      const n = candidates.length;
      const exclude = effectiveExclude(candidates, context.exclude);

      let total = 0;
      let count = 0;
      for (let i = 0; i < n; i++) {
        const c = candidates[i]!;
        if (exclude !== undefined && exclude.has(c.id)) continue;
        total += w(c);
        count++;
      }
      let chosen: C | undefined;
      let p: number;
      if (total > 0 && total < Infinity) {
        let r = random() * total;
        for (let i = 0; i < n; i++) {
          const c = candidates[i]!;
          if (exclude !== undefined && exclude.has(c.id)) continue;
          const cw = w(c);
          if (cw === 0) continue;
          chosen = c;
          r -= cw;
          if (r < 0) break;
        }
        p = chosen ? w(chosen) / total : 1;
      } else {
        // All weights zero/invalid: uniform among eligible.
        let k = Math.floor(random() * count);
        for (let i = 0; i < n; i++) {
          const c = candidates[i]!;
          if (exclude !== undefined && exclude.has(c.id)) continue;
          chosen = c;
          if (k-- <= 0) break;
        }
        p = 1 / count;
      }
      const pick = chosen ?? candidates[0]!;
      return explain ? { chosen: pick, scores: { [pick.id]: p } } : { chosen: pick };
    },
    forget() {
      /* stateless */
    },
  };
}

export default definePlugin({
  name: 'weighted-random',
  kind: 'balancer',
  apiVersion: '^1.0.0',
  description: 'Random choice proportional to candidate weight.',
  options: weightedRandomOptions,
  setup: (_ctx, options) => createWeightedRandom(options),
});
