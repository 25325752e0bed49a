/**
 * Auto-scaling with the local-process actuator under a replayed trace: from zero (held requests),
 * a step, a ramp, a spike, then a trickle and quiet. Real `capibara-mcp worker` processes are started
 * and stopped by the gateway.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { FAST_HEALTH, waitFor } from '../workers/support.ts';
import { replay, type Phase } from './trace.ts';

const SLOW = new URL('./slow-backend.js', import.meta.url).pathname;
const INFER = `mutation($p: String!) { infer(model: "slow", input: { prompt: $p }, timeoutMs: 40000) { text instanceId } }`;
const DECISIONS = `query { scalingDecisions(model: "slow", last: 100) { fromInstances toInstances recommended reason outcome error at } }`;

interface Decision {
  fromInstances: number;
  toInstances: number;
  recommended: number;
  reason: string;
  outcome: string;
  error: string | null;
  at: string;
}

describe('auto-scaling worker processes under a load trace', () => {
  let gw: TestGateway;
  const events: Array<{ type: string; scaling: { from: number; to: number } | null }> = [];

  beforeAll(async () => {
    gw = await startTestGateway({
      router: FAST_HEALTH,
      plugins: [
        { use: 'target-ongoing', name: 'ongoing-fast', options: { targetOngoingRequests: 2, lookbackMs: 1_000, upscaleDelayMs: 600, downscaleDelayMs: 2_500 } },
      ],
      scaling: {
        intervalMs: 200,
        actuators: [
          {
            name: 'local',
            type: 'local-process',
            options: {
              namePrefix: 'as',
              maxProcesses: 4,
              workerConfig: {
                defaultPlugins: false,
                plugins: [{ use: SLOW, options: { delayMs: 250 } }],
                log: { level: 'warn' },
                worker: { heartbeatIntervalMs: 300, drainMs: 5_000, models: [{ id: 'slow', version: 'v1', backend: 'slow', task: 'generate' }] },
              },
            },
          },
        ],
      },
    });
    const r = await gw.gql(`mutation { registerModel(input: { id: "slow", task: GENERATE, versions: [{ version: "v1" }] }) { id } }`);
    expect(r.errors).toBeUndefined();
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
  }, 60_000);

  it('scales from zero holding requests, up on the step and ramp, not on a short spike, down without failing a request, back to zero', async () => {
    const set = await gw.gql<{ setScalingPolicy: { version: string; minInstances: number; actuator: string } }>(
      `mutation { setScalingPolicy(model: "slow", policy: {
          scaler: "ongoing-fast", minInstances: 0, maxInstances: 3, scaleToZero: true, holdMs: 45000,
          scaleDownStabilizationMs: 1500, reverseCooldownMs: 3000, drainMs: 5000, actuator: { name: "local" } }) {
        version minInstances actuator } }`,
    );
    expect(set.errors).toBeUndefined();
    expect(set.data!.setScalingPolicy).toEqual({ version: 'v1', minInstances: 0, actuator: 'local' });

    const stop = new AbortController();
    void (async () => {
      for await (const e of gw.services.events.subscribe('modelEvents', stop.signal)) {
        if (e.type === 'SCALING_DECISION' && e.modelId === 'slow') events.push({ type: e.type, scaling: e.scaling ?? null });
      }
    })();

    let n = 0;
    const send = async () => {
      const r = await gw.gql<{ infer: { text: string; instanceId: string } }>(INFER, { p: `q${n++}` });
      if (r.errors?.length) return { ok: false, code: String(r.errors[0]!.extensions?.code ?? r.errors[0]!.message) };
      return { ok: true, instance: r.data!.infer.instanceId };
    };
    const readyWorkers = async () => {
      const r = await gw.gql<{ model: { versions: Array<{ instances: Array<{ status: string; workerId: string | null }> }> } }>(
        `{ model(id: "slow") { versions { instances { status workerId } } } }`,
      );
      return r.data!.model.versions.flatMap((v) => v.instances).filter((i) => i.status === 'READY').length;
    };

    // 1. From zero: two requests arrive together; both are held until the first worker is ready, then answered.
    const t0 = Date.now();
    const cold = await Promise.all([send(), send()]);
    const coldMs = Date.now() - t0;
    expect(cold.map((c) => c.ok)).toEqual([true, true]);
    expect(await readyWorkers()).toBeGreaterThanOrEqual(1);

    // 2. The trace: step (1 → 4 clients), ramp (4 → 6), spike (12 clients for 400 ms, shorter than the upscale delay), trickle, quiet.
    let stepAt = 0;
    let before = -1;
    let secondServingMs: number | undefined;
    const watch = setInterval(() => {
      if (stepAt && before >= 0 && secondServingMs === undefined)
        void readyWorkers().then((k) => {
          if (k > before && secondServingMs === undefined) secondServingMs = Date.now() - stepAt;
        });
    }, 100);
    const phases: Phase[] = [
      { name: 'base', clients: 1, ms: 1_000 },
      { name: 'step', clients: 4, ms: 7_000 },
      { name: 'ramp', clients: 4, to: 6, ms: 3_000 },
      { name: 'spike', clients: 12, ms: 400 },
      { name: 'trickle', clients: 1, ms: 9_000 },
    ];
    const outcomes = await replay(phases, send, (p) => {
      if (p.name === 'step') {
        stepAt = Date.now();
        void readyWorkers().then((k) => (before = k));
      }
    });
    clearInterval(watch);
    const failed = outcomes.filter((o) => !o.ok);
    const soFar = async () =>
      (await gw.gql<{ scalingDecisions: Decision[] }>(DECISIONS))
        .data!.scalingDecisions.map((d) => `${d.fromInstances}→${d.toInstances} ${d.reason}`)
        .reverse()
        .join(' | ');
    expect(failed, JSON.stringify(failed.slice(0, 5)) + (await soFar())).toEqual([]);
    expect(outcomes.length).toBeGreaterThan(50);
    expect(secondServingMs, `a new worker served during the step: ${await soFar()}`).toBeDefined();
    const served = new Set(outcomes.map((o) => o.instance));
    expect(served.size).toBeGreaterThanOrEqual(2);

    // 3. Quiet: back to zero.
    await waitFor(
      async () => (await readyWorkers()) === 0 && (await gw.gql<{ scalingDecisions: Decision[] }>(DECISIONS)).data!.scalingDecisions[0]!.toInstances === 0,
      30_000,
      'scale to zero',
    );
    const decisions = (await gw.gql<{ scalingDecisions: Decision[] }>(DECISIONS)).data!.scalingDecisions.reverse();
    const path = decisions.map((d) => `${d.fromInstances}→${d.toInstances}`);
    expect(
      decisions.every((d) => d.outcome === 'APPLIED'),
      path.join(' '),
    ).toBe(true);
    expect(decisions[0]).toMatchObject({ fromInstances: 0, reason: expect.stringMatching(/demand at zero/) });
    expect(decisions[0]!.toInstances).toBeGreaterThanOrEqual(1);
    // No oscillation: every scale-up comes before every scale-down, and at most 6 changes in all
    // (0→1, up to two steps up to 3, up to two steps down, →0).
    const directions = decisions.map((d) => Math.sign(d.toInstances - d.fromInstances));
    const firstDown = directions.indexOf(-1);
    expect(
      directions.slice(firstDown).every((d) => d === -1),
      path.join(' '),
    ).toBe(true);
    expect(decisions.length, path.join(' ')).toBeLessThanOrEqual(6);
    expect(Math.max(...decisions.map((d) => d.toInstances))).toBeLessThanOrEqual(3);
    // published on modelEvents too
    await waitFor(async () => events.length >= decisions.length, 5_000, 'scaling events');
    expect(events.map((e) => `${e.scaling!.from}→${e.scaling!.to}`)).toEqual(path);
    stop.abort();
    console.log(
      `autoscale trace: cold start ${coldMs} ms; step → a new worker serving ${secondServingMs} ms; ${outcomes.length} requests, 0 failed; decisions ${path.join(' ')}`,
    );
  }, 120_000);
});
