import { describe, expect, it } from 'vitest';
import { stabilise } from '../../src/scaling/stabilise.ts';

const policy = { minInstances: 1, maxInstances: 5, scaleToZero: false, scaleUpStabilizationMs: 0, scaleDownStabilizationMs: 10_000, reverseCooldownMs: 5_000 };
const recs = (now: number, ...values: Array<[number, number]>) => values.map(([ago, desired]) => ({ at: now - ago, desired }));
const NOW = 1_000_000;

describe('host stabilisation', () => {
  it('bounds the recommendation to [min, max] and raises counts outside them at once', () => {
    expect(stabilise(policy, 2, recs(NOW, [0, 40]), undefined, NOW).desired).toBe(5);
    expect(stabilise(policy, 0, recs(NOW, [0, 0]), undefined, NOW)).toMatchObject({ desired: 1, note: expect.stringMatching(/bounds/) });
    expect(stabilise({ ...policy, scaleToZero: true, minInstances: 0 }, 1, recs(NOW, [20_000, 0], [0, 0]), undefined, NOW).desired).toBe(0);
  });

  it('scales down only to the highest recommendation of the scale-down window', () => {
    expect(stabilise(policy, 4, recs(NOW, [8_000, 4], [4_000, 3], [0, 1]), undefined, NOW)).toMatchObject({
      desired: 4,
      note: expect.stringMatching(/scale-down window/),
    });
    expect(stabilise(policy, 4, recs(NOW, [12_000, 4], [6_000, 3], [0, 1]), undefined, NOW)).toMatchObject({ desired: 3 });
  });

  it('a scale-up window takes the lowest recommendation over it', () => {
    const up = { ...policy, scaleUpStabilizationMs: 3_000 };
    expect(stabilise(up, 2, recs(NOW, [2_000, 3], [1_000, 5], [0, 5]), undefined, NOW).desired).toBe(3);
  });

  it('no change opposite to the last one within the reverse cooldown; from zero always at once', () => {
    expect(stabilise(policy, 3, recs(NOW, [20_000, 1], [0, 1]), { at: NOW - 2_000, direction: 1 }, NOW)).toMatchObject({
      desired: 3,
      note: expect.stringMatching(/reverse cooldown/),
    });
    expect(stabilise(policy, 3, recs(NOW, [20_000, 1], [0, 1]), { at: NOW - 6_000, direction: 1 }, NOW).desired).toBe(1);
    const zero = { ...policy, scaleToZero: true, minInstances: 0 };
    expect(stabilise(zero, 0, recs(NOW, [0, 2]), { at: NOW - 100, direction: -1 }, NOW)).toMatchObject({ desired: 2, note: 'scale from zero' });
  });
});
