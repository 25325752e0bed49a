/**
 * Alert dead letters over GraphQL, through a real gateway: a webhook sink to a local receiver
 * that refuses on demand, the dispatcher dead-letters after its attempts, `alertDeadLetters`
 * pages the records (newest first, bounded), `redeliverAlertDeadLetter` takes one out and
 * queues it to its sink again; alerts:read reads, alerts:write redelivers.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenOnLoopback, sampleAlert, type LoopbackServer } from '../../src/testing/index.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

process.env.TEST_DEAD_LETTER_SECRET = randomBytes(24).toString('base64url');

type Letter = {
  id: string;
  sink: string;
  alertId: string;
  rule: string;
  state: string;
  reason: string;
  attempts: number;
  lastError: string | null;
  alert: { id: string; value?: number };
};
const PAGE = `query($first: Int, $after: String, $sink: String) {
  alertDeadLetters(first: $first, after: $after, sink: $sink) { nextCursor nodes { id sink alertId rule state reason attempts lastError alert } }
}`;
const REDELIVER = 'mutation($id: ID!) { redeliverAlertDeadLetter(id: $id) { id alertId sink } }';

describe('alert dead letters over GraphQL', () => {
  let gw: TestGateway;
  let receiver: LoopbackServer;
  /** Alert ids the receiver refuses (503); the others it takes (204). */
  const refused = new Set<string>();
  const taken: string[] = [];
  let admin: Record<string, string>;
  const keyWith = async (name: string, roles: string[]) => {
    const r = await gw.gql<{ createApiKey: { key: string } }>(
      'mutation($n: String!, $r: [String!]!) { createApiKey(input: { name: $n, roles: $r }) { key } }',
      { n: name, r: roles },
      admin,
    );
    expect(r.errors).toBeUndefined();
    return { authorization: `Bearer ${r.data!.createApiKey.key}` };
  };

  beforeAll(async () => {
    receiver = await listenOnLoopback((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const { alert } = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { alert: { id: string } };
        if (refused.has(alert.id)) return res.writeHead(503).end();
        taken.push(alert.id);
        res.writeHead(204).end();
      });
    });
    gw = await startTestGateway({
      auth: { roles: { inferrer: ['inference:invoke'] } },
      monitoring: { history: { enabled: false } },
      alerts: {
        sinks: [{ use: 'alert-webhook', name: 'ops-hook', options: { url: `${receiver.origin}/hook`, secret: 'env:TEST_DEAD_LETTER_SECRET' } }],
        delivery: { maxAttempts: 2, initialBackoffMs: 20, backoffMultiplier: 2, maxBackoffMs: 100, jitter: 0, attemptTimeoutMs: 5_000 },
      },
    });
    admin = await gw.login();
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await receiver?.close();
  });

  it('pages dead letters newest first, redelivers one to its sink, and checks alerts:read / alerts:write', async () => {
    const alerts = Array.from({ length: 3 }, () => sampleAlert('firing'));
    for (const a of alerts) {
      refused.add(a.id);
      gw.services.alerts.notify(a);
      await gw.services.alerts.idle();
    }
    const first = await gw.gql<{ alertDeadLetters: { nextCursor: string | null; nodes: Letter[] } }>(PAGE, { first: 2 }, admin);
    expect(first.errors).toBeUndefined();
    const page1 = first.data!.alertDeadLetters;
    expect(page1.nodes.map((n) => n.alertId)).toEqual([alerts[2]!.id, alerts[1]!.id]);
    expect(page1.nodes[0]).toMatchObject({
      sink: 'ops-hook',
      rule: 'HighLatency',
      state: 'FIRING',
      reason: 'failed',
      attempts: 2,
      lastError: 'alert webhook failed: HTTP 503',
    });
    expect(page1.nodes[0]!.alert).toMatchObject({ id: alerts[2]!.id, value: 812.5 });
    expect(page1.nextCursor).toBeTruthy();
    const second = await gw.gql<{ alertDeadLetters: { nextCursor: string | null; nodes: Letter[] } }>(PAGE, { first: 2, after: page1.nextCursor }, admin);
    expect(second.data!.alertDeadLetters.nodes.map((n) => n.alertId)).toEqual([alerts[0]!.id]);
    expect(second.data!.alertDeadLetters.nextCursor).toBeNull();
    expect((await gw.gql<{ alertDeadLetters: { nodes: Letter[] } }>(PAGE, { sink: 'elsewhere' }, admin)).data!.alertDeadLetters.nodes).toEqual([]);

    // Bounded and checked inputs.
    expect((await gw.gql(PAGE, { first: 501 }, admin)).errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    expect((await gw.gql(PAGE, { first: 2, after: 'x; drop' }, admin)).errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');

    // Permissions: a viewer reads but does not redeliver; a role without alerts:read reads nothing.
    const viewer = await keyWith('dl-viewer', ['viewer']);
    const inferrer = await keyWith('dl-inferrer', ['inferrer']);
    expect((await gw.gql<{ alertDeadLetters: { nodes: Letter[] } }>(PAGE, {}, viewer)).data?.alertDeadLetters.nodes).toHaveLength(3);
    expect((await gw.gql(PAGE, {}, inferrer)).errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
    const target = page1.nodes[1]!;
    expect((await gw.gql(REDELIVER, { id: target.id }, viewer)).errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');

    // Redelivered once the receiver takes it: the record is gone and the sink got the alert.
    refused.delete(target.alertId);
    const done = await gw.gql<{ redeliverAlertDeadLetter: { id: string; alertId: string; sink: string } }>(REDELIVER, { id: target.id }, admin);
    expect(done.errors).toBeUndefined();
    expect(done.data!.redeliverAlertDeadLetter).toEqual({ id: target.id, alertId: target.alertId, sink: 'ops-hook' });
    await gw.services.alerts.idle();
    expect(taken).toEqual([target.alertId]);
    const after = await gw.gql<{ alertDeadLetters: { nodes: Letter[] } }>(PAGE, {}, admin);
    expect(after.data!.alertDeadLetters.nodes.map((n) => n.alertId)).toEqual([alerts[2]!.id, alerts[0]!.id]);
    // Taken once: a second redelivery of the same record is not found.
    expect((await gw.gql(REDELIVER, { id: target.id }, admin)).errors?.[0]?.extensions?.code).toBe('MCP_NOT_FOUND');

    // Redelivered while the sink still refuses: a new dead letter replaces the old one.
    const still = page1.nodes[0]!;
    expect((await gw.gql(REDELIVER, { id: still.id }, admin)).errors).toBeUndefined();
    await gw.services.alerts.idle();
    const again = (await gw.gql<{ alertDeadLetters: { nodes: Letter[] } }>(PAGE, {}, admin)).data!.alertDeadLetters.nodes;
    expect(again.map((n) => n.alertId)).toEqual([still.alertId, alerts[0]!.id]);
    expect(Number(again[0]!.id)).toBeGreaterThan(Number(still.id));

    // The redelivery is audited like any mutation.
    const audit = await gw.gql<{ auditLog: { nodes: { action: string }[] } }>('{ auditLog(first: 50) { nodes { action } } }', {}, admin);
    expect(audit.data?.auditLog.nodes.some((n) => n.action.includes('redeliverAlertDeadLetter'))).toBe(true);
  }, 60_000);
});
