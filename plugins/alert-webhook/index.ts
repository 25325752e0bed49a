/**
 * `alert-webhook`: POSTs each alert state change as JSON to a URL, signed so the receiver can
 * check it came from this gateway and is fresh. Headers: `x-capibara-timestamp` (Unix seconds) and
 * `x-capibara-signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with the shared secret>`.
 * A receiver recomputes the HMAC over the raw body, compares in constant time and refuses a
 * timestamp older than its tolerance (replay); `verifyWebhookSignature` does exactly that.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { definePlugin, McpError, type Alert, type AlertSink, type PluginContext } from 'capibara-mcp';
import { alertSinkClient, alertToJson, postAlert, resolveSecret, secretReference, type AlertJson } from 'capibara-mcp/sdk';

export const optionsSchema = z.strictObject({
  /** Where alerts are POSTed (http or https; checked against security.upstream on every connection). */
  url: z.url({ protocol: /^https?$/ }),
  /** The HMAC-SHA256 key shared with the receiver: `env:NAME` or `file:PATH` (a literal works, with a warning). */
  secret: secretReference,
  /** Header carrying `sha256=<hex>`. */
  signatureHeader: z
    .string()
    .regex(/^[a-z0-9-]+$/)
    .default('x-capibara-signature'),
  /** Header carrying the Unix time (seconds) the signature covers. */
  timestampHeader: z
    .string()
    .regex(/^[a-z0-9-]+$/)
    .default('x-capibara-timestamp'),
  /** Extra headers sent with every delivery (not secrets: they may be logged). */
  headers: z.record(z.string().regex(/^[A-Za-z0-9-]+$/), z.string()).default({}),
  /** One delivery attempt gives up after this, ms (the gateway retries). */
  timeoutMs: z.number().int().min(100).max(300_000).default(10_000),
});
export type WebhookSinkOptions = z.input<typeof optionsSchema>;

/** The body of one delivery. */
export interface WebhookBody {
  version: '1';
  /** When this delivery was made (the signature's timestamp covers it too). */
  sentAt: string;
  alert: AlertJson;
}

/** The signature header value for a body sent at `timestamp` (Unix seconds). */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * Receiver side: whether `signature` is right for the raw `body` and `timestamp`, and the timestamp
 * is within `toleranceSec` of now (default 300 s).
 */
export function verifyWebhookSignature(input: {
  secret: string;
  body: string | Buffer;
  timestamp: string | undefined;
  signature: string | undefined;
  toleranceSec?: number;
  nowSec?: number;
}): { ok: true } | { ok: false; reason: 'missing' | 'stale' | 'mismatch' } {
  const { secret, timestamp, signature } = input;
  if (!timestamp || !signature || !/^\d{1,12}$/.test(timestamp)) return { ok: false, reason: 'missing' };
  const now = input.nowSec ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - Number(timestamp)) > (input.toleranceSec ?? 300)) return { ok: false, reason: 'stale' };
  const expected = Buffer.from(signWebhook(secret, Number(timestamp), Buffer.isBuffer(input.body) ? input.body.toString('utf8') : input.body));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given) ? { ok: true } : { ok: false, reason: 'mismatch' };
}

export function createWebhookSink(
  ctx: Pick<PluginContext, 'logger' | 'addressPolicy' | 'name'>,
  input: z.output<typeof optionsSchema>,
  now = Date.now,
): AlertSink & { close(): Promise<void> } {
  const secret = resolveSecret(input.secret);
  if (secret.literal) ctx.logger.warn({ option: 'secret' }, 'alert-webhook: the secret is written in the config; use env:NAME or file:PATH');
  if (secret.value.length < 16) throw new McpError('MCP_CONFIG_INVALID', `alert sink "${ctx.name}": the webhook secret must be at least 16 characters`);
  const client = alertSinkClient(ctx, input.timeoutMs);
  return {
    async send(alert: Alert, signal: AbortSignal): Promise<void> {
      const sentAtMs = now();
      const timestamp = Math.floor(sentAtMs / 1000);
      const body: WebhookBody = { version: '1', sentAt: new Date(sentAtMs).toISOString(), alert: alertToJson(alert) };
      // UpstreamClient serialises `json` with JSON.stringify, as here: the signature covers the exact bytes sent.
      const raw = JSON.stringify(body);
      await postAlert(client, {
        url: input.url,
        json: body,
        headers: { ...input.headers, [input.timestampHeader]: String(timestamp), [input.signatureHeader]: signWebhook(secret.value, timestamp, raw) },
        signal,
        timeoutMs: input.timeoutMs,
        what: 'alert webhook',
      });
    },
    close: () => client.close(),
  };
}

export default definePlugin({
  name: 'alert-webhook',
  kind: 'alertSink',
  apiVersion: '^1.0.0',
  description: 'POSTs alerts as JSON, signed with HMAC-SHA256 over a timestamp and the body.',
  options: optionsSchema,
  setup(ctx, options) {
    const sink = createWebhookSink(ctx, options);
    ctx.onClose(() => sink.close());
    return { send: (alert, signal) => sink.send(alert, signal) };
  },
});
