/**
 * Rate-limit store conformance suite. A store plugin's tests run it (vitest):
 *
 *   import { describeRateLimitStoreConformance } from 'capibara-mcp/testing';
 *   import { createMyStore } from '../index.js';
 *
 *   describeRateLimitStoreConformance('my-store', {
 *     create: async (now) => ({ store: createMyStore({ now }), close: () => … }),
 *   });
 *
 * `create` receives the suite's fake clock (ms): the store must take its time from it. Every test
 * uses fresh random keys, so a shared backing service (one Redis for many test files) is fine.
 * Checked: GCRA semantics of `spend` (burst, refill, cost, remaining, retryAfterMs, resetMs), that a
 * refused multi-key spend spends nothing, `adjust` refunds (never below empty) and overdraws, months-
 * long periods, atomicity under concurrent calls, and, with fast-check, that in any window of length T
 * at most burst + T / interval units are allowed, that a stream under the rate is never refused, and that
 * random sequences agree with the reference algorithm.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gcraAdjust, gcraSpend } from '../limits/gcra.ts';
import type { RateLimitCharge, RateLimitStore } from '../plugin/contract.ts';

export interface RateLimitStoreConformanceOptions {
  /** Makes the store under test on the suite's clock. Called once. */
  create(now: () => number): Promise<{ store: RateLimitStore; close?(): unknown }> | { store: RateLimitStore; close?(): unknown };
  /** fast-check runs per property (default 40). */
  runs?: number;
}

const MONTH_MS = 30 * 86_400_000;

