import { describe, expect, it } from 'vitest';
import type { PluginDefinition, ScalingSample } from 'capibara-mcp';
import { describeScalerConformance, scalingSignal, testPluginContext } from 'capibara-mcp/testing';
import targetOngoingPlugin, { createTargetOngoing } from '../../plugins/scaler-target-ongoing/index.ts';
import kpaPlugin, { createKpa } from '../../plugins/scaler-kpa/index.ts';
import sloPlugin, { createSlo } from '../../plugins/scaler-slo/index.ts';

const plugins = [targetOngoingPlugin, kpaPlugin, sloPlugin] as PluginDefinition<'scaler', unknown>[];

async function viaPlugin(p: PluginDefinition<'scaler', unknown>, raw: unknown = {}) {
  return p.setup(testPluginContext(p.name), p.options.parse(raw));
}

for (const p of plugins) describeScalerConformance(p.name, () => viaPlugin(p));
describeScalerConformance('target-ongoing (no delays)', () => createTargetOngoing({ upscaleDelayMs: 0, downscaleDelayMs: 0, lookbackMs: 0 }));
describeScalerConformance('slo (ttft)', () => createSlo({ metric: 'ttft', targetMs: 200 }));
describeScalerConformance('kpa (short windows)', () => createKpa({ stableWindowMs: 6_000, scaleToZeroGracePeriodMs: 0 }));

/** `n` ticks of the same sample. */
const ticks = (n: number, t: Partial<ScalingSample>) => Array.from({ length: n }, () => t);

describe('plugin definitions', () => {
  it('are scaler plugins for API ^1.0.0 with strict options and defaults', () => {
    expect(plugins.map((p) => p.name)).toEqual(['target-ongoing', 'kpa', 'slo']);
    for (const p of plugins) {
      expect(p.kind).toBe('scaler');
      expect(p.apiVersion).toBe('^1.0.0');
      expect(() => p.options.parse({})).not.toThrow();
      expect(() => p.options.parse({ nope: 1 })).toThrow();
    }
  });
});

describe('target-ongoing', () => {
  const s = createTargetOngoing({ targetOngoingRequests: 2, lookbackMs: 5_000, upscaleDelayMs: 10_000, downscaleDelayMs: 30_000 });

  it('scales up to ongoing / target only once the level held for the upscale delay', () => {
    // 8 ongoing on 1 instance: 4 wanted, but only for 5 s (< 10 s delay): hold
    expect(s.recommend(scalingSignal(1, [...ticks(30, { ongoing: 2 }), ...ticks(5, { ongoing: 8 })]))).toMatchObject({ desired: 1 });
    // held for 20 s: the lowest level over the last 10 s (4)
    const r = s.recommend(scalingSignal(1, [...ticks(30, { ongoing: 2 }), ...ticks(20, { ongoing: 8 })]));
    expect(r.desired).toBe(4);
    expect(r.reason).toMatch(/above 1 for 10000 ms/);
  });

  it('a spike shorter than the delay changes nothing; a lull shorter than the downscale delay neither', () => {
    expect(s.desiredInstances(scalingSignal(2, [...ticks(60, { ongoing: 4 }), ...ticks(3, { ongoing: 40 }), ...ticks(5, { ongoing: 4 })]))).toBe(2);
    expect(s.desiredInstances(scalingSignal(4, [...ticks(60, { ongoing: 8 }), ...ticks(20, { ongoing: 0 })]))).toBe(4);
  });

  it('scales down after the downscale delay, to the highest level seen in it; to zero only with no request at all', () => {
    expect(s.desiredInstances(scalingSignal(4, [...ticks(60, { ongoing: 8 }), ...ticks(40, { ongoing: 2 })]))).toBe(1);
    expect(s.desiredInstances(scalingSignal(1, [...ticks(60, { ongoing: 1 }), ...ticks(40, { ongoing: 0 })]))).toBe(0);
    expect(s.desiredInstances(scalingSignal(1, ticks(100, { ongoing: 0.2 })))).toBe(1);
  });

  it('from zero, one waiting request starts an instance at once', () => {
    expect(s.recommend(scalingSignal(0, [{ ongoing: 1, queueDepth: 1 }]))).toMatchObject({ desired: 1, reason: expect.stringMatching(/demand at zero/) });
  });

  it('the scaling factor takes part of the gap per decision', () => {
    const half = createTargetOngoing({ targetOngoingRequests: 1, lookbackMs: 0, upscaleDelayMs: 0, downscaleDelayMs: 0, upscalingFactor: 0.5 });
    expect(half.desiredInstances(scalingSignal(2, [{ ongoing: 10 }]))).toBe(6);
  });
});

