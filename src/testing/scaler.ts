/**
 * Scaler conformance suite. Third-party scaler authors run it from their own tests (vitest):
 *
 *   import { describeScalerConformance } from 'capibara-mcp/testing';
 *   describeScalerConformance('my-scaler', () => createMyScaler());
 *
 * Checks: the answer is a non-negative integer for any signal; the same signal gives the same answer
 * (a scaler is a pure function of its signal; the host keeps the history); `recommend`, when present,
 * agrees with `desiredInstances` and gives a reason; no load for a long time never asks for more
 * instances; demand at zero asks for at least one; sustained heavy load eventually asks for more; a
 * uniformly heavier signal never asks for fewer; a single sample or no streamed answers do not break it;
 * random signals (fast-check).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Scaler, ScalingSample, ScalingSignal } from '../plugin/contract.ts';

export interface ScalerConformanceOptions {
  /** fast-check runs per property (default 100). */
  numRuns?: number;
  /** Tick between samples in the generated histories, ms (default 1000). */
  tickMs?: number;
  /** Length of the generated "long" histories, ms (default 15 min: longer than any default window or delay). */
  historyMs?: number;
}

/** A signal from per-tick values (oldest first); one sample per `tickMs`. */
export function scalingSignal(
  current: number,
  ticks: ReadonlyArray<Partial<ScalingSample>>,
  opts: { tickMs?: number; now?: number; scaleToZero?: boolean } = {},
): ScalingSignal {
  const tickMs = opts.tickMs ?? 1000;
  const now = opts.now ?? 1_800_000_000_000;
  const samples: ScalingSample[] = ticks.map((t, i) => ({
    at: now - (ticks.length - 1 - i) * tickMs,
    instances: current,
    readyInstances: current,
    ongoing: 0,
    queueDepth: 0,
    p95LatencyMs: 0,
    queueWaitMs: 0,
    ...t,
  }));
  const last = samples[samples.length - 1]!;
  const avg = samples.reduce((a, s) => a + s.ongoing, 0) / samples.length;
  return {
    model: 'm',
    version: 'v1',
    now,
    currentInstances: current,
    ongoingPerInstance: avg / Math.max(1, current),
    queueDepth: last.queueDepth,
    p95LatencyMs: last.p95LatencyMs,
    samples,
    scaleToZero: opts.scaleToZero ?? true,
  };
}

/** A sample with every load figure multiplied by `factor` (instances unchanged). */
function heavier(s: ScalingSample, factor: number): ScalingSample {
  return {
    ...s,
    ongoing: s.ongoing * factor,
    queueDepth: s.queueDepth * factor,
    p95LatencyMs: s.p95LatencyMs * factor,
    queueWaitMs: s.queueWaitMs * factor,
    ...(s.ttftMs === undefined ? {} : { ttftMs: s.ttftMs * factor }),
  };
}

const tickArb = fc.record(
  {
    ongoing: fc.integer({ min: 0, max: 500 }),
    queueDepth: fc.integer({ min: 0, max: 200 }),
    p95LatencyMs: fc.integer({ min: 0, max: 60_000 }),
    queueWaitMs: fc.integer({ min: 0, max: 60_000 }),
    ttftMs: fc.option(fc.integer({ min: 0, max: 60_000 }), { nil: undefined }),
  },
  { requiredKeys: ['ongoing', 'queueDepth', 'p95LatencyMs', 'queueWaitMs'] },
);

export function describeScalerConformance(name: string, create: () => Scaler | Promise<Scaler>, options: ScalerConformanceOptions = {}): void {
  const numRuns = options.numRuns ?? 100;
  const tickMs = options.tickMs ?? 1000;
  const longTicks = Math.ceil((options.historyMs ?? 900_000) / tickMs);
  const sig = (current: number, ticks: ReadonlyArray<Partial<ScalingSample>>) => scalingSignal(current, ticks, { tickMs });
  const long = (t: Partial<ScalingSample>) => Array.from({ length: longTicks }, () => t);
  const signalArb = fc
    .tuple(fc.integer({ min: 0, max: 64 }), fc.array(tickArb, { minLength: 1, maxLength: 120 }), fc.integer({ min: 1, max: 20 }))
    .map(([current, ticks, step]) => scalingSignal(current, ticks, { tickMs: tickMs * step }));

  describe(`scaler conformance: ${name}`, () => {
    it('answers a non-negative integer for any signal, the same one twice', async () => {
      const s = await create();
      fc.assert(
        fc.property(signalArb, (signal) => {
          const d = s.desiredInstances(signal);
          expect(Number.isInteger(d), `desired ${d}`).toBe(true);
          expect(d).toBeGreaterThanOrEqual(0);
          expect(s.desiredInstances(signal)).toBe(d);
        }),
        { numRuns },
      );
    });

    it('is a function of its signal: a fresh scaler answers the same', async () => {
      const a = await create();
      const signals = fc.sample(signalArb, { numRuns: 30, seed: 7 });
      const first = signals.map((x) => a.desiredInstances(x));
      const b = await create();
      expect(signals.map((x) => b.desiredInstances(x))).toEqual(first);
    });

    it('recommend, when present, agrees with desiredInstances and gives a reason', async () => {
      const s = await create();
      if (!s.recommend) return;
      for (const signal of fc.sample(signalArb, { numRuns: 50, seed: 11 })) {
        const r = s.recommend(signal);
        expect(r.desired).toBe(s.desiredInstances(signal));
        expect(typeof r.reason).toBe('string');
        expect(r.reason.length).toBeGreaterThan(0);
        expect(r.reason.length).toBeLessThan(500);
      }
    });

    it('without load for a long time never asks for more instances', async () => {
      const s = await create();
      for (const n of [0, 1, 3, 10]) expect(s.desiredInstances(sig(n, long({})))).toBeLessThanOrEqual(n);
    });

    it('demand at zero asks for at least one instance, at once', async () => {
      const s = await create();
      expect(s.desiredInstances(sig(0, [{ ongoing: 1, queueDepth: 1 }]))).toBeGreaterThanOrEqual(1);
      expect(s.desiredInstances(sig(0, [...long({}), { ongoing: 3, queueDepth: 3, queueWaitMs: 100 }]))).toBeGreaterThanOrEqual(1);
    });

    it('sustained heavy load asks for more instances', async () => {
      const s = await create();
      for (const n of [1, 4]) {
        const busy = { ongoing: 200 * n, queueDepth: 100 * n, p95LatencyMs: 30_000, queueWaitMs: 20_000, ttftMs: 20_000 };
        const d = s.desiredInstances(sig(n, long(busy)));
        expect(d).toBeGreaterThan(n);
        expect(Number.isFinite(d)).toBe(true);
      }
    });

    it('a uniformly heavier signal never asks for fewer instances', async () => {
      const s = await create();
      fc.assert(
        fc.property(signalArb, fc.integer({ min: 1, max: 10 }), (signal, factor) => {
          const heavy = { ...signal, samples: signal.samples.map((x) => heavier(x, factor)) };
          expect(s.desiredInstances(heavy)).toBeGreaterThanOrEqual(s.desiredInstances(signal));
        }),
        { numRuns },
      );
    });

    it('copes with one sample, no streamed answers and zero ready instances', async () => {
      const s = await create();
      for (const signal of [sig(0, [{}]), sig(2, [{ readyInstances: 0, ongoing: 5 }]), sig(5, [{ ttftMs: undefined }])]) {
        expect(Number.isInteger(s.desiredInstances(signal))).toBe(true);
      }
    });
  });
}
