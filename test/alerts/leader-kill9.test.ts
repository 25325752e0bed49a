import type { ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyWebhookSignature, type WebhookBody } from '../../plugins/alert-webhook/index.ts';
import { LEASE_NAME } from '../../src/alerts/engine.ts';
import { createTestDatabase } from '../../src/testing/database.ts';
import { startReadyProcess } from '../support/process.ts';

const ROOT = join(import.meta.dirname, '../..');
const SECRET = 'leader-test-secret';

async function startReplica(configFile: string): Promise<{ child: ChildProcess; out: () => string }> {
  const { child, output } = await startReadyProcess(
    ['--import', 'tsx', '--conditions=capibara-source', join(ROOT, 'test/alerts/replica-process.ts'), configFile],
    {
      cwd: ROOT,
      env: { DATABASE_URL: '', PORT: '', ALERT_HOOK_SECRET: SECRET },
      ready: /replica ready /,
      timeoutMs: 90_000,
    },
  );
  return { child, out: output };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

// Two gateway replicas on one PostgreSQL database; the evaluating one is killed with SIGKILL while an alert is pending.
describe.runIf(process.env.DATABASE_URL)('alert leader killed with kill -9 while an alert is pending', () => {
  let db: { url: string; drop(): Promise<void> };
  let dir: string;
  let check: pg.Client;
  let receiver: Server;
  let hookUrl: string;
  const deliveries: Array<WebhookBody & { verified: boolean }> = [];
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'mcp-alert-leader-'));
    check = new pg.Client({ connectionString: db.url });
    await check.connect();
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const verified = verifyWebhookSignature({
          secret: SECRET,
          body,
          timestamp: req.headers['x-capibara-timestamp'] as string | undefined,
          signature: req.headers['x-capibara-signature'] as string | undefined,
        }).ok;
        deliveries.push({ ...(JSON.parse(body) as WebhookBody), verified });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
    hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await check?.end();
    await new Promise((r) => receiver?.close(r));
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the second replica takes the lease and fires the alert exactly once', async () => {
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
        plugins: [{ use: 'p2c-ewma' }],
        router: { healthCheck: { enabled: false } },
        alerts: {
          sinks: [{ use: 'alert-webhook', name: 'hook', options: { url: hookUrl, secret: 'env:ALERT_HOOK_SECRET' } }],
          rules: [
            { name: 'chat-slow', kind: 'threshold', metric: 'latency_p95_ms', match: { model: 'chat' }, op: '>', value: 500, windowMs: 5_000, forMs: 8_000 },
          ],
          evaluation: { intervalMs: 500, leaseTtlMs: 3_000, leaseRenewMs: 500, resendFiringMs: 0 },
        },
      }),
    );
    const first = await startReplica(configFile);
    children.push(first.child);
    const second = await startReplica(configFile);
    children.push(second.child);
    const pending = await until('a pending alert', async () => {
      const { rows } = await check.query<{ id: string; epoch: number }>(`select id, epoch from alert_instances where state = 'pending'`);
      return rows[0];
    });
    const { rows: lease } = await check.query<{ holder: string; epoch: number }>(`select holder, epoch from alert_leases where name = $1`, [LEASE_NAME]);
    const leaderPid = Number(lease[0]!.holder.split(':')[1]);
    const [leader, follower] = leaderPid === first.child.pid ? [first, second] : [second, first];
    expect([first.child.pid, second.child.pid]).toContain(leaderPid);
    expect(deliveries).toHaveLength(0);
    const exited = new Promise<void>((r) => leader.child.once('exit', () => r()));
    leader.child.kill('SIGKILL');
    await exited;

    await until('the firing notification', async () => (deliveries.length > 0 ? true : undefined), 90_000);
    // Longer than the lease, the `for` duration and several evaluations: no second notification comes.
    await new Promise((r) => setTimeout(r, 6_000));
    expect(deliveries.map((d) => [d.alert.id, d.alert.state, d.alert.rule, d.verified])).toEqual([[pending.id, 'firing', 'chat-slow', true]]);
    const { rows: history } = await check.query<{ from_state: string; to_state: string; epoch: number }>(
      `select from_state, to_state, epoch from alert_transitions where alert_id = $1 order by seq`,
      [pending.id],
    );
    expect(history.map((h) => `${h.from_state}>${h.to_state}`)).toEqual(['inactive>pending', 'pending>firing']);
    // The firing was written by the new leader, under a later lease epoch.
    expect(history[1]!.epoch).toBeGreaterThan(history[0]!.epoch);
    const { rows: outbox } = await check.query<{ delivered: boolean }>(`select delivered_at is not null as delivered from alert_outbox`);
    expect(outbox).toEqual([{ delivered: true }]);
    const { rows: after } = await check.query<{ holder: string }>(`select holder from alert_leases where name = $1`, [LEASE_NAME]);
    expect(Number(after[0]!.holder.split(':')[1])).toBe(follower.child.pid);
    follower.child.kill('SIGTERM');
  }, 300_000);
});
