/**
 * Workers bound to their identity (issue 10, the traffic hijack): a worker credential acts only as
 * its own worker, a registration serves only the models an operator assigned and never creates one,
 * and a worker's HTTP server serves only its gateway. Real gateway on loopback (PGlite and
 * PostgreSQL), worker HTTP servers in-process, an attacker's server that answers anything.
 */
import { fileURLToPath } from 'node:url';
import { createClient } from 'graphql-ws';
import { request } from 'undici';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../../src/audit/types.ts';
import { STORAGES, startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { newWorkerSession } from '../../src/workers/call-auth.ts';
import { registerAs, startAttackerServer, startFakeWorker, type FakeWorker } from './fake-workers.ts';
import { FAST_HEALTH, prepareWorker, waitFor, WORKERS_QUERY, type GqlClient, type WorkerInfo } from './support.ts';

const AUTH_PLUGIN = fileURLToPath(new URL('./token-auth-plugin.ts', import.meta.url));
const TOKENS = {
  admin: 'admin-token',
  operator: 'operator-token',
  developer: 'developer-token',
  w1: 'worker-w1-token',
  w2: 'worker-w2-token',
  w2x: 'worker-w2x-token',
  unbound: 'worker-unbound-token',
};
const PRINCIPALS = {
  [TOKENS.admin]: { id: 'root', roles: ['admin'] },
  [TOKENS.operator]: { id: 'ops', roles: ['operator'] },
  [TOKENS.developer]: { id: 'app', roles: ['developer'] },
  [TOKENS.w1]: { id: 'key-w1', roles: ['worker'], worker: 'W1' },
  [TOKENS.w2]: { id: 'key-w2', roles: ['worker'], worker: 'w2' },
  [TOKENS.w2x]: { id: 'key-w2x', roles: ['worker'], worker: 'w2.x' },
  [TOKENS.unbound]: { id: 'key-unbound', roles: ['worker'] },
};
const as = (who: keyof typeof TOKENS) => ({ authorization: `Bearer ${TOKENS[who]}` });
const code = (r: { errors?: Array<{ extensions?: Record<string, unknown> }> }) => r.errors?.[0]?.extensions?.code;

describe.each(STORAGES)('workers bound to their identity (%s)', (storageKind) => {
  let gw: TestGateway;
  let w1: FakeWorker;
  let w2: FakeWorker;
  const audit: AuditEntry[] = [];
  const workerById = async (id: string) => (await gw.gql<{ workers: WorkerInfo[] }>(WORKERS_QUERY, {}, as('operator'))).data!.workers.find((w) => w.id === id);
  const infer = (model: string, prompt: string) =>
    gw.gql<{ infer: { text: string; instanceId: string } }>(
      `mutation($m: ID!, $p: String!) { infer(model: $m, input: { prompt: $p }, timeoutMs: 5000) { text instanceId } }`,
      { m: model, p: prompt },
      as('developer'),
    );
  /** Creates models (models:write) and assigns them; the `operator` role's own rights are checked below with assign/unassign. */
  const admin: GqlClient = { gql: (q, v, h) => gw.gql(q, v, { ...as('admin'), ...h }) };
  const operator: GqlClient = { gql: (q, v, h) => gw.gql(q, v, { ...as('operator'), ...h }) };

  beforeAll(async () => {
    gw = await startTestGateway({
      storageKind,
      router: FAST_HEALTH,
      auth: { enabled: true, strategies: ['test-token-auth'] },
      plugins: [{ use: AUTH_PLUGIN, options: { principals: PRINCIPALS } }],
    });
    // Every entry also reaches the real audit log; the test reads what was recorded.
    const log = gw.services.audit;
    const record = log.record.bind(log);
    log.record = async (e, ...rest) => {
      audit.push(e);
      return record(e, ...rest);
    };
    // the operator flow: models first, then assignments, then the workers start with their own keys
    await prepareWorker(admin, 'W1', [{ id: 'm-a' }]);
    await prepareWorker(admin, 'w2', [{ id: 'm-b' }]);
    await prepareWorker(admin, 'w2.x', [{ id: 'm-b' }]);
    w2 = await startFakeWorker(gw, as('w2'), 'w2', ['m-b-v1', 'x.y']);
    const r2 = await w2.register('w2', [
      { model: 'm-b', remoteInstanceId: 'm-b-v1' },
      { model: 'm-b', remoteInstanceId: 'x.y' },
    ]);
    expect(r2.answer.errors).toBeUndefined();
    expect(r2.answer.data!.registerWorker.instances.map((i) => [i.instanceId, i.accepted])).toEqual([
      ['w2.m-b-v1', true],
      ['w2.x.y', true],
    ]);
    w1 = await startFakeWorker(gw, as('w1'), 'w1', ['m-a-v1', 'm-b-v1', 'm-new-v1']);
  }, 60_000);

  afterAll(async () => {
    await w1?.close();
    await w2?.close();
    await gw?.close();
  });

  it('a worker credential cannot register, heartbeat, deregister, get the call token of, or read the commands of another worker', async () => {
    const w2Before = await workerById('w2');
    const denialsBefore = audit.filter((e) => e.action === 'authz.denied').length;

    const takeName = await registerAs(gw, as('w1'), {
      name: 'W2',
      endpoint: w1.url,
      session: newWorkerSession(),
      instances: [{ model: 'm-b', remoteInstanceId: 'm-b-v1' }],
    });
    expect(takeName.token).toBeUndefined();
    expect(code(takeName.answer)).toBe('MCP_FORBIDDEN');
    expect(code(await gw.gql(`mutation { workerHeartbeat(id: "w2") { id } }`, {}, as('w1')))).toBe('MCP_FORBIDDEN');
    expect(code(await gw.gql(`mutation { deregisterWorker(id: "w2") { id } }`, {}, as('w1')))).toBe('MCP_FORBIDDEN');

    const subscription = await new Promise<unknown>((resolve) => {
      const client = createClient({ url: `${gw.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, connectionParams: as('w1'), retryAttempts: 0 });
      client.subscribe(
        { query: `subscription { workerCommands(workerId: "w2") { id } }` },
        { next: (v) => resolve(v), error: (e) => resolve(e), complete: () => resolve('complete') },
      );
      setTimeout(() => resolve('no answer'), 5000).unref();
    }).finally(() => undefined);
    expect(JSON.stringify(subscription)).toContain('MCP_FORBIDDEN');

    // w2 is untouched: same endpoint, still healthy, its instances still served by it
    const w2After = await workerById('w2');
    expect([w2After?.status, w2After?.endpoint]).toEqual(['HEALTHY', w2Before!.endpoint]);
    expect((await infer('m-b', 'still w2')).data?.infer.text).toBe('w2:still w2');

    // every refusal left an authz.denied audit entry naming the operation and the credential
    const denials = audit.filter((e) => e.action === 'authz.denied').slice(denialsBefore);
    expect(denials.map((e) => e.details?.operation)).toEqual(
      expect.arrayContaining(['worker.call-token', 'worker.register', 'worker.heartbeat', 'worker.deregister', 'worker.commands']),
    );
    // (the worker checks name the worker refused; the GraphQL layer adds one row per refused field, `graphql:<field>`)
    for (const d of denials) {
      expect(d).toMatchObject({ actor: 'key-w1', outcome: 'denied' });
      expect(d.target === 'worker:w2' || d.target?.startsWith('graphql:')).toBe(true);
    }
    expect(JSON.stringify(audit)).not.toContain(TOKENS.w1);

    // a worker credential bound to no worker may not register at all; other roles lack workers:register
    const unbound = await registerAs(gw, as('unbound'), { name: 'free', endpoint: w1.url, session: newWorkerSession(), instances: [] });
    expect(code(unbound.answer)).toBe('MCP_FORBIDDEN');
    expect(code((await registerAs(gw, as('developer'), { name: 'dev', endpoint: w1.url, session: newWorkerSession(), instances: [] })).answer)).toBe(
      'MCP_FORBIDDEN',
    );
    expect(code((await registerAs(gw, {}, { name: 'anon', endpoint: w1.url, session: newWorkerSession(), instances: [] })).answer)).toBe('MCP_UNAUTHENTICATED');
    expect(await workerById('free')).toBeUndefined();
  });

  it('a worker serves only assigned models: others are refused per instance, no model is created, the assigned one is served', async () => {
    const r = await w1.register('W1', [
      { model: 'm-a', remoteInstanceId: 'm-a-v1' },
      { model: 'm-b', remoteInstanceId: 'm-b-v1' },
      { model: 'm-new', remoteInstanceId: 'm-new-v1' },
    ]);
    expect(r.answer.errors).toBeUndefined();
    expect(r.answer.data!.registerWorker.instances).toEqual([
      { remoteInstanceId: 'm-a-v1', model: 'm-a', accepted: true, instanceId: 'w1.m-a-v1', code: null, message: null },
      {
        remoteInstanceId: 'm-b-v1',
        model: 'm-b',
        accepted: false,
        instanceId: null,
        code: 'MCP_FORBIDDEN',
        message: expect.stringContaining('not assigned to worker "w1"'),
      },
      {
        remoteInstanceId: 'm-new-v1',
        model: 'm-new',
        accepted: false,
        instanceId: null,
        code: 'MCP_FORBIDDEN',
        message: expect.stringContaining('not assigned to worker "w1"'),
      },
    ]);
    expect(audit.filter((e) => e.action === 'worker.model_refused' && e.actor === 'key-w1').map((e) => e.model)).toEqual(['m-b', 'm-new']);

    // nothing was created or attached
    expect((await gw.gql(`{ model(id: "m-new") { id } }`, {}, as('operator'))).data).toEqual({ model: null });
    const w1View = await waitFor(
      async () => {
        const w = await workerById('w1');
        return w?.instances[0]?.status === 'READY' ? w : undefined;
      },
      10_000,
      'w1.m-a-v1 to be ready',
    );
    expect(w1View.instances.map((i) => i.id)).toEqual(['w1.m-a-v1']);
    expect(w1View.assignedModels).toEqual(['m-a']);
    const mb = await gw.gql<{ model: { versions: Array<{ instances: Array<{ id: string }> }> } }>(
      `{ model(id: "m-b") { versions { instances { id } } } }`,
      {},
      as('operator'),
    );
    expect(mb.data!.model.versions.flatMap((v) => v.instances.map((i) => i.id)).sort()).toEqual(['w2.m-b-v1', 'w2.x.y']);

    // the assigned model is served by w1; the other model's prompts never reach w1
    expect((await infer('m-a', 'hello')).data?.infer).toEqual({ text: 'w1:hello', instanceId: 'w1.m-a-v1' });
    for (let i = 0; i < 20; i++) expect((await infer('m-b', `for w2 ${i}`)).data?.infer.text).toBe(`w2:for w2 ${i}`);
    expect(w1.prompts.filter((p) => p.instance !== 'm-a-v1')).toEqual([]);

    // a worker credential cannot create models or assign itself any
    expect(code(await gw.gql(`mutation { registerModel(input: { id: "m-evil", task: GENERATE }) { id } }`, {}, as('w1')))).toBe('MCP_FORBIDDEN');
    expect(code(await gw.gql(`mutation { assignWorkerModels(worker: "W1", models: ["m-b"]) { models } }`, {}, as('w1')))).toBe('MCP_FORBIDDEN');
  });

  it("a worker cannot take over another worker's instance through a colliding instance id", async () => {
    // worker "w2.x" (m-b assigned) reports remote id "y": gateway id "w2.x.y", which is w2's instance "x.y"
    const w2x = await startFakeWorker(gw, as('w2x'), 'w2x', ['y']);
    try {
      const r = await w2x.register('w2.x', [{ model: 'm-b', remoteInstanceId: 'y' }]);
      expect(r.answer.data!.registerWorker.instances).toEqual([
        {
          remoteInstanceId: 'y',
          model: 'm-b',
          accepted: false,
          instanceId: null,
          code: 'MCP_CONFLICT',
          message: 'instance id "w2.x.y" belongs to worker "w2"',
        },
      ]);
      const w2View = await workerById('w2');
      expect(w2View!.instances.find((i) => i.id === 'w2.x.y')).toMatchObject({ workerId: 'w2', endpoint: w2.url, status: 'READY' });
    } finally {
      await w2x.close();
    }
  });

  it("a fake worker (W1's key, an attacker's endpoint) never receives prompts for models not assigned to W1", async () => {
    const attacker = await startAttackerServer();
    try {
      const r = await registerAs(gw, as('w1'), {
        name: 'W1',
        endpoint: attacker.url,
        session: newWorkerSession(),
        instances: [
          { model: 'm-b', remoteInstanceId: 'm-b-v1' },
          { model: 'm-b', remoteInstanceId: 'm-b-copy' },
        ],
      });
      expect(r.answer.data!.registerWorker.instances.map((i) => [i.model, i.accepted, i.code])).toEqual([
        ['m-b', false, 'MCP_FORBIDDEN'],
        ['m-b', false, 'MCP_FORBIDDEN'],
      ]);
      const prompts = Array.from({ length: 30 }, (_, i) => `customer secret ${i}`);
      for (const p of prompts) expect((await infer('m-b', p)).data?.infer.text).toBe(`w2:${p}`);
      expect(attacker.seen.filter((s) => s.path.includes('m-b') || prompts.some((p) => s.body.includes(p)))).toEqual([]);
      // w1's own (assigned) instance now points at the attacker: that is W1's traffic, and W1's key is the attacker's
      expect((await workerById('w1'))!.endpoint).toBe(attacker.url);
    } finally {
      await attacker.close();
    }
  });

  it("a worker's HTTP server refuses anyone without the gateway's call token", async () => {
    const direct = await request(`${w2.url}/worker/v1/instances/m-b-v1/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ task: 'generate', prompt: 'bypass the gateway' }),
    });
    expect([direct.statusCode, ((await direct.body.json()) as { error: { code: string } }).error.code]).toEqual([401, 'MCP_UNAUTHENTICATED']);
    // W1's own call token (it got one for its own session and endpoint) does not open w2
    const withOther = await request(`${w2.url}/worker/v1/instances/m-b-v1/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${w1.token()!}` },
      body: JSON.stringify({ task: 'generate', prompt: 'bypass the gateway' }),
    });
    expect(withOther.statusCode).toBe(401);
    await withOther.body.dump();
    expect(w2.prompts.some((p) => p.prompt === 'bypass the gateway')).toBe(false);
    // the token is never stored: not in the instance options, not anywhere in the database
    const dump = JSON.stringify(await gw.services.database.db.execute('select * from instances'));
    expect(dump).toContain(w2.session);
    expect(dump).not.toContain(w2.token()!);
  });

  it('unassigning a model takes the worker’s instances of it out of routing at once', async () => {
    const r = await operator.gql<{ unassignWorkerModels: { worker: string; models: string[] } }>(
      `mutation { unassignWorkerModels(worker: "w2.x", models: ["m-b"]) { worker models } }`,
    );
    expect(r.data!.unassignWorkerModels).toEqual({ worker: 'w2.x', models: [] });
    const before = (await workerById('w2'))!.instances.length;
    const off = await operator.gql<{ unassignWorkerModels: { models: string[] } }>(
      `mutation { unassignWorkerModels(worker: "w2", models: ["m-b"]) { models } }`,
    );
    expect(off.data!.unassignWorkerModels.models).toEqual([]);
    const w = await workerById('w2');
    expect(w!.instances).toHaveLength(before);
    expect(w!.instances.every((i) => i.status === 'UNLOADED' && i.statusReason === 'model unassigned from the worker')).toBe(true);
    expect(code(await infer('m-b', 'anyone?'))).toBe('MCP_NO_HEALTHY_INSTANCE');
    // and its next registration is refused for that model
    const again = await w2.register('w2', [{ model: 'm-b', remoteInstanceId: 'm-b-v1' }]);
    expect(again.answer.data!.registerWorker.instances[0]).toMatchObject({ accepted: false, code: 'MCP_FORBIDDEN' });
  });
});
