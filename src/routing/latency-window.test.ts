import { describe, expect, it } from 'vitest';
import { LatencyWindow } from './latency-window.ts';

describe('LatencyWindow', () => {
  it('gives nearest-rank percentiles of the last `size` samples', () => {
    const w = new LatencyWindow(100, 1);
    expect(w.percentile(50)).toBeUndefined();
    for (let i = 1; i <= 100; i++) w.add(i);
    expect([w.percentile(50), w.percentile(95), w.percentile(100), w.percentile(0)]).toEqual([50, 95, 100, 1]);
    for (let i = 0; i < 100; i++) w.add(1000); // the old samples roll out
    expect(w.percentile(50)).toBe(1000);
    expect(w.samples).toBe(100);
    w.add(Number.NaN);
    w.add(-1);
    expect(w.samples).toBe(100);
  });

  it('refreshes its sorted copy every `refreshEvery` samples', () => {
    const w = new LatencyWindow(10, 4);
    for (let i = 0; i < 10; i++) w.add(1);
    expect(w.percentile(99)).toBe(1);
    for (let i = 0; i < 3; i++) w.add(100);
    expect(w.percentile(99)).toBe(1); // stale by design (cheap on the hot path)
    w.add(100);
    expect(w.percentile(99)).toBe(100);
  });
});