export function describeRateLimitStoreConformance(name: string, opts: RateLimitStoreConformanceOptions): void {
  describe(`rate-limit store conformance: ${name}`, () => {
    let clock = 1_700_000_000_000;
    let store: RateLimitStore;
    let close: (() => unknown) | undefined;
    const runs = opts.runs ?? 40;
    const key = () => `conf-${randomBytes(8).toString('hex')}`;
    const limit = (k: string, cost: number, intervalMs: number, burst: number): RateLimitCharge => ({ key: k, cost, intervalMs, burst });
    const one = async (c: RateLimitCharge) => (await store.spend([c]))[0]!;

    beforeAll(async () => {
      const made = await opts.create(() => clock);
      store = made.store;
      close = made.close;
    });
    afterAll(async () => {
      await close?.();
    });

    it('a fresh key allows its burst, counting remaining down, then refuses with the wait for one unit', async () => {
      const k = key();
      for (let i = 0; i < 10; i++)
        expect(await one(limit(k, 1, 1000, 10))).toEqual({ allowed: true, remaining: 9 - i, retryAfterMs: 0, resetMs: (i + 1) * 1000 });
      const refused = await one(limit(k, 1, 1000, 10));
      expect(refused.allowed).toBe(false);
      expect(refused.remaining).toBe(0);
      expect(refused.retryAfterMs).toBeCloseTo(1000, 0);
      expect(refused.resetMs).toBeCloseTo(10_000, 0);
    });

    it('refills one unit per interval; a refused spend spends nothing', async () => {
      const k = key();
      for (let i = 0; i < 3; i++) await one(limit(k, 1, 500, 3));
      for (let i = 0; i < 5; i++) expect((await one(limit(k, 1, 500, 3))).allowed).toBe(false);
      clock += 499;
      expect((await one(limit(k, 1, 500, 3))).allowed).toBe(false);
      clock += 1;
      expect(await one(limit(k, 1, 500, 3))).toMatchObject({ allowed: true, remaining: 0 });
      clock += 1500;
      expect(await one(limit(k, 1, 500, 3))).toMatchObject({ allowed: true, remaining: 2 });
    });

    it('a cost spends that many units; a cost that does not fit waits for the missing units', async () => {
      const k = key();
      expect(await one(limit(k, 6, 100, 10))).toMatchObject({ allowed: true, remaining: 4, resetMs: 600 });
      const d = await one(limit(k, 7, 100, 10));
      expect(d.allowed).toBe(false);
      expect(d.retryAfterMs).toBeCloseTo(300, 0);
      expect(await one(limit(k, 4, 100, 10))).toMatchObject({ allowed: true, remaining: 0 });
    });

    it('a multi-key spend is all or nothing: one key over its limit, none is spent', async () => {
      const a = key();
      const b = key();
      await one(limit(b, 2, 1000, 2));
      const [da, db] = await store.spend([limit(a, 1, 1000, 5), limit(b, 1, 1000, 2)]);
      expect(da!.allowed).toBe(true);
      expect(db!.allowed).toBe(false);
      expect(await one(limit(a, 5, 1000, 5))).toMatchObject({ allowed: true, remaining: 0 });
      const [ok1, ok2] = await store.spend([limit(key(), 1, 1000, 5), limit(key(), 3, 1000, 5)]);
      expect([ok1!.remaining, ok2!.remaining]).toEqual([4, 2]);
    });

    it('adjust refunds (never below an empty bucket) and charges past the burst (later spends wait)', async () => {
      const k = key();
      await one(limit(k, 10, 1000, 10));
      await store.adjust([limit(k, -4, 1000, 10)]);
      expect(await one(limit(k, 4, 1000, 10))).toMatchObject({ allowed: true, remaining: 0 });
      const fresh = key();
      await store.adjust([limit(fresh, -100, 1000, 10)]);
      expect(await one(limit(fresh, 10, 1000, 10))).toMatchObject({ allowed: true, remaining: 0 });
      expect((await one(limit(fresh, 1, 1000, 10))).allowed).toBe(false);
      const over = key();
      await one(limit(over, 10, 1000, 10));
      await store.adjust([limit(over, 5, 1000, 10)]);
      const d = await one(limit(over, 1, 1000, 10));
      expect(d.allowed).toBe(false);
      expect(d.retryAfterMs).toBeCloseTo(6000, 0);
      clock += 6000;
      expect((await one(limit(over, 1, 1000, 10))).allowed).toBe(true);
    });

    it('keys are independent', async () => {
      const a = key();
      await one(limit(a, 3, 1000, 3));
      expect((await one(limit(a, 1, 1000, 3))).allowed).toBe(false);
      expect((await one(limit(key(), 3, 1000, 3))).allowed).toBe(true);
    });

    it('a month-long period: 1M tokens per 30 days, spent at once, back a unit per interval and whole after 30 days', async () => {
      const k = key();
      const interval = MONTH_MS / 1_000_000;
      expect(await one(limit(k, 999_000, interval, 1_000_000))).toMatchObject({ allowed: true, remaining: 1000 });
      expect((await one(limit(k, 1001, interval, 1_000_000))).allowed).toBe(false);
      const d = await one(limit(k, 1000, interval, 1_000_000));
      expect(d).toMatchObject({ allowed: true, remaining: 0 });
      expect(d.resetMs).toBeCloseTo(MONTH_MS, -1);
      clock += interval * 10;
      expect(await one(limit(k, 10, interval, 1_000_000))).toMatchObject({ allowed: true, remaining: 0 });
      clock += MONTH_MS;
      expect(await one(limit(k, 1_000_000, interval, 1_000_000))).toMatchObject({ allowed: true, remaining: 0 });
    });

    it('is atomic: 300 concurrent spends on a burst of 50 at one instant allow exactly 50', async () => {
      const k = key();
      const results = await Promise.all(Array.from({ length: 300 }, () => one(limit(k, 1, 60_000, 50))));
      expect(results.filter((r) => r.allowed)).toHaveLength(50);
      const a = key();
      const b = key();
      const pairs = await Promise.all(Array.from({ length: 100 }, () => store.spend([limit(a, 1, 60_000, 30), limit(b, 1, 60_000, 20)])));
      expect(pairs.filter((p) => p.every((d) => d.allowed))).toHaveLength(20);
      expect(await one(limit(a, 10, 60_000, 30))).toMatchObject({ allowed: true, remaining: 0 });
    });

    const schedule = fc.array(fc.record({ gap: fc.integer({ min: 0, max: 3000 }), cost: fc.integer({ min: 1, max: 12 }) }), { minLength: 1, maxLength: 40 });
    const shape = fc.record({ intervalMs: fc.integer({ min: 10, max: 1000 }), burst: fc.integer({ min: 1, max: 20 }) });

    it('property: in any window of length T at most burst + T / interval units are allowed', async () => {
      await fc.assert(
        fc.asyncProperty(shape, schedule, async ({ intervalMs, burst }, steps) => {
          const k = key();
          const allowed: Array<{ t: number; cost: number }> = [];
          for (const s of steps) {
            clock += s.gap;
            const d = await one(limit(k, s.cost, intervalMs, burst));
            if (d.allowed) allowed.push({ t: clock, cost: s.cost });
          }
          for (let i = 0; i < allowed.length; i++) {
            let sum = 0;
            for (let j = i; j < allowed.length; j++) {
              sum += allowed[j]!.cost;
              expect(sum).toBeLessThanOrEqual(burst + (allowed[j]!.t - allowed[i]!.t + 0.01) / intervalMs);
            }
          }
        }),
        { numRuns: runs },
      );
    });

    it('property: a stream under the rate (each spend at least cost × interval after the previous) is never refused', async () => {
      await fc.assert(
        fc.asyncProperty(shape, schedule, async ({ intervalMs, burst }, steps) => {
          const k = key();
          let previousCost = 0;
          for (const s of steps) {
            const cost = Math.min(s.cost, burst);
            clock += previousCost * intervalMs + s.gap;
            expect((await one(limit(k, cost, intervalMs, burst))).allowed).toBe(true);
            previousCost = cost;
          }
        }),
        { numRuns: runs },
      );
    });

    it('property: random spends, refunds and charges agree with the reference GCRA', async () => {
      const op = fc.record({ gap: fc.integer({ min: 0, max: 2000 }), cost: fc.integer({ min: -8, max: 12 }), adjust: fc.boolean() });
      await fc.assert(
        fc.asyncProperty(shape, fc.array(op, { minLength: 1, maxLength: 30 }), async ({ intervalMs, burst }, ops) => {
          const k = key();
          let tat: number | undefined;
          for (const o of ops) {
            clock += o.gap;
            const c = limit(k, o.adjust ? o.cost : Math.abs(o.cost) || 1, intervalMs, burst);
            if (o.adjust) {
              await store.adjust([c]);
              tat = gcraAdjust(tat, clock, c);
              continue;
            }
            const want = gcraSpend(tat, clock, c);
            const got = await one(c);
            expect(got.allowed).toBe(want.decision.allowed);
            expect(got.remaining).toBe(want.decision.remaining);
            expect(got.retryAfterMs).toBeCloseTo(want.decision.retryAfterMs, 1);
            expect(got.resetMs).toBeCloseTo(want.decision.resetMs, 1);
            if (want.decision.allowed) tat = want.tat;
          }
        }),
        { numRuns: runs },
      );
    });
  });
}
