import { describe, expect, it } from 'vitest';
import type { BalancerCandidate, PluginDefinition } from 'capibara-mcp';
import { mulberry32 } from 'capibara-mcp/sdk';
import { describeBalancerConformance, testPluginContext } from 'capibara-mcp/testing';
import roundRobinPlugin, { createRoundRobin } from '../../plugins/balancer-round-robin/index.ts';
import weightedRandomPlugin, { createWeightedRandom } from '../../plugins/balancer-weighted-random/index.ts';
import leastOutstandingPlugin, { createLeastOutstanding } from '../../plugins/balancer-least-outstanding/index.ts';
import p2cEwmaPlugin, { createP2cEwma } from '../../plugins/balancer-p2c-ewma/index.ts';
import consistentHashPlugin, { createConsistentHash } from '../../plugins/balancer-consistent-hash/index.ts';

const plugins = [roundRobinPlugin, weightedRandomPlugin, leastOutstandingPlugin, p2cEwmaPlugin, consistentHashPlugin] as PluginDefinition<
  'balancer',
  unknown
>[];

/** Runs the plugin through its definition, as the host would: parse options, then setup. */
async function viaPlugin(p: PluginDefinition<'balancer', unknown>, raw: unknown = {}) {
  const ctx = testPluginContext(p.name);
  return p.setup(ctx, p.options.parse(raw));
}

for (const p of plugins) describeBalancerConformance(p.name, () => viaPlugin(p));
describeBalancerConformance('p2c-ewma (explain: false)', () => createP2cEwma({ explain: false }));
describeBalancerConformance('consistent-hash (loadFactor 1, 8 vnodes)', () => createConsistentHash({ loadFactor: 1, virtualNodes: 8 }));

type Cand = BalancerCandidate & { outstanding: number; weight: number };
const mk = (n: number, f: (i: number) => Partial<Cand> = () => ({})): Cand[] =>
  Array.from({ length: n }, (_, i) => ({ id: `i${i}`, weight: 1, outstanding: 0, ...f(i) }));

/** Small deterministic PRNG so distribution tests do not flake. */
const rng = mulberry32;

describe('plugin definitions', () => {
  it('are balancer plugins for API ^1.0.0 with strict zod options and defaults', () => {
    expect(plugins.map((p) => p.name)).toEqual(['round-robin', 'weighted-random', 'least-outstanding', 'p2c-ewma', 'consistent-hash']);
    for (const p of plugins) {
      expect(p.kind).toBe('balancer');
      expect(p.apiVersion).toBe('^1.0.0');
      expect(() => p.options.parse({})).not.toThrow();
      expect(() => p.options.parse({ nope: 1 })).toThrow();
    }
    expect(p2cEwmaPlugin.options.parse({})).toMatchObject({ decayMs: 10_000, unobservedFactor: 0.75, errorPenaltyFactor: 5, explain: true });
    expect(consistentHashPlugin.options.parse({})).toMatchObject({ virtualNodes: 100, loadFactor: 1.25 });
    expect(() => consistentHashPlugin.options.parse({ loadFactor: 0.5 })).toThrow();
  });
});

describe('round-robin', () => {
  it('cycles through every candidate in turn', () => {
    const b = createRoundRobin({}, { random: () => 0 });
    const cs = mk(3);
    expect(Array.from({ length: 6 }, () => b.pick(cs, {}).chosen.id)).toEqual(['i0', 'i1', 'i2', 'i0', 'i1', 'i2']);
  });
  it('skips excluded instances', () => {
    const b = createRoundRobin({}, { random: () => 0 });
    const cs = mk(3);
    expect(b.pick(cs, { exclude: new Set(['i0']) }).chosen.id).toBe('i1');
    expect(b.pick(cs, { exclude: new Set(['i2']) }).chosen.id).toBe('i0');
  });
});

describe('weighted-random', () => {
  it('follows the weights within tolerance over 10k picks', () => {
    const b = createWeightedRandom({}, { random: rng(42) });
    const cs = mk(3, (i) => ({ weight: [1, 3, 6][i]! }));
    const counts: Record<string, number> = { i0: 0, i1: 0, i2: 0 };
    for (let k = 0; k < 10_000; k++) counts[b.pick(cs, {}).chosen.id]! += 1;
    expect(counts.i0! / 10_000).toBeCloseTo(0.1, 1);
    expect(Math.abs(counts.i0! / 10_000 - 0.1)).toBeLessThan(0.02);
    expect(Math.abs(counts.i1! / 10_000 - 0.3)).toBeLessThan(0.02);
    expect(Math.abs(counts.i2! / 10_000 - 0.6)).toBeLessThan(0.02);
  });
  it('never picks weight 0 while a positive weight exists; uniform when all are 0', () => {
    const b = createWeightedRandom({}, { random: rng(1) });
    const cs = mk(3, (i) => ({ weight: i === 1 ? 2 : 0 }));
    for (let k = 0; k < 500; k++) expect(b.pick(cs, {}).chosen.id).toBe('i1');
    const zeros = mk(4, () => ({ weight: 0 }));
    const seen = new Set<string>();
    for (let k = 0; k < 500; k++) seen.add(b.pick(zeros, {}).chosen.id);
    expect(seen.size).toBe(4);
  });
  it('reports the chosen probability as its score', () => {
    const b = createWeightedRandom({}, { random: () => 0.99 });
    const pick = b.pick(
      mk(2, (i) => ({ weight: i + 1 })),
      {},
    );
    expect(pick.chosen.id).toBe('i1');
    expect(pick.scores!.i1).toBeCloseTo(2 / 3);
  });
});

