import { afterEach, describe, expect, it } from 'vitest';
import { HealthProber, type HealthChange, type HealthProberOptions, type ProbeResult } from './health-prober.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(5);
  }
}

const probers: HealthProber[] = [];
function make(opts: Partial<HealthProberOptions> = {}) {
  const changes: HealthChange[] = [];
  const p = new HealthProber({
    intervalMs: 10,
    timeoutMs: 30,
    healthyThreshold: 2,
    unhealthyThreshold: 3,
    jitter: 0.2,
    onChange: (c) => changes.push(c),
    ...opts,
  });
  probers.push(p);
  return { p, changes };
}
afterEach(() => {
  for (const p of probers.splice(0)) p.stop();
});

describe('HealthProber', () => {
  it('decides on the first result, then needs thresholds to flip (hysteresis)', async () => {
    const { p, changes } = make();
    let ok = true;
    let calls = 0;
    p.add('a', () => {
      calls++;
      return { ok };
    });
    expect(p.state('a')).toBe('unknown');
    await until(() => p.state('a') === 'healthy');
    ok = false;
    const before = calls;
    await until(() => p.state('a') === 'unhealthy');
    expect(calls - before).toBeGreaterThanOrEqual(3);
    ok = true;
    await until(() => p.state('a') === 'healthy');
    expect(changes.map((c) => `${c.from}>${c.to}`)).toEqual(['unknown>healthy', 'healthy>unhealthy', 'unhealthy>healthy']);
  });

  it('counts a timeout (probe ignoring its signal) and a throw as failures', async () => {
    const { p, changes } = make({ unhealthyThreshold: 1 });
    let aborted = false;
    p.add('slow', (signal) => {
      signal.addEventListener('abort', () => {
        aborted = true;
      });
      return new Promise<ProbeResult>(() => {
        /* never answers */
      });
    });
    p.add('throws', () => {
      throw new Error('connection refused');
    });
    await until(() => p.state('slow') === 'unhealthy' && p.state('throws') === 'unhealthy');
    expect(aborted).toBe(true);
    expect(changes.find((c) => c.id === 'slow')!.detail).toBe('timeout');
    expect(changes.find((c) => c.id === 'throws')!.detail).toBe('connection refused');
  });

  it('a skipped probe (nothing to probe yet) gives no verdict: the first real answer decides', async () => {
    const { p, changes } = make({ unhealthyThreshold: 1 });
    let there = false;
    let calls = 0;
    p.add('late', () => {
      calls++;
      return there ? { ok: true } : { ok: false, skipped: true, detail: 'not loaded' };
    });
    await until(() => calls >= 3);
    expect(p.state('late')).toBe('unknown');
    expect(p.snapshot()[0]).toEqual({ id: 'late', state: 'unknown' });
    there = true;
    await until(() => p.state('late') === 'healthy');
    expect(changes.map((c) => `${c.from}>${c.to}`)).toEqual(['unknown>healthy']);
  });

  it('never overlaps probes of one target', async () => {
    const { p } = make({ intervalMs: 1, timeoutMs: 100 });
    let concurrent = 0;
    let max = 0;
    let calls = 0;
    p.add('x', async () => {
      calls++;
      concurrent++;
      max = Math.max(max, concurrent);
      await sleep(15);
      concurrent--;
      return { ok: true };
    });
    await until(() => calls >= 4);
    expect(max).toBe(1);
  });

  it('add/remove targets; remove aborts a probe in flight and drops its late answer', async () => {
    const { p, changes } = make();
    let signal: AbortSignal | undefined;
    p.add('r', (s) => {
      signal = s;
      return new Promise<ProbeResult>((res) => setTimeout(() => res({ ok: true }), 20));
    });
    await until(() => signal !== undefined);
    expect(p.remove('r')).toBe(true);
    expect(signal!.aborted).toBe(true);
    expect(p.remove('r')).toBe(false);
    await sleep(40);
    expect(changes).toEqual([]);
    expect(p.has('r')).toBe(false);
    p.add('s', () => ({ ok: false, detail: 'not ready' }));
    await until(() => p.state('s') === 'unhealthy');
    expect(p.snapshot()).toEqual([expect.objectContaining({ id: 's', state: 'unhealthy', detail: 'not ready' })]);
  });

  it('stop() clears every timer and aborts probes: no more calls afterwards', async () => {
    const { p } = make({ intervalMs: 5 });
    let calls = 0;
    let inflightSignal: AbortSignal | undefined;
    for (let i = 0; i < 5; i++)
      p.add(`t${i}`, () => {
        calls++;
        return { ok: true };
      });
    p.add('hang', (s) => {
      inflightSignal = s;
      return new Promise<ProbeResult>(() => {});
    });
    await until(() => calls >= 10 && inflightSignal !== undefined);
    p.stop();
    expect(inflightSignal!.aborted).toBe(true);
    expect(p.pending()).toEqual({ timers: 0, inFlight: 0 });
    expect(p.size).toBe(0);
    const after = calls;
    await sleep(50);
    expect(calls).toBe(after);
    expect(() => p.add('late', () => ({ ok: true }))).toThrow(/stopped/);
  });

  it('spreads probes with jitter (waits vary)', async () => {
    const stamps: number[] = [];
    const { p } = make({ intervalMs: 20, jitter: 0.5 });
    p.add('j', () => {
      stamps.push(performance.now());
      return { ok: true };
    });
    await until(() => stamps.length >= 6);
    p.stop();
    const gaps = stamps.slice(1).map((s, i) => s - stamps[i]!);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(8); // ≥ 20 × 0.5 (timer slop aside)
    expect(new Set(gaps.map((g) => Math.round(g))).size).toBeGreaterThan(1);
  });
});
