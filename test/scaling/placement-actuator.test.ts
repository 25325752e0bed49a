/**
 * The `instances` actuator through placement, with two real worker processes that state their memory:
 * a version with resource requirements (400 MiB, workers of 600 MiB: one replica each) is scaled up by a
 * scaling decision, and placement puts the second replica on the other worker; a decision down drains
 * one replica while requests are in flight on both, then unloads it: no request fails.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelEvent } from '../../src/events/bus.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { spawnWorker, waitFor, type WorkerProcess } from '../workers/support.ts';

const SLOW = new URL('./slow-backend.js', import.meta.url).pathname;
const MiB = 2 ** 20;
const SET = `mutation($p: ScalingPolicyInput!) { setScalingPolicy(model: "sp", version: "v1", policy: $p) { minInstances } }`;
const INFER = `mutation($p: String!) { infer(model: "sp", input: { prompt: $p }, timeoutMs: 20000) { text } }`;

interface Placement {
  instanceId: string;
  modelId: string;
  workerId: string;
  status: string;
  pending: boolean;
}

describe('instances actuator through placement (worker processes)', () => {
  let gw: TestGateway;
  const procs: WorkerProcess[] = [];
  const dirs: string[] = [];
  const events: ModelEvent[] = [];
  const listening = new AbortController();

  const placements = async () => {
    const r = await gw.gql<{ placements: Placement[] }>(`{ placements { instanceId modelId workerId status pending } }`);
    if (r.errors) throw new Error(r.errors[0]!.message);
    return r.data!.placements.filter((p) => p.modelId === 'sp');
  };
  const worker = (name: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'mcp-scale-placement-'));
    dirs.push(dir);
    const w = spawnWorker({
      gateway: gw.url,
      name,
      raw: {
        defaultPlugins: false,
        plugins: [{ use: SLOW, options: { prefix: `${name}:`, delayMs: 300 } }],
        storage: { dataDir: join(dir, 'data') },
        log: { level: 'info' },
        worker: {
          gateway: gw.url,
          port: 0,
          name,
          // ~3 missed beats mark a worker unhealthy: 1 s keeps a worker process slowed by a busy machine healthy
          heartbeatIntervalMs: 1000,
          drainMs: 2000,
          memory: { cpu: '600MiB' },
          models: [{ id: `${name}-base`, version: 'v1', backend: 'slow', task: 'generate' }],
        },
      },
    });
    procs.push(w);
    return w;
  };

  beforeAll(async () => {
    gw = await startTestGateway({
      plugins: [{ use: 'target-ongoing', name: 'steady', options: { targetOngoingRequests: 1000, lookbackMs: 500, upscaleDelayMs: 0, downscaleDelayMs: 0 } }],
      scaling: { intervalMs: 100 },
      placement: { intervalMs: 200, idleMs: 300, pendingTimeoutMs: 10_000 },
    });
    void (async () => {
      for await (const e of gw.services.events.subscribe('modelEvents', listening.signal)) events.push(e);
    })().catch(() => {});
    worker('sw1');
    worker('sw2');
    await waitFor(
      async () => {
        const r = await gw.gql<{ workers: Array<{ id: string; status: string; load: { inflight: number } | null }> }>(
          `{ workers { id status load { inflight } } }`,
        );
        return ['sw1', 'sw2'].every((n) => r.data?.workers.some((w) => w.id === n && w.status === 'HEALTHY' && w.load));
      },
      30_000,
      'workers healthy',
      100,
    );
  }, 60_000);

  afterAll(async () => {
    listening.abort();
    await gw?.close();
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }, 60_000);

  it('a decision up places the second replica on the other worker; a decision down drains one and removes it with no failed request', async () => {
    const reg = await gw.gql(`mutation($i: RegisterModelInput!) { registerModel(input: $i) { id } }`, {
      i: { id: 'sp', task: 'GENERATE', versions: [{ version: 'v1', resources: { backend: 'slow', memoryBytes: 400 * MiB, replicas: 1 } }] },
    });
    expect(reg.errors).toBeUndefined();
    const first = await waitFor(async () => (await placements()).find((p) => p.status === 'READY' && !p.pending), 30_000, 'the first replica', 100);

    // up: bounds 2..2; the policy names no backend or workers, placement chooses (400 MiB fits once per worker)
    const up = await gw.gql(SET, {
      p: { scaler: 'steady', minInstances: 2, maxInstances: 2, reverseCooldownMs: 0, scaleDownStabilizationMs: 0, drainMs: 10_000 },
    });
    expect(up.errors).toBeUndefined();
    const two = await waitFor(
      async () => {
        const ready = (await placements()).filter((p) => p.status === 'READY' && !p.pending);
        return ready.length === 2 ? ready : undefined;
      },
      30_000,
      'two replicas',
      100,
    );
    expect(new Set(two.map((p) => p.workerId))).toEqual(new Set(['sw1', 'sw2']));
    expect(two.find((p) => p.workerId !== first.workerId)).toBeDefined();
    // the policy's drain time is stored with the requirements, so whichever replica holds the placement lease drains by it
    const requirements = await gw.gql<{ model: { versions: Array<{ resources: { replicas: number; drainMs: number } }> } }>(
      `{ model(id: "sp") { versions { resources { replicas drainMs } } } }`,
    );
    expect(requirements.data?.model.versions[0]?.resources).toEqual({ replicas: 2, drainMs: 10_000 });

    // load on both replicas (300 ms per request, 6 clients), then down to one while requests are in flight
    let stop = false;
    const outcomes: Array<{ ok: boolean; text?: string; error?: string; at: number }> = [];
    const clients = Array.from({ length: 6 }, async (_, c) => {
      for (let i = 0; !stop; i++) {
        const r = await gw.gql<{ infer: { text: string } }>(INFER, { p: `${c}-${i}` });
        outcomes.push(
          r.errors?.length
            ? { ok: false, error: `${String(r.errors[0]!.extensions?.code)} ${r.errors[0]!.message}`, at: Date.now() }
            : { ok: true, text: r.data!.infer.text, at: Date.now() },
        );
      }
    });
    await waitFor(async () => ['sw1', 'sw2'].every((w) => outcomes.some((o) => o.text?.startsWith(`${w}:`))), 20_000, 'answers from both workers', 50);
    const downAt = Date.now();
    const down = await gw.gql(SET, {
      p: { scaler: 'steady', minInstances: 1, maxInstances: 1, reverseCooldownMs: 0, scaleDownStabilizationMs: 0, drainMs: 10_000 },
    });
    expect(down.errors).toBeUndefined();
    const left = await waitFor(
      async () => {
        const all = await placements();
        return all.length === 1 && all[0]!.status === 'READY' ? all[0] : undefined;
      },
      30_000,
      'one replica left',
      100,
    );
    const mark = outcomes.length;
    await waitFor(async () => outcomes.length >= mark + 12, 20_000, 'answers after the scale-down', 50);
    stop = true;
    await Promise.all(clients);
    expect(outcomes.filter((o) => !o.ok)).toEqual([]);
    expect(outcomes.slice(mark).every((o) => o.text?.startsWith(`${left.workerId}:`))).toBe(true);

    const d = await gw.gql<{ scalingDecisions: Array<{ fromInstances: number; toInstances: number; reason: string; outcome: string }> }>(
      `{ scalingDecisions(model: "sp", version: "v1") { fromInstances toInstances reason outcome } }`,
    );
    const path = d.data!.scalingDecisions.reverse();
    expect(path.map((x) => [x.fromInstances, x.toInstances, x.outcome])).toEqual([
      [1, 2, 'APPLIED'],
      [2, 1, 'APPLIED'],
    ]);
    expect(path.every((x) => x.reason.endsWith('through placement (replicas ' + x.toInstances + ')'))).toBe(true);
    const gone = two.find((p) => p.instanceId !== left.instanceId)!;
    // the replica that went had requests in flight when the decision came: they finished there (drained), none failed
    expect(outcomes.some((o) => o.at > downAt && o.text?.startsWith(`${gone.workerId}:`))).toBe(true);
    const second = two.find((p) => p.workerId !== first.workerId)!;
    expect(events.filter((e) => e.type === 'INSTANCE_PLACED' && e.modelId === 'sp').map((e) => e.workerId)).toEqual([first.workerId, second.workerId]);
    expect(events.find((e) => e.type === 'INSTANCE_EVICTED' && e.modelId === 'sp')).toMatchObject({
      instanceId: gone.instanceId,
      reason: 'sp@v1 wants 1 replicas',
    });
    const stored = await gw.gql<{ model: { versions: Array<{ resources: { replicas: number } }> } }>(
      `{ model(id: "sp") { versions { resources { replicas } } } }`,
    );
    expect(stored.data!.model.versions[0]!.resources.replicas).toBe(1);
  }, 90_000);
});
