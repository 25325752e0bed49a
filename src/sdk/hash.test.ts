import { describe, expect, it } from 'vitest';
import { fmix32, hash32, hashToUnit } from './hash.ts';

describe('hash32', () => {
  it('is deterministic, unsigned 32-bit and seed-dependent', () => {
    expect(hash32('abc')).toBe(hash32('abc'));
    expect(hash32('abc')).toBeGreaterThanOrEqual(0);
    expect(hash32('abc')).toBeLessThan(2 ** 32);
    expect(Number.isInteger(hash32(''))).toBe(true);
    expect(hash32('abc', 1)).not.toBe(hash32('abc', 2));
    expect(hash32('ab')).not.toBe(hash32('ba'));
    // non-ASCII code units use both bytes
    expect(hash32('\u0100')).not.toBe(hash32('\u0001'));
    expect(fmix32(0)).toBe(0);
  });

  it('spreads sequential keys evenly over [0,1) (chi-square over 16 buckets)', () => {
    const buckets = new Array<number>(16).fill(0);
    const n = 16_000;
    for (let i = 0; i < n; i++) {
      const u = hashToUnit(`user-${i}`);
      expect(u).toBeGreaterThanOrEqual(0);
      expect(u).toBeLessThan(1);
      buckets[Math.floor(u * 16)]! += 1;
    }
    const expected = n / 16;
    const chi = buckets.reduce((s, b) => s + (b - expected) ** 2 / expected, 0);
    // 15 degrees of freedom: p=0.001 critical value is 37.7
    expect(chi).toBeLessThan(37.7);
  });

  it('avalanches: flipping one input character changes about half the output bits', () => {
    let total = 0;
    const n = 2000;
    for (let i = 0; i < n; i++) {
      const a = hash32(`key-${i}-x`);
      const b = hash32(`key-${i}-y`);
      let d = (a ^ b) >>> 0;
      let bits = 0;
      while (d) {
        bits += d & 1;
        d >>>= 1;
      }
      total += bits;
    }
    const mean = total / n;
    expect(mean).toBeGreaterThan(14);
    expect(mean).toBeLessThan(18);
  });
});
