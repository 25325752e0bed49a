import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { stallMeter } from '../support/stall-meter.ts';
import { FAST_HEALTH, prepareWorker, spawnWorker, waitFor, WORKERS_QUERY, type WorkerInfo, type WorkerProcess } from './support.ts';

const INTERVAL = 200;

describe('worker heartbeats and commands', () => {
  let gw: TestGateway;
  let worker: WorkerProcess;

  const workerById = async (id: string) => (await gw.gql<{ workers: WorkerInfo[] }>(WORKERS_QUERY)).data!.workers.find((w) => w.id === id);
  const infer = (model: string) =>
    gw.gql<{ infer: { text: string; instanceId: string } }>(
      `mutation($m: ID!) { infer(model: $m, input: { prompt: "ping" }, timeoutMs: 5000) { text instanceId } }`,
      { m: model },
    );

  beforeAll(async () => {
    gw = await startTestGateway({ router: FAST_HEALTH });
    await prepareWorker(gw, 'Lapse-1', [{ id: 'echo' }]);
    worker = spawnWorker({ gateway: gw.url, name: 'Lapse-1', heartbeatIntervalMs: INTERVAL });
    await waitFor(async () => (await workerById('lapse-1'))?.instances.some((i) => i.status === 'READY'), 45_000, 'lapse-1 to register');
  });

  afterAll(async () => {
    worker?.kill('SIGCONT');
    worker?.kill('SIGKILL');
    await worker?.exited;
    await gw?.close();
  });

  it('a paused worker (no heartbeats) is marked unhealthy within three intervals and gets no traffic; heartbeats bring it back', async () => {
    // (on a loaded machine a fast health probe may time out once right after the start: wait for the first answer)
    await waitFor(async () => (await infer('echo')).data?.infer.instanceId === 'lapse-1.echo-v1', 10_000, 'a first answer from lapse-1');
    const paused = performance.now();
    // Bounds below are in the gateway's own time: what a busy machine kept this process from running is added.
    const stall = stallMeter();
    worker.kill('SIGSTOP');
    await waitFor(
      async () => {
        const w = await workerById('lapse-1');
        return w?.status === 'UNHEALTHY' && w.instances[0]?.status === 'FAILED' && w.instances[0]?.statusReason === 'worker heartbeat lost';
      },
      5_000,
      'lapse-1 to be marked unhealthy',
      10,
    );
    const detectMs = performance.now() - paused;
    expect(detectMs).toBeLessThan(3 * INTERVAL + 150 + stall.ms);
    // no ready instance: the router does not even try the paused worker (it would hang until the deadline)
    const started = performance.now();
    const stalledBefore = stall.ms;
    const r = await infer('echo');
    expect(r.errors?.[0]?.extensions?.code).toBe('MCP_NO_HEALTHY_INSTANCE');
    expect(performance.now() - started).toBeLessThan(1000 + stall.stop() - stalledBefore);

    worker.kill('SIGCONT');
    await waitFor(
      async () => {
        const w = await workerById('lapse-1');
        return w?.status === 'HEALTHY' && w.instances[0]?.status === 'READY';
      },
      5_000,
      'lapse-1 to be healthy again',
    );
    await waitFor(async () => (await infer('echo')).data?.infer.instanceId === 'lapse-1.echo-v1', 5_000, 'traffic back on lapse-1');
  });

  it('loadModelOnWorker sends a LOAD command over the subscription; the worker loads and re-registers; unloadFromWorker releases it', async () => {
    const sent = await gw.gql<{ loadModelOnWorker: { id: string; action: string; instanceId: string } }>(
      `mutation { loadModelOnWorker(workerId: "lapse-1", model: "echo-two", version: "v2", backend: "echo", task: CHAT) { id action instanceId } }`,
    );
    expect(sent.errors).toBeUndefined();
    expect(sent.data!.loadModelOnWorker).toMatchObject({ action: 'LOAD', instanceId: 'echo-two-v2' });
    await waitFor(
      async () => (await workerById('lapse-1'))?.instances.find((i) => i.id === 'lapse-1.echo-two-v2' && i.status === 'READY'),
      10_000,
      'the loaded instance',
    );
    // an operator's command registers the model and assigns it to the worker (a registration alone never would)
    const model = await gw.gql<{ model: { task: string; defaultVersion: string } }>(`{ model(id: "echo-two") { task defaultVersion } }`);
    expect(model.data!.model).toEqual({ task: 'CHAT', defaultVersion: 'v2' });
    expect((await workerById('lapse-1'))?.assignedModels).toEqual(['echo', 'echo-two']);
    expect((await infer('echo-two')).data?.infer).toEqual({ text: 'Lapse-1:ping', instanceId: 'lapse-1.echo-two-v2' });

    const unload = await gw.gql<{ unloadFromWorker: { action: string; instanceId: string } }>(
      `mutation { unloadFromWorker(workerId: "lapse-1", instanceId: "lapse-1.echo-two-v2") { action instanceId } }`,
    );
    expect(unload.data!.unloadFromWorker).toEqual({ action: 'UNLOAD', instanceId: 'echo-two-v2' });
    expect((await infer('echo-two')).errors?.[0]?.extensions?.code).toBe('MCP_NO_HEALTHY_INSTANCE');
    // the worker re-registers without it; the instance stays unloaded, the other one ready
    await waitFor(async () => worker.output().includes('"instance":"echo-two-v2","msg":"instance unloaded"'), 5_000, 'the worker to unload');
    const w = await workerById('lapse-1');
    expect(w!.instances.find((i) => i.id === 'lapse-1.echo-two-v2')?.status).toBe('UNLOADED');
    expect(w!.instances.find((i) => i.id === 'lapse-1.echo-v1')?.status).toBe('READY');
  });

  it('errors: unknown worker, reserved name, heartbeat of an unknown worker', async () => {
    const missing = await gw.gql(`mutation { loadModelOnWorker(workerId: "nope", model: "m", version: "v1") { id } }`);
    expect(missing.errors?.[0]?.extensions?.code).toBe('MCP_WORKER_NOT_FOUND');
    const hb = await gw.gql(`mutation { workerHeartbeat(id: "nope") { id } }`);
    expect(hb.errors?.[0]?.extensions?.code).toBe('MCP_WORKER_NOT_FOUND');
    const s = 'a-session-of-20-chars';
    const reserved = await gw.gql(
      `mutation { registerWorker(input: { name: "embedded", endpoint: "http://127.0.0.1:1", session: "${s}", heartbeatIntervalMs: 1000 }) { worker { id } } }`,
    );
    expect(reserved.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const badUrl = await gw.gql(
      `mutation { registerWorker(input: { name: "x", endpoint: "ftp://h", session: "${s}", heartbeatIntervalMs: 1000 }) { worker { id } } }`,
    );
    expect(badUrl.errors?.[0]?.extensions).toMatchObject({ code: 'MCP_VALIDATION_FAILED', details: { path: 'input.endpoint' } });
    const badSession = await gw.gql(
      `mutation { registerWorker(input: { name: "x", endpoint: "http://h", session: "short", heartbeatIntervalMs: 1000 }) { worker { id } } }`,
    );
    expect(badSession.errors?.[0]?.extensions).toMatchObject({ code: 'MCP_VALIDATION_FAILED', details: { path: 'input.session' } });
    const unknownModel = await gw.gql(`mutation { assignWorkerModels(worker: "lapse-1", models: ["echo", "nope"]) { models } }`);
    expect(unknownModel.errors?.[0]?.extensions).toMatchObject({ code: 'MCP_MODEL_NOT_FOUND', details: { models: ['nope'] } });
  });
});
