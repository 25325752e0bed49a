import { describe, expect, it } from 'vitest';
import { ReplicaShare, versionOffset } from './replica-share.ts';

function shares(capacity: number, replicas: number, offset: number): number[] {
  return Array.from({ length: replicas }, (_, rank) => {
    const s = new ReplicaShare();
    s.set(replicas, rank);
    return s.of(capacity, offset);
  });
}

describe('ReplicaShare', () => {
  it('one replica: the share is the capacity', () => {
    const s = new ReplicaShare();
    for (const c of [0, 1, 7, Infinity]) expect(s.of(c, versionOffset('m', 'v1'))).toBe(c);
  });

  it('shares add up to the capacity exactly when it is at least the replicas, and differ by at most one', () => {
    for (let n = 2; n <= 7; n++) {
      for (let c = n; c <= 40; c++) {
        for (const offset of [0, 1, 5, versionOffset('chat', 'v2')]) {
          const xs = shares(c, n, offset);
          expect(xs.reduce((a, b) => a + b, 0)).toBe(c);
          expect(Math.max(...xs) - Math.min(...xs)).toBeLessThanOrEqual(1);
        }
      }
    }
    expect(shares(4, 2, 0)).toEqual([2, 2]);
    expect(shares(5, 2, 0)).toEqual([3, 2]);
    expect(shares(5, 2, 1)).toEqual([2, 3]);
  });

  it('fewer slots than replicas: each gets at least one; no capacity stays none; no limit stays unbounded', () => {
    expect(shares(2, 3, 0)).toEqual([1, 1, 1]);
    expect(shares(0, 3, 0)).toEqual([0, 0, 0]);
    expect(shares(Infinity, 3, 0)).toEqual([Infinity, Infinity, Infinity]);
  });

  it('the remainder goes to different replicas for different versions', () => {
    const firsts = new Set(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((m) => shares(5, 4, versionOffset(m, 'v1')).indexOf(2)));
    expect(firsts.size).toBeGreaterThan(1);
  });
});
