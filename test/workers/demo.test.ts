import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { prepareWorker, spawnWorker, waitFor, WORKERS_QUERY, type WorkerInfo, type WorkerProcess } from './support.ts';

describe('a worker with the default configuration', () => {
  let gw: TestGateway;
  let worker: WorkerProcess;
  const dir = mkdtempSync(join(tmpdir(), 'mcp-demo-worker-'));

  beforeAll(async () => {
    gw = await startTestGateway();
  });

  afterAll(async () => {
    worker?.kill('SIGKILL');
    await worker?.exited;
    await gw?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the demo model capibara-mini on the tfjs backend once an operator registered and assigned it; the gateway routes to it', async () => {
    await prepareWorker(gw, 'tfjs-host', [{ id: 'capibara-mini' }]);
    worker = spawnWorker({
      gateway: gw.url,
      name: 'demo',
      raw: {
        storage: { dataDir: join(dir, 'data') },
        log: { level: 'info' },
        worker: { gateway: gw.url, port: 0, name: 'tfjs-host', heartbeatIntervalMs: 1000 },
      },
    });
    const w = await waitFor(
      async () => {
        const found = (await gw.gql<{ workers: WorkerInfo[] }>(WORKERS_QUERY)).data!.workers.find((x) => x.id === 'tfjs-host');
        return found?.instances[0]?.status === 'READY' ? found : undefined;
      },
      40_000,
      'the tfjs worker to register',
      100,
    );
    expect(w.instances[0]).toMatchObject({ id: 'tfjs-host.capibara-mini-v1', modelId: 'capibara-mini', backend: 'worker' });
    const r = await gw.gql<{ infer: { text: string; instanceId: string; runtime: string } }>(
      `mutation { infer(model: "capibara-mini", input: { prompt: "The capybara", parameters: { maxTokens: 8, seed: 1 } }) { text instanceId runtime } }`,
    );
    expect(r.errors).toBeUndefined();
    expect(r.data!.infer.instanceId).toBe('tfjs-host.capibara-mini-v1');
    expect(r.data!.infer.runtime).toMatch(/^tfjs-/);
    expect(r.data!.infer.text.length).toBeGreaterThan(0);
  }, 60_000);
});
