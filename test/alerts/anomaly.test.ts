import { describe, expect, it } from 'vitest';
import { anomalyVerdict } from '../../src/alerts/anomaly.ts';
import { anomalyRuleSchema, type AnomalyRule } from '../../src/alerts/rules.ts';
import type { MetricPoint } from '../../src/monitoring/metric-source.ts';
import { gaussian, seeded } from './metric-sources.ts';

const STEP = 10_000;
const DAY = 86_400_000;
const PER_DAY = DAY / STEP;

interface Incident {
  start: number;
  points: number;
  add: number;
}

/**
 * p95 latency, ms, one point per 10 s: daily seasonality (±80 ms around 200), gaussian noise (sd 10),
 * one-sample blips (+40 ms on 1% of the points: not incidents), and a few incidents.
 */
function syntheticDays(days: number, seed: number, incidents: Incident[]): MetricPoint[] {
  const random = seeded(seed);
  const noise = gaussian(random);
  const out: MetricPoint[] = [];
  for (let i = 0; i < days * PER_DAY; i++) {
    const at = i * STEP;
    let v = 200 + 80 * Math.sin((2 * Math.PI * at) / DAY) + 10 * noise() + (random() < 0.01 ? 40 : 0);
    for (const inc of incidents) if (i >= inc.start && i < inc.start + inc.points) v += inc.add;
    out.push({ at, value: v });
  }
  return out;
}

function rule(over: Partial<AnomalyRule>): AnomalyRule {
  return anomalyRuleSchema.parse({ name: 'latency-anomaly', kind: 'anomaly', metric: 'latency_p95_ms', ...over });
}

/** Runs the detector at every `every`-th point from `from`; returns which evaluations were active. */
function run(series: MetricPoint[], r: AnomalyRule, windowPoints: number, from: number, every = 1): Map<number, boolean> {
  const out = new Map<number, boolean>();
  for (let i = Math.max(from, windowPoints); i < series.length; i += every) out.set(i, anomalyVerdict(series.slice(i - windowPoints, i + 1), r).active);
  return out;
}

function measure(active: Map<number, boolean>, incidents: Incident[], graceAfter: number) {
  const inIncident = (i: number) => incidents.some((inc) => i >= inc.start && i < inc.start + inc.points + graceAfter);
  let evaluations = 0;
  let falsePositives = 0;
  let falseEpisodes = 0;
  let prevFalse = false;
  for (const [i, a] of active) {
    if (inIncident(i)) {
      prevFalse = false;
      continue;
    }
    evaluations++;
    if (a) falsePositives++;
    if (a && !prevFalse) falseEpisodes++;
    prevFalse = a;
  }
  const detection = incidents.map((inc) => {
    for (let i = inc.start; i < inc.start + inc.points; i++) if (active.get(i)) return i - inc.start + 1;
    return Infinity;
  });
  return { evaluations, falsePositives, falseEpisodes, rate: falsePositives / evaluations, detection };
}

describe('anomaly detection', () => {
  it('EWMA z-score fires on an injected latency spike within 2 evaluation intervals', () => {
    const spikeAt = 500;
    const series = syntheticDays(1, 7, [{ start: spikeAt, points: 30, add: 80 }]).slice(0, spikeAt + 30);
    const r = rule({ method: 'ewma' });
    const window = r.trainingMs / STEP;
    const before = [...run(series.slice(0, spikeAt), r, window, window).values()];
    expect(before.filter(Boolean)).toHaveLength(0);
    let firstActive = -1;
    for (let i = spikeAt; i < spikeAt + 30; i++) {
      if (anomalyVerdict(series.slice(i - window, i + 1), r).active) {
        firstActive = i;
        break;
      }
    }
    // `points: 2` consecutive anomalous points: the second interval of the spike.
    expect(firstActive - spikeAt + 1).toBeGreaterThanOrEqual(1);
    expect(firstActive - spikeAt + 1).toBeLessThanOrEqual(2);
  });

  it('a noisy day with daily seasonality and three incidents: every incident detected, false-positive rate measured', () => {
    const incidents: Incident[] = [
      { start: Math.round(PER_DAY * 0.2), points: 30, add: 60 },
      { start: Math.round(PER_DAY * 0.5), points: 30, add: 60 },
      { start: Math.round(PER_DAY * 0.8), points: 60, add: 80 },
    ];
    const series = syntheticDays(1, 42, incidents);
    const results: Record<string, ReturnType<typeof measure>> = {};
    for (const sensitivity of ['low', 'medium', 'high'] as const) {
      const r = rule({ method: 'ewma', sensitivity });
      results[sensitivity] = measure(run(series, r, r.trainingMs / STEP, r.trainingMs / STEP), incidents, 6);
    }
    console.info(
      'EWMA over one synthetic day (8,640 evaluations at 10 s):',
      Object.entries(results)
        .map(
          ([s, m]) =>
            `${s}: FPR ${(m.rate * 100).toFixed(3)}% (${m.falsePositives} evals, ${m.falseEpisodes} episodes), detected after ${m.detection.join('/')} intervals`,
        )
        .join('; '),
    );
    // medium and high catch every incident (+6 and +8 noise sd) on its second interval; low (z > 6) only the largest.
    expect(results.medium!.detection).toEqual([2, 2, 2]);
    expect(results.high!.detection).toEqual([2, 2, 2]);
    expect(results.low!.detection[2]).toBeLessThanOrEqual(3);
    expect(results.medium!.rate).toBeLessThan(0.001);
    expect(results.low!.falsePositives).toBeLessThanOrEqual(results.medium!.falsePositives);
    expect(results.medium!.falsePositives).toBeLessThanOrEqual(results.high!.falsePositives);
  });

  it('seasonal baseline (yesterday at this time) over the second of two days: incidents detected, false-positive rate measured', () => {
    const incidents: Incident[] = [
      { start: PER_DAY + Math.round(PER_DAY * 0.3), points: 36, add: 80 },
      { start: PER_DAY + Math.round(PER_DAY * 0.7), points: 36, add: 80 },
    ];
    const series = syntheticDays(2, 99, incidents);
    const r = rule({ method: 'seasonal', periodMs: DAY, seasons: 1, trainingMs: 3_600_000 });
    const windowPoints = (r.periodMs + r.trainingMs) / STEP;
    // Evaluated every minute (6 steps) to keep the test short; detection is counted in those evaluations.
    const active = run(series, r, windowPoints, PER_DAY, 6);
    const m = measure(active, incidents, 12);
    const detection = incidents.map((inc) => {
      const hit = [...active.entries()].find(([i, a]) => a && i >= inc.start && i < inc.start + inc.points);
      return hit ? Math.ceil((hit[0] - inc.start + 1) / 6) : Infinity;
    });
    console.info(
      `seasonal over day 2 (${m.evaluations} evaluations at 1 min): FPR ${(m.rate * 100).toFixed(3)}% (${m.falsePositives} evals, ${m.falseEpisodes} episodes), detected after ${detection.join('/')} evaluations`,
    );
    expect(detection.every((d) => d <= 2)).toBe(true);
    expect(m.rate).toBeLessThan(0.005);
  });
});
