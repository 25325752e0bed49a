import { describe, expect, it } from 'vitest';
import { configSchema } from '../../config/schema.ts';
import { RetryBudget, type RetryBudgetOptions } from './retry-budget.ts';

/** The config's defaults (what a user gets), with the test's settings on top. */
const DEFAULTS = configSchema.parse({}).router.retryBudget;
const budget = (options: Partial<RetryBudgetOptions>) => new RetryBudget({ ...DEFAULTS, ...options });

describe('RetryBudget', () => {
  it('allows the per-second floor with no traffic, then refuses', () => {
    const c = { t: 0 };
    const b = budget({ minRetriesPerSecond: 2, windowMs: 5000, now: () => c.t }); // floor: 10 per window
    let ok = 0;
    for (let i = 0; i < 50; i++) if (b.tryAcquire()) ok++;
    expect(ok).toBe(10);
    expect(b.canRetry()).toBe(false);
    expect(b.stats()).toEqual({ requests: 0, retries: 10, available: 0 });
  });

  it('allows ratio × requests on top of the floor (20 % by default)', () => {
    const c = { t: 0 };
    const b = budget({ minRetriesPerSecond: 0, now: () => c.t });
    for (let i = 0; i < 1000; i++) b.recordRequest();
    let ok = 0;
    for (let i = 0; i < 1000; i++) if (b.tryAcquire()) ok++;
    expect(ok).toBe(200);
    const d = budget({ now: () => c.t }); // floor 10/s × 10 s = 100
    for (let i = 0; i < 1000; i++) d.recordRequest();
    ok = 0;
    for (let i = 0; i < 1000; i++) if (d.tryAcquire()) ok++;
    expect(ok).toBe(300);
  });

  it('slides: old requests and retries leave the window', () => {
    const c = { t: 0 };
    const b = budget({ minRetriesPerSecond: 0, ratio: 0.5, windowMs: 10_000, buckets: 10, now: () => c.t });
    for (let i = 0; i < 10; i++) b.recordRequest();
    for (let i = 0; i < 5; i++) expect(b.tryAcquire()).toBe(true);
    expect(b.tryAcquire()).toBe(false);
    c.t = 5_000;
    for (let i = 0; i < 10; i++) b.recordRequest();
    expect(b.stats()).toEqual({ requests: 20, retries: 5, available: 5 });
    c.t = 10_500; // first second's bucket is gone
    expect(b.stats()).toEqual({ requests: 10, retries: 0, available: 5 });
    c.t = 30_000;
    expect(b.stats()).toEqual({ requests: 0, retries: 0, available: 0 });
    expect(b.canRetry()).toBe(false);
  });

  it('recordRetry spends budget; bad windows are rejected', () => {
    const b = budget({ minRetriesPerSecond: 0.1, windowMs: 10_000, now: () => 0 }); // floor 1
    b.recordRetry();
    expect(b.canRetry()).toBe(false);
    expect(() => budget({ windowMs: 0 })).toThrow(RangeError);
  });
});
