import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../../src/audit/chain.ts';
import { openDatabase } from '../../src/db/client.ts';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { createTestDatabase } from '../../src/testing/database.ts';
import { startReadyProcess } from '../support/process.ts';

const ROOT = join(import.meta.dirname, '../..');
const ROUNDS = Number(process.env.AUDIT_KILL_ROUNDS ?? 20);

/** Starts `capibara-mcp start --config FILE` and resolves with its URL once it logs "gateway ready". */
async function startProcess(configFile: string, cwd: string): Promise<{ child: ChildProcess; url: string }> {
  const { child, ready } = await startReadyProcess([join(ROOT, 'bin/capibara-mcp.js'), 'start', '--config', configFile], {
    cwd,
    env: { DATABASE_URL: '', PORT: '' },
    ready: /"url":"(http:[^"]+)".*"msg":"gateway ready"/,
  });
  return { child, url: ready[1]! };
}

// kill -9 of the gateway process under load, again and again: what it acknowledged must be in the database.
describe.runIf(process.env.DATABASE_URL)('kill -9 of the gateway under load', () => {
  let db: { url: string; drop(): Promise<void> };
  let openai: FakeOpenAIServer;
  let dir: string;
  let check: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase();
    openai = await startFakeOpenAI({ models: ['fake-model'], tokens: ['ok'] });
    dir = mkdtempSync(join(tmpdir(), 'mcp-kill9-'));
    check = new pg.Client({ connectionString: db.url });
    await check.connect();
  });
  afterAll(async () => {
    await check?.end();
    await openai?.close();
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`${ROUNDS} rounds: no acknowledged admin change without its audit rows, no acknowledged inference without its record (durable)`, async () => {
    const configFile = join(dir, 'capibara.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        server: { port: 0, host: '127.0.0.1' },
        storage: { url: db.url },
        auth: { enabled: false },
        demo: { enabled: false },
        log: { level: 'info', access: false },
        defaultPlugins: false,
        plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }],
        router: { healthCheck: { enabled: false } },
        audit: { inference: 'durable' },
        models: [
          {
            id: 'chat',
            task: 'chat',
            versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: openai.url, options: { model: 'fake-model' } }] }],
          },
        ],
      }),
    );
    const ackedInferences: string[] = [];
    const ackedChanges: string[] = [];
    const started = Date.now();
    for (let round = 0; round < ROUNDS; round++) {
      const { child, url } = await startProcess(configFile, dir);
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      const agent = new Agent({ connections: 16 });
      let stop = false;
      let seq = 0;
      const post = (path: string, body: unknown, id: string) =>
        fetch(`${url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-request-id': id },
          body: JSON.stringify(body),
          dispatcher: agent,
        } as RequestInit);
      const inferer = async () => {
        while (!stop) {
          const id = `k${round}-i${++seq}`;
          try {
            const res = await post('/v1/chat/completions', { model: 'chat', messages: [{ role: 'user', content: 'hi' }] }, id);
            await res.arrayBuffer();
            if (res.status === 200) ackedInferences.push(id);
          } catch {
            /* the process died mid-request: not acknowledged */
          }
        }
      };
      const admin = async () => {
        while (!stop) {
          const id = `k${round}-a${++seq}`;
          try {
            const res = await post('/graphql', { query: `mutation { updateModel(id: "chat", input: { description: "${id}" }) { id } }` }, id);
            const body = (await res.json()) as { data?: unknown; errors?: unknown[] };
            if (res.status === 200 && body.data && !body.errors) ackedChanges.push(id);
          } catch {
            /* the process died mid-request: not acknowledged */
          }
        }
      };
      const before = { inferences: ackedInferences.length, changes: ackedChanges.length };
      const clients = [...Array.from({ length: 4 }, inferer), admin(), admin()];
      // Under load: once both kinds of request are being acknowledged, kill at a different moment each round.
      const warm = Date.now();
      while ((ackedInferences.length === before.inferences || ackedChanges.length === before.changes) && Date.now() - warm < 20_000) {
        await new Promise((r) => setTimeout(r, 10));
      }
      await new Promise((r) => setTimeout(r, 50 + ((round * 137) % 400)));
      child.kill('SIGKILL');
      await exited;
      stop = true;
      await Promise.all(clients);
      await agent.close();
    }
    const elapsed = Date.now() - started;
    const missing = async (ids: string[], sql: string) => {
      await check.query('create temp table if not exists acked (id text primary key)');
      await check.query('truncate acked');
      await check.query('insert into acked select unnest($1::text[])', [ids]);
      return (await check.query<{ id: string }>(sql)).rows.map((r) => r.id);
    };
    const noRecord = await missing(ackedInferences, 'select id from acked a where not exists (select 1 from inferences i where i.id = a.id)');
    const noInferenceRow = await missing(ackedInferences, 'select id from acked a where not exists (select 1 from audit_entries l where l.request_id = a.id)');
    const noChangeRow = await missing(
      ackedChanges,
      `select id from acked a where not exists (select 1 from audit_log l where l.request_id = a.id and l.action = 'model.update')
         or not exists (select 1 from audit_log l where l.request_id = a.id and l.action = 'mutation.updateModel')`,
    );
    console.info(`kill -9: ${ROUNDS} rounds in ${elapsed} ms, ${ackedInferences.length} inferences and ${ackedChanges.length} admin changes acknowledged`);
    expect(ackedInferences.length).toBeGreaterThan(ROUNDS);
    expect(ackedChanges.length).toBeGreaterThan(ROUNDS);
    expect({ noRecord, noInferenceRow, noChangeRow }).toEqual({ noRecord: [], noInferenceRow: [], noChangeRow: [] });
    const database = await openDatabase({ url: db.url, dataDir: dir });
    try {
      expect(await verifyChain(database.db)).toMatchObject({ ok: true, firstBrokenId: null });
    } finally {
      await database.close();
    }
  }, 600_000);
});
