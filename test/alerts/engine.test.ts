import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AlertDispatcher } from '../../src/alerts/dispatcher.ts';
import { AlertEngine, nextState } from '../../src/alerts/engine.ts';
import { alertDeliverySchema } from '../../src/alerts/config.ts';
import { alertEvaluationSchema, alertRuleSchema } from '../../src/alerts/rules.ts';
import { openDatabase, type Database } from '../../src/db/client.ts';
import type { Alert } from '../../src/plugin/contract.ts';
import { FunctionMetricSource } from './metric-sources.ts';

const logger = pino({ level: 'silent' });

describe('alert state machine', () => {
  it('inactive → pending → firing → resolved, with the `for` duration', () => {
    let s = nextState(undefined, true, 30_000, 0);
    expect(s.state).toBe('pending');
    s = nextState({ state: s.state, activeSince: s.activeSince }, true, 30_000, 20_000);
    expect(s.state).toBe('pending');
    s = nextState({ state: s.state, activeSince: s.activeSince }, true, 30_000, 30_000);
    expect(s.state).toBe('firing');
    expect(nextState({ state: 'firing', activeSince: s.activeSince }, false, 30_000, 40_000).state).toBe('resolved');
    expect(nextState({ state: 'pending', activeSince: new Date(0) }, false, 30_000, 10_000).state).toBe('inactive');
    expect(nextState(undefined, true, 0, 5).state).toBe('firing');
  });
});

