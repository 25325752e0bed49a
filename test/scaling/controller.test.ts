/**
 * The scaling controller in one gateway with the built-in `instances` actuator (instances in the gateway
 * process, on a 150 ms backend): policy validation, bounds, scale up under load and down with draining
 * (no failed request), the decision history, the hold at zero with its coded timeout, and the lease.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { ScalingController } from '../../src/scaling/controller.ts';
import { waitFor } from '../workers/support.ts';
import { replay } from './trace.ts';

const SLOW = new URL('./slow-backend.js', import.meta.url).pathname;
const SET = `mutation($m: ID!, $v: String, $p: ScalingPolicyInput!) { setScalingPolicy(model: $m, version: $v, policy: $p) { model version scaler minInstances maxInstances actuator actuatorOptions } }`;

describe('scaling controller (instances actuator)', () => {
  let gw: TestGateway;
  const err = async (model: string, policy: Record<string, unknown>) => (await gw.gql(SET, { m: model, p: policy })).errors?.[0];
  const ready = async (model: string) => {
    const r = await gw.gql<{ model: { versions: Array<{ instances: Array<{ status: string }> }> } }>(
      `query($id: ID!) { model(id: $id) { versions { instances { status } } } }`,
      {
        id: model,
      },
    );
    return r.data!.model.versions.flatMap((v) => v.instances).filter((i) => i.status === 'READY').length;
  };
  const infer = async (model: string) => {
    const r = await gw.gql<{ infer: { instanceId: string } }>(
      `mutation($m: ID!) { infer(model: $m, input: { prompt: "x" }, timeoutMs: 20000) { instanceId } }`,
      { m: model },
    );
    return r.errors?.length ? { ok: false, code: String(r.errors[0]!.extensions?.code) } : { ok: true, instance: r.data!.infer.instanceId };
  };

  beforeAll(async () => {
    gw = await startTestGateway({
      plugins: [
        { use: SLOW, options: { delayMs: 150 } },
        { use: 'target-ongoing', name: 'quick', options: { targetOngoingRequests: 1, lookbackMs: 500, upscaleDelayMs: 300, downscaleDelayMs: 1_000 } },
      ],
      scaling: { intervalMs: 100 },
      admission: { models: { q: { maxConcurrentPerInstance: 1 } } },
    });
    for (const id of ['a', 'z', 'f', 'q'])
      expect(
        (await gw.gql(`mutation($id: String!) { registerModel(input: { id: $id, task: GENERATE, versions: [{ version: "v1" }] }) { id } }`, { id })).errors,
      ).toBeUndefined();
  }, 60_000);

  afterAll(async () => {
    await gw?.close();
  }, 60_000);

  it('refuses bad policies with coded errors naming the field', async () => {
    expect(await err('a', { scaler: 'nope', actuator: { options: { backend: 'slow' } } })).toMatchObject({ extensions: { code: 'MCP_UNKNOWN_PLUGIN' } });
    expect(await err('a', { scaler: 'quick', minInstances: 0, actuator: { options: { backend: 'slow' } } })).toMatchObject({
      message: expect.stringMatching(/minInstances 0 needs scaleToZero/),
      extensions: { code: 'MCP_VALIDATION_FAILED' },
    });
    expect(await err('a', { scaler: 'quick', actuator: { name: 'elsewhere' } })).toMatchObject({ extensions: { code: 'MCP_VALIDATION_FAILED' } });
    expect(await err('a', { scaler: 'quick', actuator: { options: { backend: 'slow', nope: 1 } } })).toMatchObject({
      message: expect.stringMatching(/actuator\.options/),
      extensions: { code: 'MCP_VALIDATION_FAILED' },
    });
    expect(await err('missing', { scaler: 'quick' })).toMatchObject({ extensions: { code: 'MCP_MODEL_NOT_FOUND' } });
  });

  it('brings a version to its minimum, scales up under load and down again with draining: no request fails', async () => {
    const r = await gw.gql<{ setScalingPolicy: Record<string, unknown> }>(SET, {
      m: 'a',
      p: {
        scaler: 'quick',
        minInstances: 1,
        maxInstances: 3,
        scaleDownStabilizationMs: 500,
        reverseCooldownMs: 500,
        drainMs: 5000,
        actuator: { options: { backend: 'slow' } },
      },
    });
    expect(r.errors).toBeUndefined();
    expect(r.data!.setScalingPolicy).toMatchObject({ model: 'a', version: 'v1', scaler: 'quick', minInstances: 1, maxInstances: 3, actuator: 'instances' });
    expect(r.data!.setScalingPolicy.actuatorOptions).toMatchObject({ backend: 'slow', workers: ['embedded'], task: 'generate' });
    await waitFor(async () => (await ready('a')) === 1, 20_000, 'the minimum instance');
    const outcomes = await replay(
      [
        { name: 'load', clients: 4, ms: 3_000 },
        { name: 'trickle', clients: 1, ms: 3_500 },
      ],
      () => infer('a'),
    );
    expect(outcomes.filter((o) => !o.ok)).toEqual([]);
    expect(new Set(outcomes.map((o) => o.instance)).size).toBeGreaterThanOrEqual(2);
    await waitFor(async () => (await ready('a')) === 1, 20_000, 'back to one instance');
    const d = await gw.gql<{
      scalingDecisions: Array<{ fromInstances: number; toInstances: number; reason: string; outcome: string; scaler: string; actuator: string }>;
    }>(`{ scalingDecisions(model: "a") { fromInstances toInstances reason outcome scaler actuator } }`);
    const path = d.data!.scalingDecisions.reverse();
    expect(path[0]).toMatchObject({
      fromInstances: 0,
      toInstances: 1,
      reason: expect.stringMatching(/bounds/),
      outcome: 'APPLIED',
      scaler: 'quick',
      actuator: 'instances',
    });
    expect(Math.max(...path.map((x) => x.toInstances))).toBeGreaterThanOrEqual(2);
    expect(path[path.length - 1]!.toInstances).toBe(1);
    expect(path.every((x) => x.outcome === 'APPLIED')).toBe(true);
    const policies = await gw.gql<{ scalingPolicies: Array<{ model: string }> }>(`{ scalingPolicies { model } }`);
    expect(policies.data!.scalingPolicies.map((p) => p.model)).toContain('a');
  }, 60_000);

  it('at zero, a request is held while the first instance loads, and answered', async () => {
    const r = await gw.gql(SET, {
      m: 'z',
      p: { scaler: 'quick', minInstances: 0, scaleToZero: true, holdMs: 20000, actuator: { options: { backend: 'slow' } } },
    });
    expect(r.errors).toBeUndefined();
    expect(await ready('z')).toBe(0);
    const answers = await Promise.all([infer('z'), infer('z')]);
    expect(answers.map((a) => a.ok)).toEqual([true, true]);
  }, 30_000);

  it('at zero with an admission limit: held requests take admission slots of the first instance (one at a time), none bypasses the queue', async () => {
    const r = await gw.gql(SET, {
      m: 'q',
      p: { scaler: 'quick', minInstances: 0, maxInstances: 1, scaleToZero: true, holdMs: 20000, actuator: { options: { backend: 'slow' } } },
    });
    expect(r.errors).toBeUndefined();
    expect(await ready('q')).toBe(0);
    const queue = () => gw.services.admission.snapshot((m) => m === 'q')[0];
    let maxInFlight = 0;
    let maxQueued = 0;
    const sampler = setInterval(() => {
      maxInFlight = Math.max(maxInFlight, queue()?.inFlight ?? 0);
      maxQueued = Math.max(maxQueued, queue()?.queued ?? 0);
    }, 5);
    const answers = await Promise.all([infer('q'), infer('q'), infer('q')]);
    clearInterval(sampler);
    expect(answers.map((a) => a.ok)).toEqual([true, true, true]);
    const q = queue()!;
    // Admission counted all three (a request admission steps aside for is not counted) against capacity 1 × 1.
    expect(q.tenants.reduce((n, t) => n + t.admitted, 0)).toBe(3);
    expect(q).toMatchObject({ capacity: 1, inFlight: 0, queued: 0 });
    expect(maxInFlight).toBe(1);
    expect(maxQueued).toBeGreaterThanOrEqual(1);
  }, 30_000);

  it('when no instance comes up, a held request fails with MCP_SCALE_FROM_ZERO_TIMEOUT after holdMs; the failed decision is recorded', async () => {
    const r = await gw.gql(SET, {
      m: 'f',
      p: { scaler: 'quick', minInstances: 0, scaleToZero: true, holdMs: 1500, actuator: { options: { backend: 'slow', options: { failLoad: true } } } },
    });
    expect(r.errors).toBeUndefined();
    const t0 = Date.now();
    const a = await infer('f');
    expect(a).toEqual({ ok: false, code: 'MCP_SCALE_FROM_ZERO_TIMEOUT' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    const d = await waitFor(
      async () =>
        (await gw.gql<{ scalingDecisions: Array<{ outcome: string; error: string }> }>(`{ scalingDecisions(model: "f", last: 1) { outcome error } }`)).data!
          .scalingDecisions[0],
      10_000,
      'the failed decision',
    );
    expect(d).toMatchObject({ outcome: 'FAILED', error: expect.stringMatching(/fail its load/) });
  }, 30_000);

  it('runs on one replica at a time: a second controller on the same database does not lead while the first does', async () => {
    const s = gw.services;
    expect(s.scaling.leading()).toBe(true);
    const r = await gw.gql(`mutation { registerModel(input: { id: "r", task: GENERATE, versions: [{ version: "v1" }] }) { id } }`);
    expect(r.errors).toBeUndefined();
    const set = await gw.gql(SET, {
      m: 'r',
      p: { scaler: 'quick', minInstances: 0, scaleToZero: true, holdMs: 20000, actuator: { options: { backend: 'slow' } } },
    });
    expect(set.errors).toBeUndefined();
    const other = new ScalingController({
      config: s.config.scaling,
      database: s.database,
      registry: s.registry,
      fleet: s.instances,
      router: s.router,
      plugins: s.plugins,
      actuators: new Map(),
      events: s.events,
      logger: s.logger,
    });
    await other.start();
    expect(other.leading()).toBe(false);
    // a request held at zero on the other replica reaches the leader (scalingSignals), which scales from zero
    const readyHere = () => (s.instances.view('r')?.versions.get('v1') ?? []).some((h) => h.status === 'ready' && h.loaded !== undefined);
    const held = await other.hold.hold('r', 'v1', new AbortController().signal, Date.now() + 20_000, readyHere);
    expect(held).toBe(true);
    const d = await gw.gql<{ scalingDecisions: Array<{ fromInstances: number; toInstances: number; reason: string }> }>(
      `{ scalingDecisions(model: "r") { fromInstances toInstances reason } }`,
    );
    expect(d.data!.scalingDecisions[d.data!.scalingDecisions.length - 1]).toMatchObject({
      fromInstances: 0,
      toInstances: 1,
      reason: expect.stringMatching(/demand at zero/),
    });
    await other.close();
  }, 40_000);
});