describe('least-outstanding', () => {
  it('picks the minimum, breaking ties at random', () => {
    const b = createLeastOutstanding({}, { random: rng(7) });
    const cs = mk(4, (i) => ({ outstanding: [5, 2, 9, 2][i]! }));
    const seen = new Set<string>();
    for (let k = 0; k < 400; k++) {
      const pick = b.pick(cs, {});
      expect(['i1', 'i3']).toContain(pick.chosen.id);
      seen.add(pick.chosen.id);
    }
    expect(seen.size).toBe(2);
    expect(b.pick(cs, {}).scores).toEqual({ i0: 5, i1: 2, i2: 9, i3: 2 });
    expect(b.pick(cs, { exclude: new Set(['i1', 'i3']) }).chosen.id).toBe('i0');
  });
  it('caps the scores object at maxScores, always scoring the chosen one', () => {
    const b = createLeastOutstanding({ maxScores: 3 }, { random: rng(2) });
    const cs = mk(40, (i) => ({ outstanding: i === 30 ? 0 : 5 }));
    const pick = b.pick(cs, {});
    expect(pick.chosen.id).toBe('i30');
    expect(pick.scores).toEqual({ i30: 0, i0: 5, i1: 5 });
  });
});

describe('consistent-hash', () => {
  it('is sticky for a key and spreads different keys', () => {
    const b = createConsistentHash();
    const cs = mk(8);
    const home = new Map<string, string>();
    for (let k = 0; k < 400; k++) home.set(`user-${k}`, b.pick(cs, { affinityKey: `user-${k}` }).chosen.id);
    for (let k = 0; k < 400; k++) expect(b.pick(cs, { affinityKey: `user-${k}` }).chosen.id).toBe(home.get(`user-${k}`));
    const per = new Map<string, number>();
    for (const id of home.values()) per.set(id, (per.get(id) ?? 0) + 1);
    expect(per.size).toBe(8);
    for (const n of per.values()) expect(n).toBeGreaterThan(20); // 50 expected each
  });

  it("moves only the removed instance's keys, and they come back when it returns", () => {
    const b = createConsistentHash();
    const cs = mk(6);
    const before = new Map<string, string>();
    for (let k = 0; k < 600; k++) before.set(`k${k}`, b.pick(cs, { affinityKey: `k${k}` }).chosen.id);
    const without = cs.filter((c) => c.id !== 'i2');
    let moved = 0;
    for (const [key, id] of before) {
      const now = b.pick(without, { affinityKey: key }).chosen.id;
      if (id === 'i2') {
        moved++;
        expect(now).not.toBe('i2');
      } else expect(now).toBe(id);
    }
    expect(moved).toBeGreaterThan(0);
    for (const [key, id] of before) expect(b.pick(cs, { affinityKey: key }).chosen.id).toBe(id);
    // adding an instance moves roughly 1/7 of the keys, all of them to the newcomer
    const more = [...cs, { id: 'i6', weight: 1, outstanding: 0 }];
    let toNew = 0;
    for (const [key, id] of before) {
      const now = b.pick(more, { affinityKey: key }).chosen.id;
      if (now !== id) {
        expect(now).toBe('i6');
        toNew++;
      }
    }
    expect(toNew / 600).toBeGreaterThan(0.05);
    expect(toNew / 600).toBeLessThan(0.3);
  });

  it('spills past an overloaded home (bounded load) and returns when the load drops', () => {
    const b = createConsistentHash({ loadFactor: 1.25 });
    const cs = mk(4);
    const home = b.pick(cs, { affinityKey: 'hot' }).chosen;
    (home as Cand).outstanding = 10; // total 10, capacity ⌈1.25 × 11 / 4⌉ = 4
    const spill = b.pick(cs, { affinityKey: 'hot' });
    expect(spill.chosen.id).not.toBe(home.id);
    expect(spill.scores![home.id]).toBe(0);
    expect(spill.scores![spill.chosen.id]).toBe(1);
    // the spill target is stable (next on the ring), not random
    expect(b.pick(cs, { affinityKey: 'hot' }).chosen.id).toBe(spill.chosen.id);
    (home as Cand).outstanding = 0; // (1 would still exceed ⌈1.25 × 2 / 4⌉ = 1)
    expect(b.pick(cs, { affinityKey: 'hot' }).chosen.id).toBe(home.id);
  });

  it('keeps every instance within ⌈c × average⌉ when one key floods', () => {
    const b = createConsistentHash({ loadFactor: 1.25 });
    const cs = mk(5);
    for (let k = 0; k < 200; k++) {
      const pick = b.pick(cs, { affinityKey: 'same-key' });
      (pick.chosen as Cand).outstanding++;
      const total = cs.reduce((s, c) => s + c.outstanding, 0);
      const cap = Math.ceil((1.25 * total) / 5);
      for (const c of cs) expect(c.outstanding).toBeLessThanOrEqual(cap);
    }
  });

  it('falls back to least-outstanding without a key', () => {
    const b = createConsistentHash();
    const cs = mk(3, (i) => ({ outstanding: [3, 1, 2][i]! }));
    expect(b.pick(cs, {}).chosen.id).toBe('i1');
    expect(b.pick(cs, { affinityKey: '' }).chosen.id).toBe('i1');
  });
});

