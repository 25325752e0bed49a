import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { auditConfigSchema } from '../../src/audit/config.ts';
import { openDatabase } from '../../src/db/client.ts';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { STORAGES, startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { Registry } from 'prom-client';
import { as, query, ROLE_AUTH } from './support.ts';

const SECRET = 'sk-live-SECRET-4242';
const LOG = `query($f: AuditFilter, $first: Int, $after: String) {
  auditLog(filter: $f, first: $first, after: $after) {
    nodes { id at actor actorVia action target model outcome ip requestId latencyMs details prevHash hash }
    pageInfo { endCursor hasNextPage }
  }
}`;
const VERIFY = `query($from: ID, $limit: Int) { verifyAuditChain(fromId: $from, limit: $limit) { ok checked firstBrokenId lastId lastHash } }`;

interface Row {
  id: string;
  actor: string | null;
  action: string;
  target: string | null;
  model: string | null;
  outcome: string;
  ip: string | null;
  requestId: string | null;
  latencyMs: number | null;
  details: Record<string, unknown>;
}
interface Verdict {
  ok: boolean;
  checked: number;
  firstBrokenId: string | null;
}

describe.each(STORAGES)('audit log on %s', (storageKind) => {
  let openai: FakeOpenAIServer;
  let gw: TestGateway;
  const rows = async (filter: Record<string, unknown> = {}, first = 500): Promise<Row[]> => {
    const r = await gw.gql<{ auditLog: { nodes: Row[] } }>(LOG, { f: filter, first }, as('auditor'));
    expect(r.errors).toBeUndefined();
    return r.data!.auditLog.nodes;
  };
  const verify = async (vars: Record<string, unknown> = {}): Promise<Verdict> => {
    const r = await gw.gql<{ verifyAuditChain: Verdict }>(VERIFY, vars, as('auditor'));
    expect(r.errors).toBeUndefined();
    return r.data!.verifyAuditChain;
  };
  const sql = <T = Record<string, unknown>>(text: string) => query<T>(gw.services.database, text);

  const secretKeyBefore = process.env.MCP_SECRET_KEY;
  beforeAll(async () => {
    // A literal upstream apiKey is stored encrypted with this key (without one it is refused).
    process.env.MCP_SECRET_KEY = randomBytes(32).toString('base64');
    openai = await startFakeOpenAI({ models: ['fake-model'], tokens: ['Hi', '!'] });
    gw = await startTestGateway({
      storageKind,
      defaultPlugins: false,
      auth: { enabled: true, strategies: ['test-header-auth'] },
      plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }, { use: ROLE_AUTH, options: { defaultUser: null } }],
      router: { healthCheck: { enabled: false } },
      // durable: an answer is sent only once its inference record and audit row are committed.
      audit: { inference: 'durable' },
    });
  });
  afterAll(async () => {
    if (secretKeyBefore === undefined) delete process.env.MCP_SECRET_KEY;
    else process.env.MCP_SECRET_KEY = secretKeyBefore;
    await gw?.close();
    await openai?.close();
  });

  it('records admin changes (in their own transaction), mutations, denials, logins and inference calls; never a secret', async () => {
    const register = `mutation($i: RegisterModelInput!) { registerModel(input: $i) { id } }`;
    const input = {
      id: 'chat',
      task: 'CHAT',
      versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: openai.url, options: { model: 'fake-model', apiKey: SECRET } }] }],
    };
    const reg = await gw.gql(register, { i: input }, as('alice', 'admin', 'req-register-1'));
    expect(reg.errors).toBeUndefined();
    // A viewer may neither change models nor read the audit log: both denials are recorded.
    const denied = await gw.gql('mutation { deleteModel(id: "chat") { id } }', {}, as('bob', 'viewer', 'req-denied-1'));
    expect(denied.errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
    const peek = await gw.gql(LOG, {}, as('bob', 'viewer', 'req-denied-2'));
    expect(peek.errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
    // An anonymous OpenAI call: 401, recorded by the HTTP server.
    const anon = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'req-anon-1' },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hello' }] }),
    });
    expect(anon.status).toBe(401);
    // What the auth strategies record for a login (through services.audit.record): secrets never reach the row.
    await gw.services.audit.record({
      actor: 'alice',
      action: 'auth.login',
      outcome: 'failed',
      ip: '203.0.113.7',
      details: { reason: 'bad password', password: 'hunter2', nested: { refreshToken: 'rt-123', apiKey: 'k-1' }, header: 'Bearer abc.def' },
    });
    // An inference call: with audit.inference durable its rows are committed before the answer.
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...as('carol', 'developer', 'req-infer-1') },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hello' }] }),
    });
    expect(res.status).toBe(200);
    await res.json();
    const [record] = await sql(`select model_id, principal_id, ok from inferences where id = 'req-infer-1'`);
    expect(record).toEqual({ model_id: 'chat', principal_id: 'carol', ok: true });
    const [inferenceRow] = await sql(`select action, actor, model, outcome from audit_entries where request_id = 'req-infer-1'`);
    expect(inferenceRow).toEqual({ action: 'inference', actor: 'carol', model: 'chat', outcome: 'ok' });

    await gw.services.audit.flush();
    const all = await rows();
    const change = all.find((r) => r.action === 'model.register' && r.requestId === 'req-register-1');
    expect(change).toMatchObject({ actor: 'alice', target: 'chat', model: 'chat', outcome: 'OK', details: { versions: ['v1'], instances: 1 } });
    expect(change!.ip).toMatch(/127\.0\.0\.1$/);
    const mutation = all.find((r) => r.action === 'mutation.registerModel' && r.requestId === 'req-register-1');
    expect(mutation).toMatchObject({ actor: 'alice', target: 'chat', model: 'chat', outcome: 'OK' });
    expect(mutation!.latencyMs).toBeGreaterThan(0);
    const denials = all.filter((r) => r.action === 'authz.denied' && r.actor === 'bob');
    expect(denials.map((r) => [r.requestId, r.target, r.outcome]).sort()).toEqual([
      ['req-denied-1', 'graphql:deleteModel', 'DENIED'],
      ['req-denied-2', 'graphql:auditLog', 'DENIED'],
    ]);
    expect(all.find((r) => r.requestId === 'req-anon-1')).toMatchObject({
      action: 'authz.denied',
      actor: null,
      target: 'POST /v1/chat/completions',
      outcome: 'DENIED',
      details: { code: 'MCP_UNAUTHENTICATED' },
    });
    const login = all.find((r) => r.action === 'auth.login')!;
    expect(login.details).toEqual({
      reason: 'bad password',
      password: '[redacted]',
      nested: { refreshToken: '[redacted]', apiKey: '[redacted]' },
      header: '[redacted]',
    });
    const inference = all.find((r) => r.action === 'inference');
    expect(inference).toMatchObject({ actor: 'carol', model: 'chat', requestId: 'req-infer-1', details: { entry: 'openai', version: 'v1' } });
    expect(inference!.ip).toMatch(/127\.0\.0\.1$/);
    // No secret anywhere in the table, whatever column.
    const dump = JSON.stringify(await sql('select * from audit_log'));
    for (const s of [SECRET, 'hunter2', 'rt-123', 'k-1', 'abc.def']) expect(dump).not.toContain(s);

    const v = await verify();
    expect(v).toMatchObject({ ok: true, firstBrokenId: null });
    expect(v.checked).toBe(Number((await sql<{ n: string }>('select count(*) as n from audit_log'))[0]!.n));
  });

  it('a request id a client sends twice (X-Request-Id) is answered and audited each time, and later calls still commit', async () => {
    const call = async (requestId: string) => {
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...as('erin', 'developer', requestId) },
        body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hello' }] }),
        signal: AbortSignal.timeout(20_000),
      });
      await res.arrayBuffer();
      return res.status;
    };
    // durable: each answer waits for its batch to commit, so a batch that could not commit would show here.
    expect(await Promise.all([call('req-twice'), call('req-twice')])).toEqual([200, 200]);
    expect(await call('req-twice')).toBe(200);
    expect(await call('req-after-twice')).toBe(200);
    expect(await sql(`select id from inferences where id in ('req-twice', 'req-after-twice') order by id`)).toEqual([
      { id: 'req-after-twice' },
      { id: 'req-twice' },
    ]);
    const audited = await sql<{ n: number }>(`select count(*)::int as n from audit_entries where request_id = 'req-twice' and action = 'inference'`);
    expect(audited[0]!.n).toBe(3);
    expect((await verify()).ok).toBe(true);
  });

  it('writes no change without its row and no row without its change: a failed audit insert rolls the change back', async () => {
    const dup = await gw.gql(`mutation { registerModel(input: { id: "chat", task: CHAT }) { id } }`, {}, as('alice', 'admin', 'req-dup'));
    expect(dup.errors?.[0]?.extensions?.code).toBe('MCP_DUPLICATE_ID');
    await gw.services.audit.flush();
    const dupRows = (await rows()).filter((r) => r.requestId === 'req-dup');
    expect(dupRows.map((r) => [r.action, r.outcome, r.details.errorCode])).toEqual([['mutation.registerModel', 'FAILED', 'MCP_DUPLICATE_ID']]);
    // The audit insert of a delete fails (a check the test adds): the delete itself does not happen.
    await sql(`alter table audit_log add constraint no_delete_rows check (action <> 'model.delete')`);
    try {
      const del = await gw.gql('mutation { deleteModel(id: "chat") { id } }', {}, as('alice', 'admin', 'req-del'));
      expect(del.errors?.[0]?.extensions?.code).toBe('MCP_INTERNAL');
    } finally {
      await sql('alter table audit_log drop constraint no_delete_rows');
    }
    expect(await sql(`select id from models where id = 'chat'`)).toHaveLength(1);
    expect((await verify()).ok).toBe(true);
  });

  it('pages through the log newest first with a cursor, and filters by actor, action, model, outcome and time', async () => {
    const before = new Date();
    for (let i = 0; i < 5; i++) await gw.gql(`mutation { updateModel(id: "chat", input: { description: "d${i}" }) { id } }`, {}, as('dave'));
    await gw.services.audit.flush();
    const seen: Row[] = [];
    let after: string | null = null;
    for (let page = 0; page < 10; page++) {
      type Page = { auditLog: { nodes: Row[]; pageInfo: { endCursor: string | null; hasNextPage: boolean } } };
      const r: { data?: Page; errors?: unknown[] } = await gw.gql<Page>(LOG, { f: { actor: 'dave', action: 'model.*' }, first: 2, after }, as('auditor'));
      expect(r.errors).toBeUndefined();
      seen.push(...r.data!.auditLog.nodes);
      after = r.data!.auditLog.pageInfo.endCursor;
      if (!r.data!.auditLog.pageInfo.hasNextPage) break;
    }
    expect(seen).toHaveLength(5);
    expect(seen.every((r) => r.action === 'model.update' && r.actor === 'dave')).toBe(true);
    expect(seen.map((r) => r.details.description)).toEqual(['d4', 'd3', 'd2', 'd1', 'd0']); // newest first
    expect((await rows({ actor: 'dave', action: 'mutation.updateModel', since: before.toISOString() })).length).toBe(5);
    expect(await rows({ actor: 'dave', until: before.toISOString() })).toEqual([]);
    expect((await rows({ outcome: 'DENIED' })).map((r) => r.actor ?? 'anonymous').sort()).toEqual(['anonymous', 'bob', 'bob']);
    expect((await rows({ model: 'chat', actor: 'carol' })).map((r) => r.action)).toEqual(['inference']);
    const bad = await gw.gql(LOG, { after: 'not-a-cursor' }, as('auditor'));
    expect(bad.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
  });

  it('refuses UPDATE, DELETE and TRUNCATE of the log (the append-only trigger)', async () => {
    for (const stmt of ['update audit_log set actor = $$x$$', 'delete from audit_log', 'truncate audit_log']) {
      const err = await sql(stmt).then(
        () => undefined,
        (e: Error & { cause?: Error }) => e.cause?.message ?? e.message,
      );
      expect(err).toMatch(/append-only: (UPDATE|DELETE|TRUNCATE) refused/);
    }
  });

  it('detects tampering at the exact row: an updated row, a deleted row (at the row after it), two swapped rows', async () => {
    const ids = (await sql<{ id: string }>('select id from audit_log order by id')).map((r) => Number(r.id));
    expect(ids.length).toBeGreaterThan(8);
    const k = ids[3]!;
    // An attacker with the database's superuser disables the trigger first (the app cannot).
    await sql('alter table audit_log disable trigger user');
    try {
      await sql(`update audit_log set outcome = 'ok', actor = 'someone-else' where id = ${k}`);
      expect(await verify()).toMatchObject({ ok: false, firstBrokenId: String(k), checked: 4 });
      // Verification can start anywhere: from the row after, the rest of the chain is intact.
      expect(await verify({ from: String(ids[4]) })).toMatchObject({ ok: true, checked: ids.length - 4 });

      await sql(`delete from audit_log where id = ${k}`);
      expect(await verify()).toMatchObject({ ok: false, firstBrokenId: String(ids[4]) });

      const [a, b] = [ids[5]!, ids[6]!];
      await sql(`delete from audit_log where id < ${a}`); // older rows archived away: the chain is verified from a
      expect(await verify({ from: String(a) })).toMatchObject({ ok: true });
      const swap = () =>
        sql(
          `update audit_log t set at = s.at, actor = s.actor, actor_via = s.actor_via, action = s.action, target = s.target, model = s.model,
             outcome = s.outcome, ip = s.ip, request_id = s.request_id, latency_ms = s.latency_ms, details = s.details, prev_hash = s.prev_hash,
             hash = s.hash
           from audit_log s where (t.id, s.id) in ((${a}, ${b}), (${b}, ${a}))`,
        );
      await swap();
      expect(await verify({ from: String(a) })).toMatchObject({ ok: false, firstBrokenId: String(a), checked: 1 });
      await swap(); // back in place: intact again
      expect(await verify({ from: String(a) })).toMatchObject({ ok: true, checked: ids.length - 5 });
    } finally {
      await sql('alter table audit_log enable trigger user');
    }
  });

  it.runIf(storageKind === 'postgres')('keeps one chain when two replicas append at the same time (the chain lock)', async () => {
    const url = gw.config.storage.url!;
    const config = auditConfigSchema.parse({ flushIntervalMs: 5, maxBatch: 7 });
    const replicas = await Promise.all([0, 1].map(() => openDatabase({ url, dataDir: '/tmp' })));
    const logs = replicas.map((db) => new AuditLog(db, config, pino({ level: 'silent' }), new Registry()));
    try {
      const before = (await sql<{ n: string }>('select count(*) as n from audit_log'))[0]!.n;
      const last = (await sql<{ id: string }>('select max(id) as id from audit_log'))[0]!.id;
      await Promise.all(
        logs.flatMap((log, r) => Array.from({ length: 300 }, (_, i) => log.record({ action: 'test.append', target: `${r}-${i}`, outcome: 'ok' }))),
      );
      await Promise.all(logs.map((l) => l.flush()));
      expect(Number((await sql<{ n: string }>('select count(*) as n from audit_log'))[0]!.n) - Number(before)).toBe(600);
      expect(await verify({ from: String(Number(last) + 1) })).toMatchObject({ ok: true, checked: 600 });
    } finally {
      for (const l of logs) await l.close();
      for (const db of replicas) await db.close();
    }
    // A connection of its own is no different: the app's role cannot change the log either.
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await expect(c.query('delete from audit_log')).rejects.toThrow(/append-only/);
    await c.end();
  });
});
