/**
 * A database outage under inference load, shared by test/audit/outage.test.ts (a short outage) and
 * bench/audit-outage.ts (20 s): the gateway reaches PostgreSQL through a TCP fault proxy, clients
 * send chat completions without pause, the proxy cuts the database off (connections reset, new
 * ones refused) for `outageMs`, then lets it back. Every acknowledged request (HTTP 200) must
 * then have its `inferences` record and (unless audit.inference is off) its audit row.
 */
import pg from 'pg';
import { Agent } from 'undici';
import { startFakeOpenAI } from '../../src/testing/fake-openai-server.ts';
import { createTestDatabase, startTestGateway } from '../../src/testing/gateway.ts';
import { startTcpFaultProxy } from '../support/tcp-fault-proxy.ts';

export interface OutageOptions {
  mode: 'off' | 'buffered' | 'durable';
  /** 0: no outage (the same load, for comparison). */
  outageMs: number;
  beforeMs?: number;
  afterMs?: number;
  concurrency?: number;
  /** The inference records' buffer bound (router.recording.maxBuffered). */
  maxBuffered?: number;
}

export interface OutageResult {
  mode: string;
  outageMs: number;
  acknowledged: number;
  /** Answers other than 200, by status. */
  refusedByStatus: Record<string, number>;
  /** Acknowledged during the outage (buffered mode answers at once; durable mode waits). */
  acknowledgedDuringOutage: number;
  missingRecords: number;
  missingAuditRows: number;
  failedWrites: number;
  refused: number;
  maxBufferedSeen: number;
  chainOk: boolean;
  drainMs: number;
}

export async function runOutage(o: OutageOptions): Promise<OutageResult> {
  const base = process.env.DATABASE_URL;
  if (!base) throw new Error('DATABASE_URL is not set');
  const db = await createTestDatabase();
  const real = new URL(db.url);
  const proxy = await startTcpFaultProxy({ host: real.hostname, port: Number(real.port || 5432) });
  const viaProxy = new URL(db.url);
  viaProxy.hostname = '127.0.0.1';
  viaProxy.port = String(proxy.port);
  const openai = await startFakeOpenAI({ models: ['fake-model'], tokens: ['ok'] });
  const gw = await startTestGateway({
    storage: { url: viaProxy.toString() },
    defaultPlugins: false,
    plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }],
    router: { healthCheck: { enabled: false }, recording: { maxBuffered: o.maxBuffered ?? 50_000 } },
    models: [
      { id: 'chat', task: 'chat', versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: openai.url, options: { model: 'fake-model' } }] }] },
    ],
    audit: { inference: o.mode },
  });
  const agent = new Agent({ connections: (o.concurrency ?? 8) * 2, headersTimeout: 120_000, bodyTimeout: 120_000 });
  const acked: string[] = [];
  const refusedByStatus: Record<string, number> = {};
  let acknowledgedDuringOutage = 0;
  let outage = false;
  let stop = false;
  let seq = 0;
  let maxBufferedSeen = 0;
  const recorder = gw.services.traffic.recorder!;
  const sampler = setInterval(() => (maxBufferedSeen = Math.max(maxBufferedSeen, recorder.stats.buffered)), 50);
  const client = async () => {
    while (!stop) {
      const id = `out-${process.pid}-${++seq}`;
      try {
        const res = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-request-id': id },
          body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] }),
          dispatcher: agent,
          // A request never answered would be a bug: it shows as `network` below rather than a hung run.
          signal: AbortSignal.timeout(60_000),
        } as RequestInit);
        await res.arrayBuffer();
        if (res.status === 200) {
          acked.push(id);
          if (outage) acknowledgedDuringOutage++;
        } else refusedByStatus[res.status] = (refusedByStatus[res.status] ?? 0) + 1;
      } catch {
        refusedByStatus.network = (refusedByStatus.network ?? 0) + 1;
      }
    }
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let drainMs: number;
  try {
    const clients = Array.from({ length: o.concurrency ?? 8 }, client);
    await sleep(o.beforeMs ?? 1000);
    if (o.outageMs > 0) {
      outage = true;
      proxy.set('reset');
      await sleep(o.outageMs);
      proxy.set('pass');
      outage = false;
    }
    await sleep(o.afterMs ?? 2000);
    stop = true;
    await Promise.all(clients);
    // Buffered mode: the records of the outage are still being written; wait for the buffer to drain.
    const t0 = Date.now();
    while (recorder.stats.buffered > 0 && Date.now() - t0 < 60_000) await sleep(50);
    await recorder.flush();
    drainMs = Date.now() - t0;
    const check = new pg.Client({ connectionString: db.url });
    await check.connect();
    try {
      await check.query('create temp table acked (id text primary key)');
      await check.query('insert into acked select unnest($1::text[])', [acked]);
      const missing = async (table: string, col: string) =>
        Number((await check.query(`select count(*) as n from acked a where not exists (select 1 from ${table} t where t.${col} = a.id)`)).rows[0].n);
      const missingRecords = await missing('inferences', 'id');
      const missingAuditRows = o.mode === 'off' ? 0 : await missing('audit_entries', 'request_id');
      const { ok: chainOk } = await gw.services.audit.verify();
      return {
        mode: o.mode,
        outageMs: o.outageMs,
        acknowledged: acked.length,
        refusedByStatus,
        acknowledgedDuringOutage,
        missingRecords,
        missingAuditRows,
        failedWrites: recorder.stats.failedWrites,
        refused: recorder.stats.refused,
        maxBufferedSeen,
        chainOk,
        drainMs,
      };
    } finally {
      await check.end();
    }
  } finally {
    clearInterval(sampler);
    stop = true;
    await gw.close().catch(() => {});
    await agent.close();
    await openai.close();
    await proxy.close();
    await db.drop();
  }
}
