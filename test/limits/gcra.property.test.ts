import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gcraSpend } from '../../src/limits/gcra.ts';
import { MemoryRateLimitStore } from '../../src/limits/memory-store.ts';

/** A request schedule on a fake clock: gaps (ms, fractional) and costs. */
const steps = fc.array(fc.record({ gap: fc.double({ min: 0, max: 5000, noNaN: true }), cost: fc.integer({ min: 1, max: 50 }) }), { maxLength: 200 });
/** Limits from 1 request per second to 1M tokens a month (the emission interval in ms, fractional). */
const shape = fc.record({ intervalMs: fc.double({ min: 0.5, max: 2592, noNaN: true }), burst: fc.integer({ min: 1, max: 200 }) });

function windowBoundHolds(allowed: Array<{ t: number; cost: number }>, intervalMs: number, burst: number): void {
  for (let i = 0; i < allowed.length; i++) {
    let sum = 0;
    for (let j = i; j < allowed.length; j++) {
      sum += allowed[j]!.cost;
      expect(sum).toBeLessThanOrEqual(burst + (allowed[j]!.t - allowed[i]!.t + 0.01) / intervalMs);
    }
  }
}

describe('GCRA on a fake clock', () => {
  it('the pure algorithm: in any window T at most burst + rate·T is allowed', () => {
    fc.assert(
      fc.property(shape, steps, ({ intervalMs, burst }, seq) => {
        let now = 1_700_000_000_000;
        let tat: number | undefined;
        const allowed: Array<{ t: number; cost: number }> = [];
        for (const s of seq) {
          now += s.gap;
          const step = gcraSpend(tat, now, { key: 'k', cost: s.cost, intervalMs, burst });
          if (step.decision.allowed) {
            tat = step.tat;
            allowed.push({ t: now, cost: s.cost });
          }
        }
        windowBoundHolds(allowed, intervalMs, burst);
      }),
      { numRuns: 300 },
    );
  });

  it('the pure algorithm: nothing under the rate is refused (a burst first, then spends spaced by cost × interval)', () => {
    fc.assert(
      fc.property(shape, steps, fc.integer({ min: 0, max: 200 }), ({ intervalMs, burst }, seq, initial) => {
        let now = 1_700_000_000_000;
        const first = Math.min(initial, burst);
        let tat: number | undefined = first > 0 ? gcraSpend(undefined, now, { key: 'k', cost: first, intervalMs, burst }).tat : undefined;
        // After an initial burst the bucket refills: wait for it, then stay under the rate.
        now += first * intervalMs;
        let previous = 0;
        for (const s of seq) {
          const cost = Math.min(s.cost, burst);
          now += previous * intervalMs + s.gap;
          const step = gcraSpend(tat, now, { key: 'k', cost, intervalMs, burst });
          expect(step.decision.allowed).toBe(true);
          tat = step.tat;
          previous = cost;
        }
      }),
      { numRuns: 300 },
    );
  });

  it('the memory store: the same bound over many keys sharing one store, and a conforming stream is never refused', async () => {
    await fc.assert(
      fc.asyncProperty(shape, steps, async ({ intervalMs, burst }, seq) => {
        let now = 1_700_000_000_000;
        const store = new MemoryRateLimitStore({ now: () => now, maxKeys: 10 });
        const allowed: Array<{ t: number; cost: number }> = [];
        for (const [i, s] of seq.entries()) {
          now += s.gap;
          // Noise on other keys (the store evicts them) must not change the key under test.
          await store.spend([{ key: `noise-${i}`, cost: 1, intervalMs, burst }]);
          const [d] = await store.spend([{ key: 'k', cost: s.cost, intervalMs, burst }]);
          if (d!.allowed) allowed.push({ t: now, cost: s.cost });
        }
        windowBoundHolds(allowed, intervalMs, burst);
        const steady = new MemoryRateLimitStore({ now: () => now });
        for (const s of seq) {
          const cost = Math.min(s.cost, burst);
          expect((await steady.spend([{ key: 'k', cost, intervalMs, burst }]))[0]!.allowed).toBe(true);
          now += cost * intervalMs + s.gap;
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('memory store bounds', () => {
  it('forgets buckets that are full again, and beyond maxKeys drops the oldest', async () => {
    let now = 1_000_000;
    const store = new MemoryRateLimitStore({ now: () => now, maxKeys: 100, sweepEveryMs: 1000 });
    for (let i = 0; i < 50; i++) await store.spend([{ key: `a${i}`, cost: 1, intervalMs: 100, burst: 5 }]);
    expect(store.size).toBe(50);
    now += 1000;
    await store.spend([{ key: 'b', cost: 1, intervalMs: 100, burst: 5 }]);
    expect(store.size).toBe(1);
    for (let i = 0; i < 250; i++) await store.spend([{ key: `c${i}`, cost: 1, intervalMs: 60_000, burst: 5 }]);
    expect(store.size).toBeLessThanOrEqual(100);
    // The newest keys are still counted.
    expect((await store.spend([{ key: 'c249', cost: 5, intervalMs: 60_000, burst: 5 }]))[0]!.allowed).toBe(false);
  });
});
