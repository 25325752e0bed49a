import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { stallMeter, type StallMeter } from '../support/stall-meter.ts';
import { FAST_HEALTH, prepareWorker, spawnWorker, waitFor, WORKERS_QUERY, type WorkerInfo, type WorkerProcess } from './support.ts';

const INTERVAL = 400;
const INFER = `mutation($p: String!) { infer(model: "echo", input: { prompt: $p }, timeoutMs: 10000) { text instanceId } }`;

describe('worker processes: registration, traffic, failover on kill -9', () => {
  let gw: TestGateway;
  const procs: WorkerProcess[] = [];

  const workers = async () => (await gw.gql<{ workers: WorkerInfo[] }>(WORKERS_QUERY)).data!.workers;
  const workerById = async (id: string) => (await workers()).find((w) => w.id === id);
  const infer = async (p: string) => {
    const r = await gw.gql<{ infer: { text: string; instanceId: string } }>(INFER, { p });
    if (r.errors?.length) throw new Error(`${String(r.errors[0]!.extensions?.code)}: ${r.errors[0]!.message}`);
    return r.data!.infer;
  };
  const readyInstance = (id: string) => async () => {
    const w = await workerById(id);
    return w?.status === 'HEALTHY' && w.instances.some((i) => i.status === 'READY') ? w : undefined;
  };

  beforeAll(async () => {
    // round-robin: both workers get traffic deterministically (p2c-ewma may favour the faster one)
    gw = await startTestGateway({ router: { ...FAST_HEALTH, balancer: 'round-robin' } });
    // the operator flow: the model exists and is assigned to both workers before they start
    await prepareWorker(gw, 'worker-a', [{ id: 'echo' }]);
    await prepareWorker(gw, 'worker-b', [{ id: 'echo' }]);
  });

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    await gw?.close();
  });

  it('a worker process registers, its instance is READY and answers come from it', async () => {
    const a = spawnWorker({ gateway: gw.url, name: 'worker-a', heartbeatIntervalMs: INTERVAL });
    procs.push(a);
    const w = await waitFor(readyInstance('worker-a'), 45_000, 'worker-a to register');
    expect(w.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(w.heartbeatIntervalMs).toBe(INTERVAL);
    expect(w.devices.some((d) => d.kind === 'cpu')).toBe(true);
    expect(w.instances).toEqual([
      expect.objectContaining({ id: 'worker-a.echo-v1', modelId: 'echo', backend: 'worker', workerId: 'worker-a', endpoint: w.endpoint, status: 'READY' }),
    ]);
    const answer = await infer('hello');
    expect(answer).toEqual({ text: 'worker-a:hello', instanceId: 'worker-a.echo-v1' });
    // the embedded worker (the gateway process) is listed too
    const all = await workers();
    expect(all[0]).toMatchObject({ id: 'embedded', embedded: true, status: 'HEALTHY' });
  }, 60_000);

  const killUnderLoad =
    'killing a worker under load fails no request beyond those in flight; ' + 'it is marked unhealthy within three intervals; a restart brings it back';
  it(
    killUnderLoad,
    async () => {
      const b = spawnWorker({ gateway: gw.url, name: 'worker-b', heartbeatIntervalMs: INTERVAL });
      procs.push(b);
      await waitFor(readyInstance('worker-b'), 45_000, 'worker-b to register');
      const a = procs[0]!;

      // both take traffic
      const seen = new Set<string>();
      for (let i = 0; i < 40 && seen.size < 2; i++) seen.add((await infer(`warm ${i}`)).instanceId);
      expect(seen).toEqual(new Set(['worker-a.echo-v1', 'worker-b.echo-v1']));

      const TOTAL = 300;
      const CONCURRENCY = 4;
      const KILL_AT = 60;
      let next = 0;
      let inflight = 0;
      let inflightAtKill = -1;
      let killedAt = 0;
      let markedAt = 0;
      let stall: StallMeter | undefined;
      const failures: string[] = [];
      const answers: Array<{ startedAt: number; instanceId: string; text: string }> = [];
      let watching: Promise<void> | undefined;

      const one = async (i: number) => {
        if (i === KILL_AT) {
          inflightAtKill = inflight;
          killedAt = performance.now();
          stall = stallMeter();
          a.kill('SIGKILL');
          watching = waitFor(
            async () => {
              const w = await workerById('worker-a');
              return w?.status === 'UNHEALTHY' && w.instances.every((x) => x.status === 'FAILED' && x.statusReason === 'worker heartbeat lost');
            },
            10_000,
            'worker-a to be marked unhealthy',
            20,
          ).then(() => {
            markedAt = performance.now();
            stall!.stop();
          });
        }
        const startedAt = performance.now();
        inflight++;
        try {
          const r = await infer(`req ${i}`);
          answers.push({ startedAt, ...r });
        } catch (err) {
          failures.push(String(err));
        } finally {
          inflight--;
        }
      };
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < TOTAL) await one(next++);
        }),
      );
      await watching;

      if (process.env.WORKER_TEST_VERBOSE)
        console.log({
          failures: failures.length,
          inflightAtKill,
          detectMs: Math.round(markedAt - killedAt),
          afterMark: answers.filter((r) => r.startedAt > markedAt).length,
        });
      expect(answers.length + failures.length).toBe(TOTAL);
      // only requests in flight at the kill may fail (the router retries them elsewhere, so usually none do)
      expect(failures.length, failures.join('\n')).toBeLessThanOrEqual(Math.max(inflightAtKill, 0));
      for (const r of answers) expect(r.text.startsWith(r.instanceId === 'worker-a.echo-v1' ? 'worker-a:' : 'worker-b:')).toBe(true);
      // detection: within three heartbeat intervals of the kill (+ the test's own polling slack), in the
      // gateway's own time (what a busy machine kept this process from running is not counted)
      expect(markedAt - killedAt).toBeLessThan(3 * INTERVAL + 150 + stall!.ms);
      // nothing started after the marking went to the dead worker
      expect(answers.filter((r) => r.startedAt > markedAt && r.instanceId === 'worker-a.echo-v1')).toEqual([]);
      // and once marked, the dead worker gets no traffic at all
      const after = await Promise.all(Array.from({ length: 40 }, (_, i) => infer(`after mark ${i}`)));
      expect(after.every((r) => r.instanceId === 'worker-b.echo-v1')).toBe(true);

      const all = await gw.gql<{ model: { status: string } }>(`{ model(id: "echo") { status } }`);
      expect(all.data!.model.status).toBe('READY');

      // restart (same name, new port) → back to ready and taking traffic
      const a2 = spawnWorker({ gateway: gw.url, name: 'worker-a', heartbeatIntervalMs: INTERVAL });
      procs.push(a2);
      const back = await waitFor(readyInstance('worker-a'), 45_000, 'worker-a to come back');
      expect(back.instances[0]).toMatchObject({ id: 'worker-a.echo-v1', status: 'READY', statusReason: null });
      const again = new Set<string>();
      await waitFor(
        async () => {
          again.add((await infer('again')).instanceId);
          return again.has('worker-a.echo-v1');
        },
        10_000,
        'traffic to the restarted worker-a',
      );
    },
    120_000,
  );

  it('SIGTERM deregisters the worker (its instance leaves routing) and the process exits 0', async () => {
    const b = procs[1]!;
    b.kill('SIGTERM');
    expect(await b.exited).toBe(0);
    const w = await workerById('worker-b');
    expect(w).toMatchObject({ status: 'STOPPED' });
    expect(w!.instances[0]).toMatchObject({ status: 'UNLOADED', statusReason: 'worker stopped' });
    for (let i = 0; i < 10; i++) expect((await infer(`after ${i}`)).instanceId).toBe('worker-a.echo-v1');
  });
});
