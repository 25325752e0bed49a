/**
 * Balancer conformance suite. Third-party balancer authors run it from their own tests (vitest):
 *
 *   import { describeBalancerConformance } from 'capibara-mcp/testing';
 *   describeBalancerConformance('my-balancer', () => createMyBalancer());
 *
 * `create` is called once per test (fresh state). Checks: the pick is always one of the
 * candidates (the same object), one candidate never throws, `exclude` is respected while
 * another candidate exists, candidate-list changes, forget()/observe() on unknown ids,
 * stable shape of `scores`, a performance sanity bound, and random inputs (fast-check).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Balancer, BalanceContext, BalancerCandidate, BalancerPick } from '../plugin/contract.ts';

export interface BalancerConformanceOptions {
  /** Time bound for 100k picks over 16 candidates (ms); generous by default. */
  perfBudgetMs?: number;
  /** fast-check runs per property (default 150). */
  numRuns?: number;
}

interface Cand extends BalancerCandidate {
  id: string;
  weight: number;
  outstanding: number;
}

function cands(n: number, prefix = 'i'): Cand[] {
  return Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, weight: 1, outstanding: 0 }));
}

function checkPick(pick: BalancerPick<Cand>, candidates: readonly Cand[]): void {
  expect(candidates).toContain(pick.chosen);
  if (pick.scores !== undefined) {
    expect(typeof pick.scores).toBe('object');
    const ids = new Set(candidates.map((c) => c.id));
    for (const [id, s] of Object.entries(pick.scores)) {
      expect(ids.has(id), `score for unknown id ${id}`).toBe(true);
      expect(typeof s).toBe('number');
      expect(Number.isNaN(s), `score for ${id} is NaN`).toBe(false);
    }
  }
}

const contexts: BalanceContext[] = [
  {},
  { affinityKey: 'user-1' },
  { affinityKey: 'user-2', exclude: new Set(['i0']) },
  { exclude: new Set(['i1', 'i2']) },
  { affinityKey: '' },
  { affinityKey: 'x'.repeat(300) },
];