describe('kpa', () => {
  const s = createKpa({
    targetConcurrency: 1,
    targetUtilization: 1,
    stableWindowMs: 60_000,
    panicWindowPercent: 10,
    panicThreshold: 2,
    scaleToZeroGracePeriodMs: 30_000,
  });

  it('follows the stable-window average outside panic', () => {
    // 3 concurrent for a minute on 2 instances: 3 wanted (panic would need 4)
    expect(s.recommend(scalingSignal(2, ticks(90, { ongoing: 3 })))).toMatchObject({ desired: 3, reason: expect.not.stringMatching(/panic mode/) });
  });

  it('panics on a burst the stable window would smooth away, and does not scale down during panic', () => {
    const two = { instances: 2, readyInstances: 2 };
    const burst = [...ticks(80, { ongoing: 2, ...two }), ...ticks(6, { ongoing: 20, ...two })];
    const r = s.recommend(scalingSignal(2, burst));
    expect(r.reason).toMatch(/panic mode/);
    expect(r.desired).toBe(20);
    // the burst is over but it was within the stable window: still panicking, no scale-down below current
    expect(s.desiredInstances(scalingSignal(20, [...burst, ...ticks(20, { ongoing: 2, readyInstances: 20 })]))).toBe(20);
    // a whole stable window later: back to the stable level, bounded by the scale-down rate (20 / 2)
    expect(s.desiredInstances(scalingSignal(20, [...burst, ...ticks(70, { ongoing: 2, readyInstances: 20 })]))).toBe(10);
  });

  it('keeps one instance for the grace period, then goes to zero', () => {
    expect(s.desiredInstances(scalingSignal(1, [...ticks(100, { ongoing: 1 }), ...ticks(62, { ongoing: 0 })]))).toBe(0);
    const early = s.recommend(scalingSignal(1, [...ticks(100, { ongoing: 1 }), ...ticks(20, { ongoing: 0 })]));
    expect(early.desired).toBe(1);
  });
});

describe('slo', () => {
  const s = createSlo({ metric: 'queueWait', targetMs: 200, windowMs: 5_000, downscaleDelayMs: 20_000, maxGrowth: 2 });

  it('grows in proportion to the overshoot, at most maxGrowth per decision', () => {
    expect(s.desiredInstances(scalingSignal(2, ticks(10, { queueWaitMs: 300, ongoing: 5 })))).toBe(3);
    expect(s.desiredInstances(scalingSignal(2, ticks(10, { queueWaitMs: 5_000, ongoing: 5 })))).toBe(4);
  });

  it('removes one instance at a time once well under the objective for the delay, nothing waiting', () => {
    expect(s.desiredInstances(scalingSignal(3, ticks(30, { queueWaitMs: 20, ongoing: 1 })))).toBe(2);
    expect(s.desiredInstances(scalingSignal(3, ticks(30, { queueWaitMs: 150, ongoing: 1 })))).toBe(3);
    expect(s.desiredInstances(scalingSignal(3, [...ticks(30, { queueWaitMs: 20 }), { queueWaitMs: 20, queueDepth: 1 }]))).toBe(3);
    // the last instance goes only when nothing ran for the whole delay
    expect(s.desiredInstances(scalingSignal(1, ticks(30, { queueWaitMs: 0, ongoing: 1 })))).toBe(1);
    expect(s.desiredInstances(scalingSignal(1, ticks(30, { ongoing: 0 })))).toBe(0);
  });

  it('on ttft, ignores samples without streamed answers', () => {
    const t = createSlo({ metric: 'ttft', targetMs: 100, windowMs: 5_000 });
    expect(t.desiredInstances(scalingSignal(1, [...ticks(3, { ttftMs: 400 }), ...ticks(2, {})]))).toBe(2);
  });
});
