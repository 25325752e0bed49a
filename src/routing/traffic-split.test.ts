import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { chooseVariant, pickVariant } from './traffic-split.ts';

const split = (canaryReady = true, stable = 90, canary = 10) => [
  { name: 'stable', weight: stable, ready: true },
  { name: 'canary', weight: canary, ready: canaryReady },
];

describe('chooseVariant', () => {
  it('90/10 over 10,000 random keys lands within ±2 %', () => {
    let canary = 0;
    for (let i = 0; i < 10_000; i++) if (chooseVariant(split(), `${Math.random().toString(36).slice(2)}-${i}`) === 'canary') canary++;
    expect(Math.abs(canary / 10_000 - 0.1)).toBeLessThan(0.02);
  });

  it('90/10 over 10,000 sequential keys (user-0 … user-9999) too', () => {
    let canary = 0;
    for (let i = 0; i < 10_000; i++) if (chooseVariant(split(), `user-${i}`) === 'canary') canary++;
    expect(Math.abs(canary / 10_000 - 0.1)).toBeLessThan(0.02);
  });

  it('is sticky: same key, same weights → same variant', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (key) => {
        const a = chooseVariant(split(), key);
        for (let k = 0; k < 5; k++) expect(chooseVariant(split(), key)).toBe(a);
      }),
    );
  });

  it('ramping the canary (listed last) only moves keys into it', () => {
    const keys = Array.from({ length: 2000 }, (_, i) => `k${i}`);
    const at10 = keys.map((k) => chooseVariant(split(true, 90, 10), k));
    const at30 = keys.map((k) => chooseVariant(split(true, 70, 30), k));
    for (let i = 0; i < keys.length; i++) if (at10[i] === 'canary') expect(at30[i]).toBe('canary');
  });

  it('never sends traffic to a not-ready variant; renormalises the rest', () => {
    for (let i = 0; i < 2000; i++) {
      expect(chooseVariant(split(false), `u${i}`)).toBe('stable');
      expect(chooseVariant(split(false))).toBe('stable');
    }
    const three = [
      { name: 'a', weight: 50, ready: true },
      { name: 'b', weight: 25, ready: false },
      { name: 'c', weight: 50, ready: true },
    ];
    let a = 0;
    for (let i = 0; i < 10_000; i++) if (chooseVariant(three, `key-${i}`) === 'a') a++;
    expect(Math.abs(a / 10_000 - 0.5)).toBeLessThan(0.02);
  });

  it('ignores zero, negative and non-finite weights; undefined when nothing is eligible', () => {
    expect(chooseVariant([])).toBeUndefined();
    expect(
      chooseVariant([
        { name: 'x', weight: 0, ready: true },
        { name: 'y', weight: 5, ready: false },
      ]),
    ).toBeUndefined();
    for (let i = 0; i < 200; i++) {
      expect(
        chooseVariant(
          [
            { name: 'neg', weight: -5, ready: true },
            { name: 'nan', weight: Number.NaN, ready: true },
            { name: 'inf', weight: Infinity, ready: true },
            { name: 'ok', weight: 1, ready: true },
          ],
          i % 2 ? `k${i}` : undefined,
        ),
      ).toBe('ok');
    }
  });

  it('uses the random source without a key (and for an empty key)', () => {
    expect(chooseVariant(split(), undefined, () => 0.95)).toBe('canary');
    expect(chooseVariant(split(), '', () => 0.5)).toBe('stable');
    expect(chooseVariant(split(), undefined, () => 0.999999999)).toBe('canary');
    const v = split();
    expect(pickVariant(v, 'abc')).toBe(pickVariant(v, 'abc'));
    expect(v).toContain(pickVariant(v, 'abc'));
  });
});
