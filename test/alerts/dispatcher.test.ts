/**
 * The alert dispatcher in a real gateway: alert-sink plugins from `alerts.sinks`, a local webhook
 * receiver that checks signatures and fails on demand, retries with exponential backoff, dead-letter
 * rows in the database (PGlite, and PostgreSQL when DATABASE_URL is set), order per sink, a full queue,
 * and shutdown.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { eq } from 'drizzle-orm';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertDispatcher, type DeadLetter } from '../../src/alerts/dispatcher.ts';
import { openDatabase } from '../../src/db/client.ts';
import { alertDeadLetters } from '../../src/db/schema.ts';
import { AddressPolicy } from '../../src/security/address-policy.ts';
import { listenOnLoopback, sampleAlert, startSilentServer, type LoopbackServer } from '../../src/testing/index.ts';
import { STORAGES, startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { createWebhookSink, optionsSchema as webhookOptions } from '../../plugins/alert-webhook/index.ts';

const SECRET = randomBytes(24).toString('base64url');
process.env.TEST_DISPATCH_WEBHOOK_SECRET = SECRET;

interface Attempt {
  id: string;
  state: string;
  at: number;
  valid: boolean;
  answered: number;
}

/** A webhook receiver that verifies every signature and answers 503 to the first `failures.get(id)` attempts of an alert (forever with Infinity). */
async function startReceiver(): Promise<LoopbackServer & { attempts: Attempt[]; failures: Map<string, number> }> {
  const attempts: Attempt[] = [];
  const failures = new Map<string, number>();
  const server = await listenOnLoopback((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const ts = String(req.headers['x-capibara-timestamp'] ?? '');
      const given = Buffer.from(String(req.headers['x-capibara-signature'] ?? ''));
      const expected = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(`${ts}.${raw}`).digest('hex')}`);
      const valid = given.length === expected.length && timingSafeEqual(given, expected) && Math.abs(Date.now() / 1000 - Number(ts)) <= 300;
      const { alert } = JSON.parse(raw) as { alert: { id: string; state: string } };
      const left = failures.get(alert.id) ?? 0;
      const status = !valid ? 401 : left > 0 ? 503 : 204;
      if (left > 0) failures.set(alert.id, left - 1);
      attempts.push({ id: alert.id, state: alert.state, at: performance.now(), valid, answered: status });
      res.writeHead(status).end();
    });
  });
  return Object.assign(server, { attempts, failures });
}

describe.each(STORAGES)('alert dispatcher (%s)', (storageKind) => {
  let gw: TestGateway;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  const logLines: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'mcp-alerts-'));
  const logFile = join(dir, 'alerts.ndjson');
  const fileAlerts = () =>
    existsSync(logFile)
      ? readFileSync(logFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { id: string; state: string })
      : [];
  const deadLetters = (alertId: string) => gw.services.database.db.select().from(alertDeadLetters).where(eq(alertDeadLetters.alertId, alertId));

  beforeAll(async () => {
    receiver = await startReceiver();
    const logger = pino(
      { level: 'debug' },
      new Writable({
        write(chunk: Buffer, _e, cb) {
          logLines.push(chunk.toString('utf8'));
          cb();
        },
      }),
    );
    gw = await startTestGateway(
      {
        storageKind,
        alerts: {
          sinks: [
            { use: 'alert-webhook', name: 'ops-hook', options: { url: `${receiver.origin}/hook`, secret: 'env:TEST_DISPATCH_WEBHOOK_SECRET' } },
            { use: 'alert-log', name: 'alert-file', options: { file: logFile } },
          ],
          delivery: { maxAttempts: 4, initialBackoffMs: 150, backoffMultiplier: 2, maxBackoffMs: 10_000, jitter: 0, attemptTimeoutMs: 5_000 },
        },
      },
      { logger },
    );
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  it('sets up the sinks listed under alerts.sinks, and no unlisted first-party sink', () => {
    expect(gw.services.alerts.sinks.sort()).toEqual(['alert-file', 'ops-hook']);
    expect(gw.services.plugins.names('alertSink').sort()).toEqual(['alert-file', 'ops-hook']);
  });

  it('notify() returns at once; a failing delivery is retried with growing waits and arrives, and the resolution only after it', async () => {
    const firing = sampleAlert('firing');
    receiver.failures.set(firing.id, 2);
    gw.services.alerts.notify(firing);
    gw.services.alerts.notify({ ...firing, state: 'resolved', endsAt: new Date() });
    // Nothing was sent yet when notify returned: delivery happens off the caller's path.
    expect(receiver.attempts.filter((a) => a.id === firing.id)).toEqual([]);
    await gw.services.alerts.idle();
    const tries = receiver.attempts.filter((a) => a.id === firing.id);
    expect(tries.map((a) => [a.state, a.answered])).toEqual([
      ['firing', 503],
      ['firing', 503],
      ['firing', 204],
      ['resolved', 204],
    ]);
    expect(tries.every((a) => a.valid)).toBe(true);
    // jitter 0: waits of 150 ms, then 300 ms (lower bounds; a loaded machine only makes them longer).
    expect(tries[1]!.at - tries[0]!.at).toBeGreaterThanOrEqual(140);
    expect(tries[2]!.at - tries[1]!.at).toBeGreaterThanOrEqual(290);
    expect(await deadLetters(firing.id)).toEqual([]);
    // The other sink was not held up by the retries and got both too.
    expect(
      fileAlerts()
        .filter((a) => a.id === firing.id)
        .map((a) => a.state),
    ).toEqual(['firing', 'resolved']);
  });

  it('after maxAttempts failures the notification becomes one dead-letter row with the last error; the other sink still gets it', async () => {
    const alert = sampleAlert('firing');
    receiver.failures.set(alert.id, Infinity);
    gw.services.alerts.notify(alert);
    await gw.services.alerts.idle();
    const tries = receiver.attempts.filter((a) => a.id === alert.id);
    expect(tries).toHaveLength(4);
    // Exponential: 150, 300, 600 ms.
    expect(tries[3]!.at - tries[2]!.at).toBeGreaterThanOrEqual(590);
    const rows = await deadLetters(alert.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      sink: 'ops-hook',
      rule: 'HighLatency',
      state: 'firing',
      reason: 'failed',
      attempts: 4,
      lastError: 'alert webhook failed: HTTP 503',
      alert: { id: alert.id, severity: 'critical', labels: { model: 'capibara-mini', version: 'v1' }, value: 812.5 },
    });
    expect(fileAlerts().some((a) => a.id === alert.id)).toBe(true);
    const metrics = await gw.services.metricsRegistry.metrics();
    expect(metrics).toMatch(/mcp_alert_notifications_total\{sink="ops-hook",outcome="failed"\} [1-9]/);
    expect(metrics).toMatch(/mcp_alert_notifications_total\{sink="ops-hook",outcome="delivered"\} [1-9]/);
    expect(metrics).toMatch(/mcp_alert_delivery_attempts_total\{sink="ops-hook",result="error"\} [1-9]/);
    // Failures are logged by sink and alert; the webhook secret never is.
    expect(logLines.some((l) => l.includes('alert delivery attempt failed') && l.includes(alert.id))).toBe(true);
    expect(logLines.some((l) => l.includes(SECRET))).toBe(false);
  });
});

describe('alert dispatcher queue and shutdown', () => {
  it('a full queue dead-letters new notifications at once (queue_full); close() cancels the delivery in flight and dead-letters the rest (shutdown)', async () => {
    const silent = await startSilentServer();
    const logger = pino({ level: 'silent' });
    const sink = createWebhookSink(
      { logger, addressPolicy: new AddressPolicy(), name: 'stalled' },
      webhookOptions.parse({ url: silent.url, secret: 'env:TEST_DISPATCH_WEBHOOK_SECRET', timeoutMs: 120_000 }),
    );
    const letters: DeadLetter[] = [];
    const dispatcher = new AlertDispatcher({
      sinks: [{ name: 'stalled', sink }],
      delivery: {
        maxAttempts: 3,
        initialBackoffMs: 100,
        backoffMultiplier: 2,
        maxBackoffMs: 1000,
        jitter: 0.5,
        attemptTimeoutMs: 120_000,
        queueSize: 2,
        drainMs: 200,
      },
      deadLetter: async (l) => void letters.push(l),
      logger,
    });
    const alerts = [sampleAlert(), sampleAlert(), sampleAlert(), sampleAlert()];
    for (const a of alerts) dispatcher.notify(a);
    // The first is being delivered (to a peer that never answers), the second waits: the third and fourth do not fit.
    await new Promise((r) => setTimeout(r, 50));
    expect(letters.map((l) => [l.alert.id, l.reason, l.attempts])).toEqual([
      [alerts[2]!.id, 'queue_full', 0],
      [alerts[3]!.id, 'queue_full', 0],
    ]);
    await dispatcher.close();
    expect(letters.slice(2).map((l) => [l.alert.id, l.reason])).toEqual([
      [alerts[0]!.id, 'shutdown'],
      [alerts[1]!.id, 'shutdown'],
    ]);
    expect(letters[2]!.lastError).toBe('the gateway is shutting down');
    // After close, a notification is dead-lettered at once.
    dispatcher.notify(sampleAlert());
    await new Promise((r) => setTimeout(r, 10));
    expect(letters.at(-1)!.reason).toBe('shutdown');
    await sink.close();
    await silent.close();
  }, 30_000);

  it('backoff grows by the multiplier up to the cap, and jitter takes at most its fraction off', () => {
    const make = (random: () => number) =>
      new AlertDispatcher({
        sinks: [],
        delivery: {
          maxAttempts: 10,
          initialBackoffMs: 1000,
          backoffMultiplier: 2,
          maxBackoffMs: 5000,
          jitter: 0.5,
          attemptTimeoutMs: 1000,
          queueSize: 1,
          drainMs: 0,
        },
        deadLetter: async () => {},
        logger: pino({ level: 'silent' }),
        random,
      });
    const none = make(() => 0);
    expect([1, 2, 3, 4, 5].map((n) => none.backoffMs(n))).toEqual([1000, 2000, 4000, 5000, 5000]);
    const most = make(() => 0.999999);
    expect([1, 2, 3].map((n) => most.backoffMs(n))).toEqual([500, 1000, 2000]);
  });

  it('a gateway shut down with a delivery in flight and one queued stores both as dead letters before its database closes', async () => {
    const silent = await startSilentServer();
    const dataDir = mkdtempSync(join(tmpdir(), 'mcp-alerts-db-'));
    const gateway = await startTestGateway({
      storage: { inMemory: false, dataDir },
      alerts: {
        sinks: [{ use: 'alert-webhook', name: 'stalled-hook', options: { url: silent.url, secret: 'env:TEST_DISPATCH_WEBHOOK_SECRET', timeoutMs: 120_000 } }],
        delivery: { attemptTimeoutMs: 120_000, drainMs: 100 },
      },
    });
    const [first, second] = [sampleAlert(), sampleAlert('resolved')];
    gateway.services.alerts.notify(first);
    gateway.services.alerts.notify(second);
    await gateway.close();
    const db = await openDatabase({ dataDir });
    try {
      const rows = await db.db.select().from(alertDeadLetters);
      expect(rows.map((r) => [r.sink, r.alertId, r.state, r.reason]).sort()).toEqual(
        [
          ['stalled-hook', first.id, 'firing', 'shutdown'],
          ['stalled-hook', second.id, 'resolved', 'shutdown'],
        ].sort(),
      );
    } finally {
      await db.close();
      await silent.close();
    }
  }, 120_000);

  it('an alerts.sinks entry that is not an alert sink is a config error', async () => {
    await expect(startTestGateway({ alerts: { sinks: [{ use: 'round-robin', name: 'rr' }] } })).rejects.toThrow(
      /alerts\.sinks\.0: plugin "rr" is a balancer plugin, not an alert sink/,
    );
  });
});
