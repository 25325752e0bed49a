/**
 * `alert-slack`: posts each alert state change to a Slack incoming webhook (a message with the
 * summary and an attachment coloured by severity, green when resolved). The webhook URL is the
 * credential (its path holds the token), so it is given as a secret reference and appears in no
 * log line or error.
 */
import { z } from 'zod';
import { definePlugin, McpError, type Alert, type AlertSink, type PluginContext } from 'capibara-mcp';
import { alertSinkClient, postAlert, resolveSecret, secretReference } from 'capibara-mcp/sdk';

export const optionsSchema = z.strictObject({
  /** The incoming-webhook URL, as a secret reference: `env:SLACK_WEBHOOK_URL` or `file:PATH` (a literal URL works, with a warning). */
  url: secretReference,
  /** Shown as the sender name (when the Slack app allows overriding it). */
  username: z.string().min(1).max(80).optional(),
  /** Prefix of critical firing messages, e.g. `<!here>` or `<!subteam^ID>`. */
  mentionOnCritical: z.string().max(200).optional(),
  /** One delivery attempt gives up after this, ms (the gateway retries). */
  timeoutMs: z.number().int().min(100).max(300_000).default(10_000),
});
export type SlackSinkOptions = z.input<typeof optionsSchema>;

const COLORS = { critical: '#d0021b', warning: '#f5a623', info: '#4a90e2', resolved: '#2eb67d' } as const;

/** The Slack message for one alert state change. */
export function slackMessage(alert: Alert, options: Pick<z.output<typeof optionsSchema>, 'username' | 'mentionOnCritical'> = {}): Record<string, unknown> {
  const resolved = alert.state === 'resolved';
  const head = `${resolved ? ':white_check_mark: RESOLVED' : alert.severity === 'critical' ? ':rotating_light: FIRING' : ':warning: FIRING'} [${alert.severity}] ${alert.rule}`;
  const mention = !resolved && alert.severity === 'critical' && options.mentionOnCritical ? `${options.mentionOnCritical} ` : '';
  const fields = [
    ...Object.entries(alert.labels).map(([title, value]) => ({ title, value, short: true })),
    ...(alert.value !== undefined ? [{ title: 'value', value: String(alert.value), short: true }] : []),
    { title: resolved ? 'resolved at' : 'since', value: (resolved ? (alert.endsAt ?? new Date()) : alert.startsAt).toISOString(), short: true },
  ];
  return {
    text: `${mention}${head}: ${alert.summary}`,
    ...(options.username ? { username: options.username } : {}),
    attachments: [{ color: resolved ? COLORS.resolved : COLORS[alert.severity], fallback: alert.summary, fields, footer: `alert ${alert.id}` }],
  };
}

export function createSlackSink(
  ctx: Pick<PluginContext, 'logger' | 'addressPolicy' | 'name'>,
  input: z.output<typeof optionsSchema>,
): AlertSink & { close(): Promise<void> } {
  const secret = resolveSecret(input.url);
  if (secret.literal) ctx.logger.warn({ option: 'url' }, 'alert-slack: the webhook URL (a credential) is written in the config; use env:NAME or file:PATH');
  let url: URL;
  try {
    url = new URL(secret.value);
  } catch {
    throw new McpError('MCP_CONFIG_INVALID', `alert sink "${ctx.name}": option url does not hold a valid URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new McpError('MCP_CONFIG_INVALID', `alert sink "${ctx.name}": option url must be an http(s) URL`);
  // No logger for the client: it would log the URL's path, which holds the token.
  // No logger: the webhook URL is the credential.
  const client = alertSinkClient({ addressPolicy: ctx.addressPolicy }, input.timeoutMs, 2);
  return {
    async send(alert, signal) {
      await postAlert(client, { url: url.href, json: slackMessage(alert, input), signal, timeoutMs: input.timeoutMs, what: 'Slack webhook' });
    },
    close: () => client.close(),
  };
}

export default definePlugin({
  name: 'alert-slack',
  kind: 'alertSink',
  apiVersion: '^1.0.0',
  description: 'Posts alerts to a Slack incoming webhook.',
  options: optionsSchema,
  setup(ctx, options) {
    const sink = createSlackSink(ctx, options);
    ctx.onClose(() => sink.close());
    return { send: (alert, signal) => sink.send(alert, signal) };
  },
});
