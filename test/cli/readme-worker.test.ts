/**
 * README "Running a worker", step by step as written: on a gateway with the default sign-in and the
 * demo model, an admin creates the worker key (1) and assigns capibara-mini (2); then (3) the
 * command from the README starts a worker with the shipped examples/worker.yaml, which registers
 * as gpu-1 and serves capibara-mini through the gateway.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { waitFor, WORKERS_QUERY, type WorkerInfo } from '../workers/support.ts';
import { ROOT, spawnCli, type LongRunning } from './support.ts';

describe('README: running a worker', () => {
  let gw: TestGateway;
  let admin: Record<string, string>;
  let worker: LongRunning | undefined;

  beforeAll(async () => {
    gw = await startTestGateway({ auth: { enabled: true }, demo: { enabled: true } });
    admin = await gw.login();
  }, 120_000);

  afterAll(async () => {
    worker?.child.kill('SIGKILL');
    await worker?.exited;
    await gw?.close();
  });

  it('steps 1-3 as written bring up worker gpu-1 serving capibara-mini', async () => {
    // 1. the worker's key
    const key = await gw.gql<{ createApiKey: { key: string } }>(
      `mutation { createApiKey(input: { name: "gpu-1 worker", roles: ["worker"], worker: "gpu-1" }) { key } }`,
      {},
      admin,
    );
    expect(key.errors).toBeUndefined();
    // 2. the models it may serve (capibara-mini exists after the start: the demo model)
    const assigned = await gw.gql(`mutation { assignWorkerModels(worker: "gpu-1", models: ["capibara-mini"]) { worker models } }`, {}, admin);
    expect(assigned.errors).toBeUndefined();
    // 3. the README's command; only the gateway's address and a free port differ on a test machine
    worker = spawnCli(['worker', '--gateway', gw.url, '--port', '0', '--config', join(ROOT, 'examples/worker.yaml')], {
      env: { MCP_WORKER__TOKEN: key.data!.createApiKey.key },
    });
    const w = await waitFor(
      async () => {
        const found = (await gw.gql<{ workers: WorkerInfo[] }>(WORKERS_QUERY, {}, admin)).data?.workers.find((x) => x.id === 'gpu-1');
        return found?.instances.some((i) => i.status === 'READY') ? found : undefined;
      },
      90_000,
      'worker gpu-1 to register its instance',
      200,
    );
    expect(w.instances.map((i) => [i.id, i.modelId, i.status])).toContainEqual(['gpu-1.capibara-mini-v1', 'capibara-mini', 'READY']);
    expect(worker.output()).not.toContain(key.data!.createApiKey.key);
    // The gateway's own demo instance serves capibara-mini too: the router sends the worker part of the traffic.
    const servedBy = new Set<string>();
    for (let i = 0; i < 60 && !servedBy.has('gpu-1.capibara-mini-v1'); i++) {
      const r = await gw.gql<{ infer: { text: string; instanceId: string } }>(
        `mutation { infer(model: "capibara-mini", input: { prompt: "The capybara", parameters: { maxTokens: 2, seed: 1 } }) { text instanceId } }`,
        {},
        admin,
      );
      expect(r.errors).toBeUndefined();
      expect(r.data!.infer.text.length).toBeGreaterThan(0);
      servedBy.add(r.data!.infer.instanceId);
    }
    expect(servedBy).toContain('gpu-1.capibara-mini-v1');
  }, 150_000);
});