describe('p2c-ewma', () => {
  it('avoids a 10× slower instance once observed', () => {
    let t = 0;
    const b = createP2cEwma({}, { now: () => t, random: rng(3) });
    const cs = mk(2);
    const latency: Record<string, number> = { i0: 10, i1: 100 };
    for (let k = 0; k < 50; k++) {
      const { chosen } = b.pick(cs, {});
      t += 5;
      b.observe!(chosen.id, { ok: true, latencyMs: latency[chosen.id]! });
    }
    let slow = 0;
    for (let k = 0; k < 1000; k++) {
      const { chosen } = b.pick(cs, {});
      if (chosen.id === 'i1') slow++;
      t += 5;
      b.observe!(chosen.id, { ok: true, latencyMs: latency[chosen.id]! });
    }
    expect(slow / 1000).toBeLessThan(0.05);
  });

  it('never picks a 10× slower instance among 8 with equal load (it loses every pairing)', () => {
    const t = 0;
    const b = createP2cEwma({}, { now: () => t, random: rng(9) });
    const cs = mk(8);
    for (const c of cs) b.observe!(c.id, { ok: true, latencyMs: c.id === 'i5' ? 200 : 20 });
    let slow = 0;
    for (let k = 0; k < 2000; k++) if (b.pick(cs, {}).chosen.id === 'i5') slow++;
    expect(slow).toBe(0);
  });

  it('peak: jumps up at once, decays down with the time constant', () => {
    let t = 0;
    const b = createP2cEwma({ decayMs: 10_000, unobservedLatencyMs: 10 }, { now: () => t });
    b.observe!('a', { ok: true, latencyMs: 10 });
    t = 100;
    b.observe!('a', { ok: true, latencyMs: 500 });
    expect(b.costOf('a')).toBe(500);
    t = 10_100; // one τ later with fast answers: ~ e^-1 of the excess left
    b.observe!('a', { ok: true, latencyMs: 10 });
    expect(b.costOf('a')).toBeGreaterThan(10);
    expect(b.costOf('a')).toBeLessThan(100);
  });

  it('gives unobserved instances an optimistic neutral score, damped by outstanding', () => {
    const t = 0;
    const b = createP2cEwma({}, { now: () => t, random: rng(5) });
    const cs = mk(2);
    b.observe!('i0', { ok: true, latencyMs: 40 });
    expect(b.costOf('i1')).toBeCloseTo(30); // 0.75 × fleet average 40
    expect(b.pick(cs, {}).chosen.id).toBe('i1');
    cs[1]!.outstanding = 3; // 30 × 4 = 120 > 40 × 1
    expect(b.pick(cs, {}).chosen.id).toBe('i0');
  });

  it('penalises errors, and the penalty fades so the instance is retried', () => {
    let t = 0;
    const b = createP2cEwma({}, { now: () => t, random: rng(11) });
    const cs = mk(2);
    b.observe!('i0', { ok: true, latencyMs: 20 });
    b.observe!('i1', { ok: true, latencyMs: 20 });
    b.observe!('i1', { ok: false, latencyMs: 1 }); // fast failure must not look fast
    expect(b.costOf('i1')).toBeGreaterThanOrEqual(100);
    for (let k = 0; k < 100; k++) expect(b.pick(cs, {}).chosen.id).toBe('i0');
    t += 60_000; // six τ later the penalty is gone: back near neutral
    expect(b.costOf('i1')).toBeLessThan(20);
  });

  it('forget() drops the estimate', () => {
    const b = createP2cEwma({ unobservedLatencyMs: 7 }, { now: () => 0 });
    b.observe!('x', { ok: true, latencyMs: 300 });
    expect(b.costOf('x')).toBe(300);
    b.forget!('x');
    expect(b.costOf('x')).toBe(7);
  });
});
