import { describe, expect, it } from 'vitest';
import { FairQueue, type QueueEntry } from './fair-queue.ts';

interface E extends QueueEntry {
  id: string;
}
const entry = (id: string, tenant: string, level = 2, weight = 1): E => ({ id, tenant, level, weight, start: 0, state: 'out' });
const drainIds = (q: FairQueue<E>): string[] => {
  const out: string[] = [];
  for (let e = q.pop(); e; e = q.pop()) out.push(e.id);
  return out;
};

describe('FairQueue', () => {
  it('serves levels strictly in order, critical first', () => {
    const q = new FairQueue<E>(4);
    q.push(entry('low', 't', 3));
    q.push(entry('normal', 't', 2));
    q.push(entry('critical', 't', 0));
    q.push(entry('high', 't', 1));
    expect(drainIds(q)).toEqual(['critical', 'high', 'normal', 'low']);
    expect(q.size).toBe(0);
  });

  it('a newcomer of another tenant passes a flooding tenant’s backlog (SFQ)', () => {
    const q = new FairQueue<E>(4);
    for (let i = 0; i < 10; i++) q.push(entry(`a${i}`, 'A'));
    expect(q.pop()!.id).toBe('a0');
    q.push(entry('b0', 'B'));
    // B's start tag is V (a0's), ahead of a1…a9.
    expect(q.pop()!.id).toBe('b0');
    expect(drainIds(q)).toEqual(['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8', 'a9']);
  });

  it('two backlogged tenants alternate; weight 2 gets twice the turns', () => {
    const q = new FairQueue<E>(4);
    for (let i = 0; i < 6; i++) q.push(entry(`a${i}`, 'A', 2, 1));
    for (let i = 0; i < 6; i++) q.push(entry(`b${i}`, 'B', 2, 2));
    const first6 = drainIds(q).slice(0, 6);
    expect(first6.filter((id) => id.startsWith('b')).length).toBe(4);
    expect(first6.filter((id) => id.startsWith('a')).length).toBe(2);
  });

  it('delayed entries go after every waiting one, in order; remove takes entries out of either tier', () => {
    const q = new FairQueue<E>(4);
    const d1 = entry('d1', 'A', 0);
    const d2 = entry('d2', 'A', 0);
    const gone = entry('gone', 'B', 3);
    q.push(d1);
    q.push(d2);
    q.push(entry('n', 'A', 3));
    q.push(gone);
    q.delay(d1);
    q.delay(d2);
    q.remove(gone);
    q.remove(gone); // twice: nothing
    expect(q.size).toBe(3);
    expect(q.ahead(3)).toBe(1);
    expect(drainIds(q)).toEqual(['n', 'd1', 'd2']);
  });

  it('victim: a delayed entry first, else the newest of the tenant most over its share at the least urgent level', () => {
    const q = new FairQueue<E>(4);
    q.push(entry('c', 'A', 0));
    for (let i = 0; i < 3; i++) q.push(entry(`a${i}`, 'A', 2));
    q.push(entry('b0', 'B', 2));
    expect(q.victim()!.id).toBe('a2');
    const heavy = new FairQueue<E>(4);
    for (let i = 0; i < 3; i++) heavy.push(entry(`a${i}`, 'A', 2, 4)); // weight 4: 0.75 per weight
    heavy.push(entry('b0', 'B', 2, 1)); // 1 per weight
    expect(heavy.victim()!.id).toBe('b0');
    const d = entry('d', 'A', 1);
    heavy.push(d);
    heavy.delay(d);
    expect(heavy.victim()!.id).toBe('d');
  });

  it('a displaced newest entry gives its tag back; an emptied level starts over', () => {
    const q = new FairQueue<E>(4);
    const a0 = entry('a0', 'A');
    const a1 = entry('a1', 'A');
    q.push(a0);
    q.push(a1);
    q.remove(a1);
    q.push(entry('b0', 'B'));
    // A's tag went back to a1's start: b0 (start V=0) and a2 (start 1) keep their order.
    q.push(entry('a2', 'A'));
    expect(drainIds(q)).toEqual(['a0', 'b0', 'a2']);
    expect(q.load(2, 'A')).toBe(0);
  });

  it('stays bounded under churn (lanes compact, emptied lanes go)', () => {
    const q = new FairQueue<E>(4);
    for (let round = 0; round < 2000; round++) {
      q.push(entry(`x${round}`, `t${round % 50}`));
      if (round % 2 === 1) q.pop();
    }
    expect(q.size).toBe(1000);
    expect(drainIds(q).length).toBe(1000);
    expect(q.size).toBe(0);
  });
});