describe('AlertEngine on one database', () => {
  let dir: string;
  let database: Database;
  let high = true;
  const source = new FunctionMetricSource([
    { metric: 'latency_p95_ms', labels: { model: 'chat' }, value: () => (high ? 900 : 100) },
    { metric: 'latency_p95_ms', labels: { model: 'embed' }, value: () => 50 },
  ]);
  let sent: Alert[];
  let dispatcher: AlertDispatcher;

  const engine = (holder: string, rules: unknown[]) =>
    new AlertEngine({
      database,
      source,
      notifier: dispatcher,
      evaluation: alertEvaluationSchema.parse({ intervalMs: 100, leaseTtlMs: 60_000, leaseRenewMs: 30_000, resendFiringMs: 0 }),
      rules: rules.map((r) => alertRuleSchema.parse(r)),
      logger,
      holder,
    });
  const rule = { name: 'slow', kind: 'threshold', metric: 'latency_p95_ms', op: '>', value: 500, windowMs: 60_000, forMs: 20_000, severity: 'critical' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mcp-alert-engine-'));
    database = await openDatabase({ dataDir: dir, inMemory: true });
    await database.migrate();
  });
  afterAll(async () => {
    await database?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await database.db.execute(sql`truncate alert_instances, alert_transitions, alert_outbox, alert_leases, alert_rules`);
    sent = [];
    high = true;
    dispatcher = new AlertDispatcher({
      sinks: [{ name: 'rec', sink: { send: async (a) => void sent.push(a) } }],
      delivery: alertDeliverySchema.parse({}),
      deadLetter: async () => {},
      logger,
    });
  });

  async function settle(e: AlertEngine): Promise<void> {
    for (let i = 0; i < 50 && (await e.pendingNotifications()) > 0; i++) await new Promise((r) => setTimeout(r, 20));
    await dispatcher.idle();
  }

  it('pending for `for`, fires once, resolves once; history and outbox in the database', async () => {
    const e = engine('a', [rule]);
    await e.start();
    const t0 = Date.now();
    await e.tick(t0);
    expect((await e.alerts(['pending'])).map((a) => a.labels)).toEqual([{ model: 'chat' }]);
    await e.tick(t0 + 10_000);
    await settle(e);
    expect(sent).toHaveLength(0);
    await e.tick(t0 + 20_000);
    await e.tick(t0 + 30_000);
    await settle(e);
    expect(sent.map((a) => [a.state, a.labels.model, a.labels.alertname, a.severity])).toEqual([['firing', 'chat', 'slow', 'critical']]);
    high = false;
    await e.tick(t0 + 40_000);
    await e.tick(t0 + 50_000);
    await settle(e);
    expect(sent.map((a) => a.state)).toEqual(['firing', 'resolved']);
    expect(sent[1]!.id).toBe(sent[0]!.id);
    const [alert] = await e.alerts(['resolved']);
    expect((await e.history(alert!.id)).map((h) => `${h.fromState}>${h.toState}`)).toEqual(['inactive>pending', 'pending>firing', 'firing>resolved']);
    expect(await e.pendingNotifications()).toBe(0);
    await e.close();
  });

  it('a silenced alert fires without a notification (nor its resolution); acknowledgement is recorded', async () => {
    const e = engine('a', [{ ...rule, forMs: 0 }]);
    await e.start();
    const t0 = Date.now();
    await e.tick(t0);
    await settle(e);
    expect(sent).toHaveLength(1);
    const [firing] = await e.alerts(['firing']);
    expect((await e.acknowledge(firing!.id, 'ops'))?.acknowledgedBy).toBe('ops');
    high = false;
    await e.tick(t0 + 10_000);
    await e.silence(firing!.id, Date.now() + 3_600_000);
    high = true;
    await e.tick(t0 + 20_000);
    high = false;
    await e.tick(t0 + 30_000);
    await settle(e);
    expect(sent.map((a) => a.state)).toEqual(['firing', 'resolved']);
    await e.close();
  });

  it('one leader: a second engine evaluates nothing; a deposed leader cannot write (fencing)', async () => {
    const a = engine('a', [{ ...rule, forMs: 0 }]);
    const b = engine('b', [{ ...rule, forMs: 0 }]);
    await a.start();
    await b.start();
    expect(a.isLeader).toBe(true);
    expect(b.isLeader).toBe(false);
    await b.tick();
    expect(await a.alerts()).toHaveLength(0);
    // The lease is taken by b (as after a's expiry): a's next write is refused by the epoch check.
    await database.db.execute(sql`update alert_leases set expires_at = now() - interval '1 second'`);
    await (b as unknown as { renew(): Promise<void> }).renew();
    expect(b.isLeader).toBe(true);
    await a.tick();
    expect(await a.alerts()).toHaveLength(0);
    await b.tick();
    await settle(b);
    expect((await b.alerts(['firing'])).length).toBe(1);
    expect(sent).toHaveLength(1);
    await a.close();
    await b.close();
  });

  it('rules by API: bounded, validated, config rules read-only', async () => {
    const e = engine('a', [rule]);
    await e.start();
    await expect(e.rules.create({ name: 'x', kind: 'threshold', metric: 'm', op: '>', value: 1, windowMs: 10 })).rejects.toMatchObject({
      code: 'MCP_VALIDATION_FAILED',
    });
    await e.rules.create({ name: 'errors', kind: 'burnRate', metric: 'error_rate', objective: 0.999 });
    await expect(e.rules.create({ name: 'errors', kind: 'rate', metric: 'm', op: '>', value: 1 })).rejects.toMatchObject({ code: 'MCP_DUPLICATE_ID' });
    await expect(e.rules.delete('slow')).rejects.toMatchObject({ code: 'MCP_CONFLICT' });
    expect((await e.rules.list()).map((r) => [r.rule.name, r.source])).toEqual([
      ['errors', 'api'],
      ['slow', 'config'],
    ]);
    expect(await e.rules.delete('errors')).toBe(true);
    await e.close();
  });

  it('deleting a rule resolves its firing alert (notified once)', async () => {
    const e = engine('a', []);
    await e.start();
    await e.rules.create({ ...rule, name: 'api-slow', forMs: 0 });
    await e.tick();
    await e.rules.delete('api-slow');
    await e.tick();
    await settle(e);
    expect(sent.map((a) => [a.rule, a.state, a.severity])).toEqual([
      ['api-slow', 'firing', 'critical'],
      ['api-slow', 'resolved', 'critical'],
    ]);
    await e.close();
  });
});
