import { describe, expect, it } from 'vitest';
import { RecentSamples } from './recent-samples.ts';

describe('RecentSamples', () => {
  it('keeps the newest `capacity` samples, oldest first, and filters by time', () => {
    const r = new RecentSamples(3);
    expect(r.size).toBe(0);
    expect(r.valuesAfter(-Infinity)).toEqual([]);
    r.add(10, 1);
    r.add(20, 2);
    expect(r.size).toBe(2);
    expect(r.valuesAfter(-Infinity)).toEqual([1, 2]);
    r.add(30, 3);
    r.add(40, 4);
    r.add(50, 5);
    // The two oldest were overwritten; the order stays oldest first across the wrap.
    expect(r.size).toBe(3);
    expect(r.valuesAfter(-Infinity)).toEqual([3, 4, 5]);
    expect(r.valuesAfter(30)).toEqual([4, 5]);
    expect(r.valuesAfter(50)).toEqual([]);
  });

  it('matches an array trimmed to the newest N after many wraps', () => {
    const r = new RecentSamples(7);
    const list: Array<[number, number]> = [];
    for (let i = 0; i < 100; i++) {
      r.add(i, i * 10);
      list.push([i, i * 10]);
      if (list.length > 7) list.shift();
      const since = i - 4;
      expect(r.valuesAfter(since)).toEqual(list.filter(([at]) => at > since).map(([, v]) => v));
    }
  });

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new RecentSamples(0)).toThrow(RangeError);
    expect(() => new RecentSamples(1.5)).toThrow(RangeError);
  });
});
