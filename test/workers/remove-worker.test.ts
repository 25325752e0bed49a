/**
 * A worker that is gone can be removed: removeWorker (workers:manage, audited) refuses a worker that
 * still heartbeats, and removes a stopped one with its instances and model assignments; the
 * retention setting (workers.retentionMs) does the same for workers gone longer than that.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../../src/audit/types.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { startFakeWorker, type FakeWorker } from './fake-workers.ts';
import { prepareWorker, waitFor, WORKERS_QUERY, type GqlClient, type WorkerInfo } from './support.ts';

const AUTH_PLUGIN = fileURLToPath(new URL('./token-auth-plugin.ts', import.meta.url));
const PRINCIPALS = {
  'admin-token': { id: 'root', roles: ['admin'] },
  'operator-token': { id: 'ops', roles: ['operator'] },
  'developer-token': { id: 'app', roles: ['developer'] },
  'worker-token': { id: 'key-gone', roles: ['worker'], worker: 'gone-1' },
};
const as = (token: keyof typeof PRINCIPALS) => ({ authorization: `Bearer ${token}` });
const code = (r: { errors?: Array<{ extensions?: Record<string, unknown> }> }) => r.errors?.[0]?.extensions?.code;
const REMOVE = 'mutation($id: ID!) { removeWorker(id: $id) { id status } }';

async function startGateway(retentionMs: number): Promise<TestGateway> {
  return startTestGateway({
    auth: { enabled: true, strategies: ['test-token-auth'] },
    plugins: [{ use: AUTH_PLUGIN, options: { principals: PRINCIPALS } }],
    workers: { retentionMs },
  });
}

describe('removeWorker', () => {
  let gw: TestGateway;
  let worker: FakeWorker;
  const audit: AuditEntry[] = [];
  const admin: GqlClient = { gql: (q, v, h) => gw.gql(q, v, { ...as('admin-token'), ...h }) };
  const workers = async () => (await gw.gql<{ workers: WorkerInfo[] }>(WORKERS_QUERY, {}, as('operator-token'))).data!.workers;

  beforeAll(async () => {
    gw = await startGateway(0);
    const record = gw.services.audit.record.bind(gw.services.audit);
    gw.services.audit.record = async (e, ...rest) => {
      audit.push(e);
      return record(e, ...rest);
    };
    await prepareWorker(admin, 'gone-1', [{ id: 'm-r' }]);
    worker = await startFakeWorker(gw, as('worker-token'), 'gone', ['m-r-v1']);
    const r = await worker.register('gone-1', [{ model: 'm-r', remoteInstanceId: 'm-r-v1' }]);
    expect(r.answer.data?.registerWorker.instances.map((i) => i.accepted)).toEqual([true]);
  }, 60_000);
  afterAll(async () => {
    await worker?.close();
    await gw?.close();
  });

  it('refuses a live worker, the embedded one and callers without workers:manage', async () => {
    const live = await gw.gql(REMOVE, { id: 'gone-1' }, as('operator-token'));
    expect(code(live)).toBe('MCP_CONFLICT');
    expect(live.errors?.[0]?.message).toContain('still heartbeating');
    expect(code(await gw.gql(REMOVE, { id: 'embedded' }, as('operator-token')))).toBe('MCP_CONFLICT');
    expect(code(await gw.gql(REMOVE, { id: 'gone-1' }, as('developer-token')))).toBe('MCP_FORBIDDEN');
    // the worker's own credential may deregister it, not remove it
    expect(code(await gw.gql(REMOVE, { id: 'gone-1' }, as('worker-token')))).toBe('MCP_FORBIDDEN');
    expect(code(await gw.gql(REMOVE, { id: 'no-such' }, as('operator-token')))).toBe('MCP_WORKER_NOT_FOUND');
    expect(code(await gw.gql(REMOVE, { id: 'bad name!' }, as('operator-token')))).toBe('MCP_VALIDATION_FAILED');
    expect((await workers()).find((w) => w.id === 'gone-1')?.status).toBe('HEALTHY');
  });

  it('removes a stopped worker with its instances and assignments, audited', async () => {
    const infer = () =>
      gw.gql<{ infer: { text: string } }>('mutation { infer(model: "m-r", input: { prompt: "hi" }, timeoutMs: 5000) { text } }', {}, as('developer-token'));
    expect((await infer()).data?.infer.text).toBe('gone:hi');
    const stopped = await gw.gql<{ deregisterWorker: { status: string } }>('mutation { deregisterWorker(id: "gone-1") { status } }', {}, as('worker-token'));
    expect(stopped.data?.deregisterWorker.status).toBe('STOPPED');

    const removed = await gw.gql<{ removeWorker: { id: string; status: string } }>(REMOVE, { id: 'GONE-1' }, as('operator-token'));
    expect(removed.errors).toBeUndefined();
    expect(removed.data?.removeWorker).toEqual({ id: 'gone-1', status: 'STOPPED' });
    expect((await workers()).map((w) => w.id)).toEqual(['embedded']);
    const inst = await gw.gql<{ instance: unknown }>('{ instance(id: "gone-1.m-r-v1") { id } }', {}, as('operator-token'));
    expect(inst.data?.instance).toBeNull();
    expect(gw.services.instances.handle('gone-1.m-r-v1')).toBeUndefined();
    // the model stays (an operator's), without the worker's instance
    const model = await gw.gql<{ model: { versions: Array<{ instances: unknown[] }> } }>(
      '{ model(id: "m-r") { versions { instances { id } } } }',
      {},
      as('operator-token'),
    );
    expect(model.data?.model.versions.flatMap((v) => v.instances)).toEqual([]);
    expect(code(await infer())).toBe('MCP_NO_HEALTHY_INSTANCE');
    expect(audit.filter((e) => e.action === 'worker.remove')).toEqual([expect.objectContaining({ actor: 'ops', target: 'worker:gone-1', outcome: 'ok' })]);
    expect(audit.some((e) => e.action === 'mutation.removeWorker' && e.outcome === 'ok')).toBe(true);
    // the instance's removal is written with the registry change, in its transaction, by the same actor
    const rows = await gw.gql<{ auditLog: { nodes: Array<{ target: string; actor: string }> } }>(
      '{ auditLog(filter: { action: "instance.remove" }) { nodes { target actor } } }',
      {},
      as('admin-token'),
    );
    expect(rows.data?.auditLog.nodes).toEqual([{ target: 'gone-1.m-r-v1', actor: 'ops' }]);
    expect(code(await gw.gql(REMOVE, { id: 'gone-1' }, as('operator-token')))).toBe('MCP_WORKER_NOT_FOUND');

    // Started again under that name it is a new worker: its model must be assigned again.
    const again = await worker.register('gone-1', [{ model: 'm-r', remoteInstanceId: 'm-r-v1' }]);
    expect(again.answer.data?.registerWorker.instances.map((i) => [i.accepted, i.code])).toEqual([[false, 'MCP_FORBIDDEN']]);
  });
});

describe('removeWorker of a silent worker', () => {
  it('a worker whose heartbeats lapsed (UNHEALTHY) is gone, and removed', async () => {
    const gw = await startGateway(0);
    try {
      const reg = await gw.gql(
        'mutation($i: RegisterWorkerInput!) { registerWorker(input: $i) { worker { id } } }',
        { i: { name: 'silent-1', endpoint: 'http://127.0.0.1:9', session: 'session-0123456789ab', heartbeatIntervalMs: 50 } },
        as('admin-token'),
      );
      expect(reg.errors).toBeUndefined();
      const status = async () =>
        (await gw.gql<{ worker: { status: string } | null }>('{ worker(id: "silent-1") { status } }', {}, as('operator-token'))).data?.worker?.status;
      await waitFor(async () => (await status()) === 'UNHEALTHY', 15_000, 'the watchdog marks the silent worker unhealthy');
      const removed = await gw.gql<{ removeWorker: { id: string; status: string } }>(REMOVE, { id: 'silent-1' }, as('operator-token'));
      expect(removed.data?.removeWorker).toEqual({ id: 'silent-1', status: 'UNHEALTHY' });
      expect(await status()).toBeUndefined();
    } finally {
      await gw.close();
    }
  }, 60_000);
});

describe('workers.retentionMs', () => {
  it('removes workers gone longer than the retention, keeps live ones', async () => {
    const gw = await startGateway(300);
    const admin: GqlClient = { gql: (q, v, h) => gw.gql(q, v, { ...as('admin-token'), ...h }) };
    const live = await startFakeWorker(gw, as('admin-token'), 'live', ['m-k-v1']);
    const gone = await startFakeWorker(gw, as('worker-token'), 'gone', ['m-g-v1']);
    try {
      await prepareWorker(admin, 'live-1', [{ id: 'm-k' }]);
      await prepareWorker(admin, 'gone-1', [{ id: 'm-g' }]);
      // heartbeatIntervalMs 60 s: the live worker stays HEALTHY for the whole test
      expect((await live.register('live-1', [{ model: 'm-k', remoteInstanceId: 'm-k-v1' }])).answer.errors).toBeUndefined();
      expect((await gone.register('gone-1', [{ model: 'm-g', remoteInstanceId: 'm-g-v1' }])).answer.errors).toBeUndefined();
      await gw.gql('mutation { deregisterWorker(id: "gone-1") { id } }', {}, as('worker-token'));
      const ids = async () => (await gw.gql<{ workers: WorkerInfo[] }>(WORKERS_QUERY, {}, as('operator-token'))).data!.workers.map((w) => w.id);
      await waitFor(async () => !(await ids()).includes('gone-1'), 15_000, 'the stopped worker removed');
      expect(await ids()).toEqual(['embedded', 'live-1']);
      expect(gw.services.instances.handle('gone-1.m-g-v1')).toBeUndefined();
      expect(gw.services.instances.handle('live-1.m-k-v1')?.status).toBe('ready');
    } finally {
      await live.close();
      await gone.close();
      await gw.close();
    }
  }, 60_000);
});