export function describeBalancerConformance(name: string, create: () => Balancer | Promise<Balancer>, options: BalancerConformanceOptions = {}): void {
  const perfBudgetMs = options.perfBudgetMs ?? 3000;
  const numRuns = options.numRuns ?? 150;

  describe(`balancer conformance: ${name}`, () => {
    it('always returns one of the candidates (the same object)', async () => {
      const b = await create();
      for (const n of [1, 2, 3, 16, 64]) {
        const cs = cands(n);
        for (let k = 0; k < 200; k++) {
          cs[k % n]!.outstanding = (k * 7) % 5;
          checkPick(b.pick(cs, contexts[k % contexts.length]!), cs);
        }
      }
    });

    it('never throws on a single candidate, even when it is excluded', async () => {
      const b = await create();
      const cs = cands(1);
      for (const ctx of [{}, { exclude: new Set(['i0']) }, { affinityKey: 'k', exclude: new Set(['i0']) }]) {
        expect(b.pick(cs, ctx).chosen).toBe(cs[0]);
      }
    });

    it('respects exclude when another candidate exists', async () => {
      const b = await create();
      const cs = cands(5);
      for (let k = 0; k < 300; k++) {
        const exclude = new Set(cs.filter((_, i) => i !== k % 5 && (i + k) % 3 !== 0).map((c) => c.id));
        if (exclude.size === cs.length) exclude.delete(cs[0]!.id);
        const ctx: BalanceContext = k % 2 ? { exclude, affinityKey: `key-${k}` } : { exclude };
        const pick = b.pick(cs, ctx);
        checkPick(pick, cs);
        expect(exclude.has(pick.chosen.id), `picked excluded ${pick.chosen.id}`).toBe(false);
      }
      // all excluded: still returns a candidate
      const all = new Set(cs.map((c) => c.id));
      checkPick(b.pick(cs, { exclude: all }), cs);
      checkPick(b.pick(cs, { exclude: all, affinityKey: 'k' }), cs);
    });

    it('handles candidate list changes (add, remove, replace)', async () => {
      const b = await create();
      let cs = cands(4);
      const lists: Cand[][] = [cs, cs.slice(0, 2), [...cs, ...cands(3, 'new')], cands(3, 'other'), [cs[3]!], cs.slice().reverse()];
      for (let round = 0; round < 3; round++) {
        for (const list of lists) {
          cs = list;
          for (let k = 0; k < 50; k++) {
            const pick = b.pick(cs, k % 2 ? { affinityKey: `s${k % 7}` } : {});
            checkPick(pick, cs);
            b.observe?.(pick.chosen.id, { ok: k % 5 !== 0, latencyMs: 5 + (k % 11) });
          }
          b.forget?.(lists[0]![0]!.id);
        }
      }
    });

    it('forget() and observe() are safe on unknown ids', async () => {
      const b = await create();
      expect(() => b.forget?.('never-seen')).not.toThrow();
      expect(() => b.observe?.('never-seen', { ok: true, latencyMs: 3 })).not.toThrow();
      expect(() => b.observe?.('never-seen', { ok: false, latencyMs: 0 })).not.toThrow();
      const cs = cands(3);
      checkPick(b.pick(cs, {}), cs);
      for (const c of cs) b.forget?.(c.id);
      b.forget?.('i0');
      checkPick(b.pick(cs, { affinityKey: 'a' }), cs);
    });

    it('returns scores of a stable type across calls', async () => {
      const b = await create();
      const cs = cands(8);
      const kinds = new Set<string>();
      for (let k = 0; k < 200; k++) {
        cs[k % 8]!.outstanding = k % 4;
        const pick = b.pick(cs, contexts[k % contexts.length]!);
        checkPick(pick, cs);
        kinds.add(pick.scores === undefined ? 'undefined' : 'object');
        b.observe?.(pick.chosen.id, { ok: true, latencyMs: 10 });
      }
      expect(kinds.size, `scores were sometimes present, sometimes not: ${[...kinds].join(',')}`).toBe(1);
    });

    it(`is fast: 100k picks over 16 candidates in < ${perfBudgetMs} ms`, async () => {
      const b = await create();
      const cs = cands(16);
      const keys = Array.from({ length: 64 }, (_, i) => ({ affinityKey: `user-${i}` }));
      const empty = {};
      const t0 = performance.now();
      for (let k = 0; k < 100_000; k++) {
        const pick = b.pick(cs, (k & 1) === 0 ? empty : keys[k & 63]!);
        if ((k & 15) === 0) b.observe?.(pick.chosen.id, { ok: true, latencyMs: 10 + (k & 7) });
      }
      const ms = performance.now() - t0;
      expect(ms).toBeLessThan(perfBudgetMs);
    });

    it('never crashes on random candidate lists, outstanding counts, weights and observations', async () => {
      const b = await create();
      const candArb = fc.uniqueArray(
        fc.record({
          id: fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constantFrom('a', 'b', 'c', 'd')),
          weight: fc.oneof(fc.double({ min: 0, max: 1000, noNaN: true }), fc.constantFrom(0, 1, Number.NaN, Infinity, -1)),
          outstanding: fc.oneof(fc.nat(1000), fc.constantFrom(0, 0, 1, Number.NaN, -1)),
        }),
        { minLength: 1, maxLength: 24, selector: (c) => c.id },
      );
      const opArb = fc.record({
        affinityKey: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
        excludeMask: fc.nat(0xffffff),
        observe: fc.option(
          fc.record({
            ok: fc.boolean(),
            latencyMs: fc.oneof(fc.double({ min: 0, max: 1e6, noNaN: true }), fc.constantFrom(0, Number.NaN, -5, Infinity)),
          }),
          { nil: undefined },
        ),
        forget: fc.boolean(),
      });
      await fc.assert(
        fc.asyncProperty(candArb, fc.array(opArb, { minLength: 1, maxLength: 20 }), async (cs, ops) => {
          for (const op of ops) {
            const exclude = new Set(cs.filter((_, i) => (op.excludeMask >> i) & 1).map((c) => c.id));
            const ctx: BalanceContext = op.affinityKey === undefined ? { exclude } : { exclude, affinityKey: op.affinityKey };
            const pick = b.pick(cs, ctx);
            checkPick(pick, cs);
            if (exclude.size < cs.length) expect(exclude.has(pick.chosen.id)).toBe(false);
            if (op.observe) b.observe?.(pick.chosen.id, op.observe);
            if (op.forget) b.forget?.(pick.chosen.id);
          }
        }),
        { numRuns },
      );
    });
  });
}
