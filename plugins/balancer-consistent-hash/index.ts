/**
 * consistent-hash balancer with bounded load (Mirrokni, Thorup & Zadimoghaddam, "Consistent
 * Hashing with Bounded Loads", Google 2016; deployed by Vimeo in HAProxy).
 *
 * Every instance ever seen (until forget()) owns `virtualNodes` points on a 32-bit hash
 * ring. A request with `BalanceContext.affinityKey` hashes onto the ring and walks
 * clockwise to the first instance that is (a) a current candidate, (b) not excluded, and
 * (c) under capacity: outstanding + 1 ≤ ⌈loadFactor × (Σ outstanding + 1) / n⌉ over the
 * eligible candidates. With loadFactor c ≥ 1 at least one instance is always under
 * capacity, and no instance gets more than c × the average load, while a key keeps its
 * instance as long as that instance is present and not overloaded (sticky sessions,
 * prompt-prefix / KV-cache affinity).
 *
 * Because the ring holds every known instance (not only the current candidates), an
 * instance that is filtered out for a moment (unhealthy, circuit open) only moves its own
 * keys, and they come back when it returns. Requests without a key fall back to
 * least-outstanding (ties random).
 *
 * Scores: for each distinct instance visited on the walk, its rank in walk order
 * (0 = the key's home instance); lower is better and the chosen one has the lowest score
 * among the visited ones that had capacity.
 */
import { z } from 'zod';
import { definePlugin, type Balancer, type BalanceContext, type BalancerCandidate, type BalancerPick } from 'capibara-mcp';
import { hash32, effectiveExclude } from 'capibara-mcp/sdk';
import { pickLeastOutstanding } from '../balancer-least-outstanding/index.ts';

export const consistentHashOptions = z.strictObject({
  /** Points per instance on the ring; more = smoother split, slower ring rebuilds. */
  virtualNodes: z.number().int().min(1).max(4096).default(100),
  /** Bounded-load factor c: an instance takes at most ⌈c × average load⌉. `Infinity`-like large values disable the bound. */
  loadFactor: z.number().min(1).default(1.25),
  /** Return `scores` (walk rank of each visited instance). */
  explain: z.boolean().default(true),
});
export type ConsistentHashOptions = z.input<typeof consistentHashOptions>;

export interface ConsistentHashDeps {
  random?: () => number;
}

interface RingNode {
  readonly id: string;
  /** Pick epoch in which it was last seen among the candidates. */
  epoch: number;
  /** Its index in the current candidates array (valid when epoch is current). */
  index: number;
  /** Last pick that visited it (dedupe for scores). */
  visit: number;
}

const SHIFT = 1 << 20; // ring entries pack hash × 2^20 + node index into one float64 (< 2^52)

export function createConsistentHash(options: ConsistentHashOptions = {}, deps: ConsistentHashDeps = {}): Balancer {
  const o = consistentHashOptions.parse(options);
  const random = deps.random ?? Math.random;
  const nodes = new Map<string, RingNode>();
  let nodeList: RingNode[] = [];
  let ringHash = new Uint32Array(0);
  let ringNode: RingNode[] = [];
  let dirty = false;
  let epoch = 0;
  let lastIds: string[] = [];
  let visitNo = 0;

  function rebuild(): void {
    nodeList = [...nodes.values()];
    if (nodeList.length >= SHIFT) throw new Error('consistent-hash: too many instances');
    const v = o.virtualNodes;
    const packed = new Float64Array(nodeList.length * v);
    let k = 0;
    for (let ni = 0; ni < nodeList.length; ni++) {
      const id = nodeList[ni]!.id;
      for (let r = 0; r < v; r++) packed[k++] = hash32(id, r + 1) * SHIFT + ni;
    }
    packed.sort();
    ringHash = new Uint32Array(packed.length);
    ringNode = new Array<RingNode>(packed.length);
    for (let i = 0; i < packed.length; i++) {
      const x = packed[i]!;
      const ni = x % SHIFT;
      ringHash[i] = (x - ni) / SHIFT;
      ringNode[i] = nodeList[ni]!;
    }
    dirty = false;
  }

  function sync(candidates: readonly BalancerCandidate[]): void {
    const n = candidates.length;
    if (n === lastIds.length) {
      let same = true;
      for (let i = 0; i < n; i++)
        if (candidates[i]!.id !== lastIds[i]) {
          same = false;
          break;
        }
      if (same) return;
    }
    epoch++;
    lastIds = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      const id = candidates[i]!.id;
      lastIds[i] = id;
      let node = nodes.get(id);
      if (node === undefined) {
        node = { id, epoch, index: i, visit: 0 };
        nodes.set(id, node);
        dirty = true;
      }
      node.epoch = epoch;
      node.index = i;
    }
    // Bound memory when instances churn without forget(): drop long-gone ones.
    if (nodes.size > 2 * n + 64) {
      for (const [id, node] of nodes) if (node.epoch !== epoch) nodes.delete(id);
      dirty = true;
    }
  }

  return {
    pick<C extends BalancerCandidate>(candidates: readonly C[], context: BalanceContext): BalancerPick<C> {
      const key = context.affinityKey;
      if (key === undefined || key === '') {
        const chosen = pickLeastOutstanding(candidates, context.exclude, random);
        return o.explain ? { chosen, scores: { [chosen.id]: 0 } } : { chosen };
      }
      sync(candidates);
      if (dirty) rebuild();
      const n = candidates.length;
      const exclude = effectiveExclude(candidates, context.exclude);
      let total = 0;
      let m = 0;
      for (let i = 0; i < n; i++) {
        const c = candidates[i]!;
        if (exclude !== undefined && exclude.has(c.id)) continue;
        const out = c.outstanding;
        if (out > 0 && out < Infinity) total += out;
        m++;
      }
      const capacity = Math.ceil((o.loadFactor * (total + 1)) / m);

      const h = hash32(key);
      // lower bound: first ring point with hash >= h
      let lo = 0;
      let hi = ringHash.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (ringHash[mid]! < h) lo = mid + 1;
        else hi = mid;
      }
      const len = ringHash.length;
      const visit = ++visitNo;
      let rank = 0;
      let scores: Record<string, number> | undefined;
      if (o.explain) scores = {};
      for (let step = 0; step < len; step++) {
        let pos = lo + step;
        if (pos >= len) pos -= len;
        const node = ringNode[pos]!;
        if (node.epoch !== epoch || node.visit === visit) continue;
        node.visit = visit;
        const c = candidates[node.index]!;
        if (exclude !== undefined && exclude.has(c.id)) continue;
        if (scores !== undefined) scores[c.id] = rank;
        rank++;
        let out = c.outstanding;
        if (!(out >= 0)) out = 0;
        if (out + 1 <= capacity) return scores !== undefined ? { chosen: c, scores } : { chosen: c };
      }
      // Unreachable with sane inputs (someone is at or below average); stay total anyway.
      const chosen = pickLeastOutstanding(candidates, exclude, random);
      return scores !== undefined ? { chosen, scores: { ...scores, [chosen.id]: rank } } : { chosen };
    },

    forget(id: string): void {
      if (nodes.delete(id)) {
        dirty = true;
        lastIds = []; // force a resync so indices stay right
      }
    },
  };
}

export default definePlugin({
  name: 'consistent-hash',
  kind: 'balancer',
  apiVersion: '^1.0.0',
  description: 'Consistent hashing with bounded load on BalanceContext.affinityKey; least-outstanding without a key.',
  options: consistentHashOptions,
  setup: (_ctx, options) => createConsistentHash(options),
});
