/**
 * `capibara-mcp worker` as a real process with a worker credential: it serves the models assigned
 * to it, logs the refusal of the others and keeps serving; its HTTP server answers only the gateway.
 */
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { FAST_HEALTH, prepareWorker, spawnWorker, waitFor, WORKERS_QUERY, type WorkerInfo, type WorkerProcess } from './support.ts';

const AUTH_PLUGIN = fileURLToPath(new URL('./token-auth-plugin.ts', import.meta.url));
const ADMIN = { authorization: 'Bearer cli-admin-token' };
const CLIENT = { authorization: 'Bearer cli-client-token' };
const PRINCIPALS = {
  'cli-admin-token': { id: 'root', roles: ['admin'] },
  'cli-client-token': { id: 'app', roles: ['developer'] },
  'cli-worker-w3-token': { id: 'key-w3', roles: ['worker'], worker: 'w3' },
};

describe('the worker CLI with a worker credential', () => {
  let gw: TestGateway;
  let worker: WorkerProcess;
  const workerById = async (id: string) => (await gw.gql<{ workers: WorkerInfo[] }>(WORKERS_QUERY, {}, ADMIN)).data!.workers.find((w) => w.id === id);

  beforeAll(async () => {
    gw = await startTestGateway({
      router: FAST_HEALTH,
      auth: { enabled: true, strategies: ['test-token-auth'] },
      plugins: [{ use: AUTH_PLUGIN, options: { principals: PRINCIPALS } }],
    });
    await prepareWorker(gw, 'w3', [{ id: 'echo' }], ADMIN);
    // "echo-extra" exists but is not assigned to w3; "echo-ghost" does not exist
    const extra = await gw.gql(`mutation { registerModel(input: { id: "echo-extra", task: GENERATE }) { id } }`, {}, ADMIN);
    expect(extra.errors).toBeUndefined();
    worker = spawnWorker({
      gateway: gw.url,
      name: 'w3',
      token: 'cli-worker-w3-token',
      models: [
        { id: 'echo', version: 'v1', backend: 'echo', task: 'generate' },
        { id: 'echo-extra', version: 'v1', backend: 'echo', task: 'generate' },
        { id: 'echo-ghost', version: 'v1', backend: 'echo', task: 'generate' },
      ],
    });
    await waitFor(async () => (await workerById('w3'))?.instances.some((i) => i.status === 'READY'), 45_000, 'w3 to register', 100);
  }, 90_000);

  afterAll(async () => {
    worker?.kill('SIGKILL');
    await worker?.exited;
    await gw?.close();
  });

  it('serves the assigned model, logs the refused ones and creates nothing', async () => {
    const w = (await workerById('w3'))!;
    expect(w.instances.map((i) => [i.id, i.status])).toEqual([['w3.echo-v1', 'READY']]);
    expect(w.assignedModels).toEqual(['echo']);
    const r = await gw.gql<{ infer: { text: string; instanceId: string } }>(
      `mutation { infer(model: "echo", input: { prompt: "hi" }) { text instanceId } }`,
      {},
      CLIENT,
    );
    expect(r.data?.infer).toEqual({ text: 'w3:hi', instanceId: 'w3.echo-v1' });
    expect((await gw.gql(`{ model(id: "echo-ghost") { id } }`, {}, ADMIN)).data).toEqual({ model: null });
    const extra = await gw.gql<{ infer: unknown }>(`mutation { infer(model: "echo-extra", input: { prompt: "hi" }) { text } }`, {}, CLIENT);
    expect(extra.errors?.[0]?.extensions?.code).toBe('MCP_NO_HEALTHY_INSTANCE');
    // The refusals are logged as the worker's registration answers arrive, possibly after the allowed instance is ready.
    const refusals = () =>
      worker
        .output()
        .split('\n')
        .filter((l) => l.includes('the gateway refused this instance'))
        .map((l) => JSON.parse(l) as { instance: string; code: string })
        .map((l) => [l.instance, l.code])
        .sort();
    await expect.poll(refusals, { timeout: 30_000, interval: 100 }).toEqual([
      ['echo-extra-v1', 'MCP_FORBIDDEN'],
      ['echo-ghost-v1', 'MCP_FORBIDDEN'],
    ]);
    expect(worker.output()).not.toContain('cli-worker-w3-token');
  });

  it("answers only calls bearing the gateway's call token (401 to anyone else); liveness stays open", async () => {
    const { endpoint } = (await workerById('w3'))!;
    const direct = await request(`${endpoint}/worker/v1/instances/echo-v1/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer cli-worker-w3-token' },
      body: JSON.stringify({ task: 'generate', prompt: 'bypass' }),
    });
    expect([direct.statusCode, ((await direct.body.json()) as { error: { code: string } }).error.code]).toEqual([401, 'MCP_UNAUTHENTICATED']);
    const health = await request(`${endpoint}/worker/v1/instances/echo-v1/health`);
    expect(health.statusCode).toBe(401);
    await health.body.dump();
    const live = await request(`${endpoint}/worker/v1/health`);
    expect(live.statusCode).toBe(200);
    await live.body.dump();
    // the gateway's own token (derived from the stored, non-secret session) opens it: the 401s were about the token alone
    const { options } = (await gw.services.registry.getInstance('w3.echo-v1'))!;
    const token = await gw.services.workers.callToken('w3', (options as { session: string }).session, endpoint);
    const withToken = await request(`${endpoint}/worker/v1/instances/echo-v1/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ task: 'generate', prompt: 'gateway' }),
    });
    expect([withToken.statusCode, ((await withToken.body.json()) as { text: string }).text]).toEqual([200, 'w3:gateway']);
    expect(worker.output()).not.toContain(token);
  });

  it('an assignment made while the worker runs is picked up at its next heartbeats', async () => {
    const a = await gw.gql(`mutation { assignWorkerModels(worker: "w3", models: ["echo-extra"]) { models } }`, {}, ADMIN);
    expect(a.errors).toBeUndefined();
    await waitFor(
      async () => (await workerById('w3'))?.instances.some((i) => i.id === 'w3.echo-extra-v1' && i.status === 'READY'),
      20_000,
      'w3 to serve echo-extra',
      100,
    );
    const r = await gw.gql<{ infer: { text: string } }>(`mutation { infer(model: "echo-extra", input: { prompt: "now" }) { text } }`, {}, CLIENT);
    expect(r.data?.infer.text).toBe('w3:now');
  });

  it('SIGTERM: the worker deregisters itself with its own credential and exits 0', async () => {
    worker.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    expect((await workerById('w3'))?.status).toBe('STOPPED');
  });
});
