import { describe, expect, it } from 'vitest';
import { configSchema } from '../../config/schema.ts';
import { OutlierDetector, type OutlierDetectorOptions, type OutlierEvent } from './outlier-detector.ts';

/** The config's defaults (what a user gets). */
const DEFAULTS = configSchema.parse({}).router.outlierDetection;

function setup(opts: Partial<OutlierDetectorOptions> = {}, hosts = 10) {
  const c = { t: 0 };
  const events: OutlierEvent[] = [];
  const d = new OutlierDetector({ ...DEFAULTS, now: () => c.t, onChange: (e) => events.push(e), ...opts });
  d.setHosts(Array.from({ length: hosts }, (_, i) => `h${i}`));
  return { c, d, events };
}

describe('OutlierDetector', () => {
  it('ejects after 5 consecutive failures for 30 s, then un-ejects', () => {
    const { c, d, events } = setup();
    for (let i = 0; i < 4; i++) d.recordFailure('h1');
    d.recordSuccess('h1');
    for (let i = 0; i < 4; i++) d.recordFailure('h1');
    expect(d.isEjected('h1')).toBe(false);
    d.recordFailure('h1');
    expect(d.isEjected('h1')).toBe(true);
    expect(events).toEqual([{ id: 'h1', ejected: true, reason: 'consecutive-failures', ejectionCount: 1, until: 30_000, at: 0 }]);
    c.t = 29_999;
    expect(d.isEjected('h1')).toBe(true);
    c.t = 30_000;
    expect(d.isEjected('h1')).toBe(false);
    expect(events.at(-1)).toMatchObject({ id: 'h1', ejected: false, reason: 'time-elapsed' });
  });

  it('ejection time grows with the ejection count, capped, and the count decays while healthy', () => {
    const { c, d } = setup({ consecutiveFailures: 1, baseEjectionMs: 30_000, maxEjectionMs: 100_000, intervalMs: 10_000 });
    const durations: number[] = [];
    for (let k = 0; k < 5; k++) {
      d.recordFailure('h2');
      const info = d.info('h2')!;
      durations.push(info.until! - c.t);
      c.t = info.until!;
      expect(d.isEjected('h2')).toBe(false);
    }
    expect(durations).toEqual([30_000, 60_000, 90_000, 100_000, 100_000]);
    expect(d.info('h2')!.ejectionCount).toBe(5);
    c.t += 30_000; // three healthy intervals
    d.tick();
    expect(d.info('h2')!.ejectionCount).toBe(2);
    d.recordFailure('h2');
    expect(d.info('h2')!.until! - c.t).toBe(90_000);
  });

  it('ejects on failure rate in an interval with enough requests', () => {
    const { c, d, events } = setup({ consecutiveFailures: 0, failureRateThreshold: 0.5, minRequests: 10 });
    for (let i = 0; i < 6; i++) {
      d.recordFailure('h3');
      d.recordSuccess('h3');
    } // 12 req, 50 %
    for (let i = 0; i < 4; i++) d.recordFailure('h4'); // 4 req: too few
    c.t = 10_000;
    d.tick();
    expect(d.isEjected('h3')).toBe(true);
    expect(d.isEjected('h4')).toBe(false);
    expect(events.map((e) => `${e.id}:${e.reason}`)).toEqual(['h3:failure-rate']);
  });

  it('respects max ejection percent (10 % of 20 = 2)', () => {
    const { d } = setup({ consecutiveFailures: 1 }, 20);
    for (let i = 0; i < 5; i++) d.recordFailure(`h${i}`);
    expect(d.ejected()).toEqual(['h0', 'h1']);
    expect(d.maxEjectable()).toBe(2);
  });

  it('always allows one ejection with ≥ 2 hosts, never ejects the last host', () => {
    const two = setup({ consecutiveFailures: 1 }, 2);
    two.d.recordFailure('h0');
    two.d.recordFailure('h1');
    expect(two.d.ejected()).toEqual(['h0']);
    const one = setup({ consecutiveFailures: 1 }, 1);
    for (let i = 0; i < 10; i++) one.d.recordFailure('h0');
    expect(one.d.isEjected('h0')).toBe(false);
    const three = setup({ consecutiveFailures: 1, maxEjectionPercent: 100 }, 3);
    for (const id of ['h0', 'h1', 'h2']) three.d.recordFailure(id);
    expect(three.d.ejected()).toEqual(['h0', 'h1']);
  });

  it('frees an ejection slot when the ejected host is removed', () => {
    const { d, events } = setup({ consecutiveFailures: 1 }, 5);
    d.recordFailure('h0');
    d.recordFailure('h1');
    expect(d.ejected()).toEqual(['h0']);
    d.removeHost('h0');
    expect(events.at(-1)).toMatchObject({ id: 'h0', ejected: false, reason: 'removed' });
    d.recordFailure('h1');
    expect(d.ejected()).toEqual(['h1']);
    expect(d.info('h0')).toBeUndefined();
  });
});
