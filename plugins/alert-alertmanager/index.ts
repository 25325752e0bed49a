/**
 * `alert-alertmanager`: sends alerts to a Prometheus Alertmanager with `POST /api/v2/alerts`, so
 * its routing, grouping, inhibition, silences and receivers (PagerDuty, Opsgenie, e-mail, …) take
 * over. Alertmanager knows an alert by its label set: `alertname` (the rule), `severity` and the
 * alert's labels (plus the configured static labels). A firing alert is sent without `endsAt`
 * (Alertmanager resolves it by itself after its `resolve_timeout` unless it is sent again); its
 * resolution is the same label set with `endsAt`, which resolves it at once.
 */
import { z } from 'zod';
import { definePlugin, type Alert, type AlertSink, type PluginContext } from 'capibara-mcp';
import { alertSinkClient, joinUrl, postAlert, resolveSecret, secretReference } from 'capibara-mcp/sdk';

const labelName = z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/, 'a Prometheus label name');

export const optionsSchema = z.strictObject({
  /** Alertmanager's base URL, e.g. http://alertmanager:9093 (a path prefix such as /alertmanager is kept). */
  url: z.url({ protocol: /^https?$/ }),
  /** Labels added to every alert (e.g. `{ source: capibara-mcp, cluster: eu-1 }`); the alert's own labels win. */
  labels: z.record(labelName, z.string()).default({}),
  /** `generatorURL` of every alert (e.g. the gateway's dashboard). */
  generatorUrl: z.url().optional(),
  /** HTTP basic auth in front of Alertmanager: the user, and the password as a secret reference (`env:NAME`, `file:PATH`). */
  basicAuth: z.strictObject({ username: z.string().min(1), password: secretReference }).optional(),
  /** One delivery attempt gives up after this, ms (the gateway retries). */
  timeoutMs: z.number().int().min(100).max(300_000).default(10_000),
});
export type AlertmanagerSinkOptions = z.input<typeof optionsSchema>;

/** Label names must match [a-zA-Z_][a-zA-Z0-9_]*: other characters become `_`. */
function labelKey(name: string): string {
  const k = name.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[a-zA-Z_]/.test(k) ? k : `_${k}`;
}

/** The API v2 postable alert for one state change. */
export function alertmanagerAlert(
  alert: Alert,
  options: Pick<z.output<typeof optionsSchema>, 'labels' | 'generatorUrl'> = { labels: {} },
): Record<string, unknown> {
  const labels: Record<string, string> = { ...options.labels };
  for (const [k, v] of Object.entries(alert.labels)) labels[labelKey(k)] = v;
  labels.alertname = alert.rule;
  labels.severity = alert.severity;
  const annotations: Record<string, string> = { summary: alert.summary, alert_id: alert.id };
  if (alert.value !== undefined) annotations.value = String(alert.value);
  return {
    labels,
    annotations,
    startsAt: alert.startsAt.toISOString(),
    ...(alert.state === 'resolved' ? { endsAt: (alert.endsAt ?? new Date()).toISOString() } : {}),
    ...(options.generatorUrl ? { generatorURL: options.generatorUrl } : {}),
  };
}

export function createAlertmanagerSink(
  ctx: Pick<PluginContext, 'logger' | 'addressPolicy'>,
  input: z.output<typeof optionsSchema>,
): AlertSink & { close(): Promise<void> } {
  const headers: Record<string, string> = {};
  if (input.basicAuth) {
    const password = resolveSecret(input.basicAuth.password);
    if (password.literal)
      ctx.logger.warn({ option: 'basicAuth.password' }, 'alert-alertmanager: the password is written in the config; use env:NAME or file:PATH');
    headers.authorization = `Basic ${Buffer.from(`${input.basicAuth.username}:${password.value}`).toString('base64')}`;
  }
  const endpoint = joinUrl(input.url, '/api/v2/alerts');
  const client = alertSinkClient(ctx, input.timeoutMs);
  return {
    async send(alert, signal) {
      await postAlert(client, { url: endpoint, json: [alertmanagerAlert(alert, input)], headers, signal, timeoutMs: input.timeoutMs, what: 'Alertmanager' });
    },
    close: () => client.close(),
  };
}

export default definePlugin({
  name: 'alert-alertmanager',
  kind: 'alertSink',
  apiVersion: '^1.0.0',
  description: 'Sends alerts and their resolution to Prometheus Alertmanager (POST /api/v2/alerts).',
  options: optionsSchema,
  setup(ctx, options) {
    const sink = createAlertmanagerSink(ctx, options);
    ctx.onClose(() => sink.close());
    return { send: (alert, signal) => sink.send(alert, signal) };
  },
});
