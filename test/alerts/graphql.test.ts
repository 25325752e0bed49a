import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertEngine } from '../../src/alerts/engine.ts';
import { alertEvaluationSchema } from '../../src/alerts/rules.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { FunctionMetricSource } from './metric-sources.ts';

describe('alerts over GraphQL', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({
      // No metrics history, so no metric source: this gateway serves alerts but does not evaluate them.
      monitoring: { history: { enabled: false } },
      alerts: { rules: [{ name: 'chat-slow', kind: 'threshold', metric: 'latency_p95_ms', match: { model: 'chat' }, op: '>', value: 500, forMs: 0 }] },
    });
  });
  afterAll(async () => gw?.close());

  it('lists config rules; creates, updates and deletes API rules; refuses bad rules with a clear error', async () => {
    const list = await gw.gql<{ alertRules: Array<{ name: string; source: string; kind: string }> }>('{ alertRules { name source kind } }');
    expect(list.data?.alertRules).toEqual([{ name: 'chat-slow', source: 'config', kind: 'threshold' }]);
    const rule = { name: 'latency-anomaly', kind: 'anomaly', metric: 'latency_p95_ms', sensitivity: 'high' };
    const created = await gw.gql<{ createAlertRule: { name: string; spec: { method: string; points: number } } }>(
      'mutation($r: JSON!) { createAlertRule(rule: $r) { name spec } }',
      { r: rule },
    );
    expect(created.errors).toBeUndefined();
    expect(created.data?.createAlertRule.spec).toMatchObject({ method: 'ewma', points: 2 });
    const updated = await gw.gql<{ updateAlertRule: { spec: { sensitivity: string } } }>(
      'mutation($r: JSON!) { updateAlertRule(name: "latency-anomaly", rule: $r) { spec } }',
      {
        r: { ...rule, sensitivity: 'low' },
      },
    );
    expect(updated.data?.updateAlertRule.spec.sensitivity).toBe('low');
    const bad = await gw.gql('mutation($r: JSON!) { createAlertRule(rule: $r) { name } }', {
      r: { name: 'x', kind: 'threshold', metric: 'm', op: '>>', value: 1 },
    });
    expect(bad.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    expect(bad.errors?.[0]?.message).toMatch(/op/);
    const readOnly = await gw.gql('mutation { deleteAlertRule(name: "chat-slow") }');
    expect(readOnly.errors?.[0]?.extensions?.code).toBe('MCP_CONFLICT');
    expect((await gw.gql<{ deleteAlertRule: boolean }>('mutation { deleteAlertRule(name: "latency-anomaly") }')).data?.deleteAlertRule).toBe(true);
  });

  it('alerts(state), acknowledgeAlert, silenceAlert and alertHistory over what the evaluator wrote', async () => {
    // This gateway has no metric source; an evaluator on its database (as another replica would be) writes the alert.
    const source = new FunctionMetricSource([{ metric: 'latency_p95_ms', labels: { model: 'chat' }, value: () => 900 }]);
    const evaluator = new AlertEngine({
      database: gw.services.database,
      source,
      notifier: gw.services.alerts,
      evaluation: alertEvaluationSchema.parse({ resendFiringMs: 0 }),
      rules: gw.services.config.alerts.rules,
      logger: pino({ level: 'silent' }),
      publish: (e) => gw.services.events.publish('alertEvents', e),
    });
    await evaluator.start();
    await evaluator.tick();
    const firing = await gw.gql<{ alerts: Array<{ id: string; rule: string; labels: unknown; value: number }> }>(
      '{ alerts(state: [FIRING]) { id rule labels value } }',
    );
    expect(firing.data?.alerts).toEqual([{ id: expect.any(String), rule: 'chat-slow', labels: { model: 'chat' }, value: 900 }]);
    const id = firing.data!.alerts[0]!.id;
    expect((await gw.gql('{ alerts(state: [PENDING]) { id } }')).data).toEqual({ alerts: [] });
    const ack = await gw.gql<{ acknowledgeAlert: { acknowledgedBy: string } }>('mutation($id: ID!) { acknowledgeAlert(id: $id) { acknowledgedBy } }', { id });
    expect(ack.data?.acknowledgeAlert.acknowledgedBy).toBeTruthy();
    const short = await gw.gql('mutation($id: ID!) { silenceAlert(id: $id, durationMs: 5) { id } }', { id });
    expect(short.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const silenced = await gw.gql<{ silenceAlert: { silencedUntil: string } }>(
      'mutation($id: ID!) { silenceAlert(id: $id, durationMs: 3600000) { silencedUntil } }',
      { id },
    );
    expect(new Date(silenced.data!.silenceAlert.silencedUntil).getTime()).toBeGreaterThan(Date.now());
    const missing = await gw.gql('mutation { silenceAlert(id: "nope", durationMs: 60000) { id } }');
    expect(missing.errors?.[0]?.extensions?.code).toBe('MCP_NOT_FOUND');
    const history = await gw.gql<{ alertHistory: Array<{ from: string; to: string }> }>('query($id: ID!) { alertHistory(id: $id) { from to } }', { id });
    expect(history.data?.alertHistory).toEqual([{ from: 'INACTIVE', to: 'FIRING' }]);
    await evaluator.close();
  });
});
