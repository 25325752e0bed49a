import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeCalls } from '../../src/audit/batch-calls.ts';
import { GENESIS_HASH, rowHash } from '../../src/audit/canonical.ts';
import { appendInTransaction, AUDIT_CHAIN_LOCK, listAudit, verifyChain, type AuditFilter, type AuditItem } from '../../src/audit/chain.ts';
import type { AuditEntry } from '../../src/audit/types.ts';
import { type Database } from '../../src/db/client.ts';
import { openTestStorage, STORAGES } from '../../src/testing/database.ts';
import { query } from './support.ts';

/** An inference call's audit entry, as src/audit/inference-audit.ts builds it. */
const call = (i: number, actor: string, model: string, outcome: AuditEntry['outcome'] = 'ok'): AuditEntry => ({
  actor,
  actorVia: 'api-key',
  action: 'inference',
  target: `${model}-v1-0`,
  model,
  outcome,
  ip: '127.0.0.1',
  requestId: `req-${i}`,
  latencyMs: 1.25,
  details: { entry: 'openai', stream: false, version: 'v1', ...(outcome === 'ok' ? {} : { errorCode: 'MCP_UPSTREAM_ERROR' }) },
});

// Inference calls are appended as one batch row per append (per group commit): one chain link and
// one INSERT for the whole batch. These tests hold the batch rows to what one row per call gave:
// every call listed and filtered on its own, paged by its own id, and covered by the hash chain.
describe.each(STORAGES)('inference calls in batch rows on %s', (storageKind) => {
  let database: Database;
  let cleanup: () => Promise<void>;
  const sql = <T = Record<string, unknown>>(text: string) => query<T>(database, text);
  const append = (entries: AuditEntry[]) => database.db.transaction((tx) => appendInTransaction(tx, entries));
  /** Every page of a listing, `first` entries at a time. */
  async function listAll(filter: AuditFilter, first: number): Promise<AuditItem[]> {
    const out: AuditItem[] = [];
    let after: string | undefined;
    for (let page = 0; page < 200; page++) {
      const p = await listAudit(database.db, filter, { first, after });
      out.push(...p.items);
      if (!p.hasNextPage) break;
      after = p.endCursor!;
    }
    return out;
  }

  beforeAll(async () => {
    ({ database, close: cleanup } = await openTestStorage(storageKind));
    // Three appends: an event before, a mixed batch (events + calls), a batch of calls only.
    await append([{ actor: 'admin', action: 'model.register', target: 'chat', model: 'chat', outcome: 'ok' }]);
    await append([
      call(0, 'alice', 'chat'),
      { actor: 'bob', action: 'authz.denied', target: 'POST /v1/chat/completions', outcome: 'denied' },
      call(1, 'bob', 'chat', 'failed'),
      call(2, 'alice', 'embed'),
      call(3, 'anon', 'chat', 'denied'),
    ]);
    await append(Array.from({ length: 7 }, (_, i) => call(4 + i, i % 2 ? 'alice' : 'carol', i < 4 ? 'chat' : 'embed')));
  }, 60_000);
  afterAll(async () => {
    await cleanup?.();
  });

  it('writes one row per event and one batch row per append of calls, and lists every call on its own with its own id', async () => {
    const rows = await sql<{ action: string; entries: string | null; actors: string[] | null }>('select action, entries, actors from audit_log order by id');
    expect(rows.map((r) => [r.action, r.entries === null ? 'row' : `batch of ${decodeCalls(r.entries).length}`])).toEqual([
      ['model.register', 'row'],
      ['authz.denied', 'row'],
      ['inference', 'batch of 4'],
      ['inference', 'batch of 7'],
    ]);
    expect(rows[2]!.actors).toEqual(['alice', 'anon', 'bob']);

    const all = await listAll({}, 500);
    expect(all).toHaveLength(13);
    // Newest first, ids strictly decreasing and unique; a call's id is its batch row's id + its index.
    const ids = all.map((r) => r.id);
    expect([...ids].sort((a, b) => b - a)).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    const calls = all.filter((r) => r.action === 'inference');
    expect(calls.map((r) => r.requestId)).toEqual(Array.from({ length: 11 }, (_, i) => `req-${10 - i}`));
    const first = calls.find((r) => r.requestId === 'req-0')!;
    expect(first).toMatchObject({ actor: 'alice', actorVia: 'api-key', model: 'chat', target: 'chat-v1-0', outcome: 'ok', ip: '127.0.0.1', latencyMs: 1.25 });
    expect(first.details).toEqual({ entry: 'openai', stream: false, version: 'v1' });
    expect(first.id).toBe(first.chainRowId);
    expect(calls.find((r) => r.requestId === 'req-1')!.details).toEqual({ entry: 'openai', stream: false, version: 'v1', errorCode: 'MCP_UPSTREAM_ERROR' });
    const batchRow = (await sql<{ id: string; hash: string }>(`select id, hash from audit_log where id = ${first.chainRowId}`))[0]!;
    expect(
      calls
        .filter((r) => r.chainRowId === first.chainRowId)
        .map((r) => r.id - first.chainRowId)
        .sort(),
    ).toEqual([0, 1, 2, 3]);
    expect(first.hash).toBe(batchRow.hash);

    // The SQL view gives the same calls, one row each.
    const view = await sql<{ id: string; request_id: string; actor: string }>(
      `select id, request_id, actor from audit_entries where action = 'inference' order by id`,
    );
    expect(view.map((r) => [Number(r.id), r.request_id, r.actor])).toEqual([...calls].reverse().map((r) => [r.id, r.requestId, r.actor]));
  });

  it('filters calls by actor, model, outcome and action, and pages through batches with the cursor', async () => {
    const of = (items: AuditItem[]) => items.map((r) => `${r.action}:${r.requestId ?? r.target}`);
    expect(of(await listAll({ actor: 'alice' }, 500))).toEqual(['inference:req-9', 'inference:req-7', 'inference:req-5', 'inference:req-2', 'inference:req-0']);
    expect(of(await listAll({ actor: 'bob' }, 500))).toEqual(['inference:req-1', 'authz.denied:POST /v1/chat/completions']);
    expect(of(await listAll({ model: 'embed', actor: 'carol' }, 500))).toEqual(['inference:req-10', 'inference:req-8']);
    expect(of(await listAll({ outcome: 'denied' }, 500))).toEqual(['inference:req-3', 'authz.denied:POST /v1/chat/completions']);
    expect(of(await listAll({ outcome: 'failed', model: 'chat' }, 500))).toEqual(['inference:req-1']);
    expect(of(await listAll({ action: 'model.*' }, 500))).toEqual(['model.register:chat']);
    expect(await listAll({ action: 'inference', actor: 'nobody' }, 500)).toEqual([]);
    expect((await listAll({ action: 'inf*' }, 500)).length).toBe(11);
    // Pages of 2 and of 3 cut batches in the middle: the same entries, in the same order, none twice.
    const whole = of(await listAll({}, 500));
    expect(of(await listAll({}, 2))).toEqual(whole);
    expect(of(await listAll({}, 3))).toEqual(whole);
    expect(of(await listAll({ actor: 'alice' }, 1))).toEqual(of(await listAll({ actor: 'alice' }, 500)));
    const future = new Date(Date.now() + 60_000);
    expect(await listAll({ since: future }, 500)).toEqual([]);
    expect((await listAll({ until: future, model: 'chat' }, 500)).length).toBe(8);
  });

  it('verifies batch rows: a changed call, a changed derived column or a removed call is found at its batch row', async () => {
    expect(await verifyChain(database.db)).toMatchObject({ ok: true, checked: 4, firstBrokenId: null });
    const [batch] = await sql<{ id: string; entries: string; actors: string[] }>(
      `select id, entries, actors from audit_log where entries is not null order by id limit 1`,
    );
    const id = Number(batch!.id);
    // Format 2: repeated strings stored once, each call an array naming them by index (src/audit/batch-calls.ts).
    const table = JSON.parse(batch!.entries) as { format: number; strings: string[]; calls: unknown[][] };
    expect(table.format).toBe(2);
    const escaped = (s: string) => s.replaceAll("'", "''");
    await sql('alter table audit_log disable trigger user');
    try {
      const tamper = async (set: string) => {
        await sql(`update audit_log set ${set} where id = ${id}`);
        return verifyChain(database.db);
      };
      const restore = () => sql(`update audit_log set entries = '${escaped(batch!.entries)}', actors = array['alice','anon','bob'] where id = ${id}`);
      // The outcome of one call rewritten.
      const changed = { ...table, calls: table.calls.map((c, i) => (i === 1 ? c.map((v, k) => (k === 4 ? table.strings.indexOf('ok') : v)) : c)) };
      expect(changed.calls[1]).not.toEqual(table.calls[1]);
      expect(await tamper(`entries = '${escaped(JSON.stringify(changed))}'`)).toMatchObject({ ok: false, firstBrokenId: id });
      await restore();
      // One call removed from the batch.
      expect(await tamper(`entries = '${escaped(JSON.stringify({ ...table, calls: table.calls.slice(1) }))}'`)).toMatchObject({ ok: false, firstBrokenId: id });
      await restore();
      // An actor hidden from the filters (the derived column is not in the hash; it is checked against entries).
      expect(await tamper(`actors = array['alice','anon']`)).toMatchObject({ ok: false, firstBrokenId: id });
      await restore();
      expect(await verifyChain(database.db)).toMatchObject({ ok: true, checked: 4 });
    } finally {
      await sql('alter table audit_log enable trigger user');
    }
    await expect(sql(`update audit_log set entries = '[]' where id = ${id}`)).rejects.toThrow();
  });

  it('reads batch rows of format 1 (one object per call, as written before format 2) like format 2 ones, and keeps unusual details', async () => {
    const escaped = (s: string) => s.replaceAll("'", "''");
    const v1 = [
      {
        outcome: 'ok',
        actor: 'dave',
        actorVia: 'jwt',
        target: 'chat-v1-0',
        model: 'chat',
        ip: '10.0.0.1',
        requestId: 'old-0',
        latencyMs: 2.5,
        details: { entry: 'graphql', stream: true, version: 'v1' },
      },
      { outcome: 'failed', actor: 'dave', model: 'chat', requestId: 'old-1', details: { entry: 'rest', errorCode: 'MCP_TIMEOUT' } },
    ];
    const [r] = await sql<{ last_hash: string | null; first_id: string }>(`select last_hash, first_id from audit_log_reserve(${AUDIT_CHAIN_LOCK}, 2)`);
    const id = Number(r!.first_id);
    const at = new Date();
    const entries = JSON.stringify(v1);
    const prev = r!.last_hash ?? GENESIS_HASH;
    const fields = {
      id,
      at,
      actor: null,
      actorVia: null,
      action: 'inference',
      target: null,
      model: null,
      outcome: 'mixed',
      ip: null,
      requestId: null,
      latencyMs: null,
      details: { calls: 2 },
      entries,
    };
    await sql(
      `insert into audit_log (id, at, action, outcome, details, prev_hash, hash, entries, actors, models, outcomes)
       values (${id}, '${at.toISOString()}', 'inference', 'mixed', '{"calls":2}', '${prev}', '${rowHash(prev, fields)}', '${escaped(entries)}',
               array['dave'], array['chat'], array['failed','ok'])`,
    );
    // A format 2 call whose details do not fit the columns: kept with the other details, secrets redacted.
    await append([{ ...call(20, 'erin', 'chat'), details: { entry: 'openai', stream: 'yes', version: 7, note: 'kept', token: 'hidden' } }]);

    expect(await verifyChain(database.db)).toMatchObject({ ok: true, checked: 6, firstBrokenId: null });
    const dave = await listAll({ actor: 'dave' }, 500);
    expect(dave.map((c) => [c.id - id, c.requestId, c.outcome, c.actorVia, c.latencyMs, c.details])).toEqual([
      [1, 'old-1', 'failed', null, null, { entry: 'rest', errorCode: 'MCP_TIMEOUT' }],
      [0, 'old-0', 'ok', 'jwt', 2.5, { entry: 'graphql', stream: true, version: 'v1' }],
    ]);
    const [erin] = await listAll({ actor: 'erin' }, 500);
    expect(erin!.details).toEqual({ entry: 'openai', stream: 'yes', version: 7, note: 'kept', token: '[redacted]' });
    // The SQL view expands both formats alike.
    const view = await sql<{ request_id: string; actor_via: string | null; latency_ms: number | null; details: Record<string, unknown> }>(
      `select request_id, actor_via, latency_ms, details from audit_entries where actor in ('dave', 'erin') or request_id = 'req-1' order by id`,
    );
    expect(view.map((v) => [v.request_id, v.actor_via, v.latency_ms === null ? null : Number(v.latency_ms), v.details])).toEqual([
      ['req-1', 'api-key', 1.25, { entry: 'openai', stream: false, version: 'v1', errorCode: 'MCP_UPSTREAM_ERROR' }],
      ['old-0', 'jwt', 2.5, { entry: 'graphql', stream: true, version: 'v1' }],
      ['old-1', null, null, { entry: 'rest', errorCode: 'MCP_TIMEOUT' }],
      ['req-20', 'api-key', 1.25, { entry: 'openai', stream: 'yes', version: 7, note: 'kept', token: '[redacted]' }],
    ]);
  });
});
