/**
 * `alert-email`: mails each alert state change over SMTP (nodemailer): a plain-text message with
 * the summary, labels and value, subject `[capibara-mcp] FIRING|RESOLVED [severity] rule`. Each
 * delivery opens its own connection (alerts are rare; nothing stays open), checked against
 * security.upstream like every upstream connection; the abort signal closes it. STARTTLS is
 * required by default; the password comes from a secret reference and never reaches a log or error.
 */
import { connect, type Socket } from 'node:net';
import { z } from 'zod';
import { definePlugin, McpError, type Alert, type AlertSink, type PluginContext } from 'capibara-mcp';
import { deliveryFailure, resolveSecret, secretReference } from 'capibara-mcp/sdk';

const address = z
  .string()
  .min(3)
  .max(320)
  .regex(/^[^\s@]+@[^\s@]+$|^.*<[^\s@]+@[^\s@]+>$/, 'an e-mail address');

export const optionsSchema = z.strictObject({
  /** SMTP server host name or address. */
  host: z.string().min(1),
  /** SMTP port: 587 (submission, STARTTLS), 465 (implicit TLS) or 25. */
  port: z.number().int().min(1).max(65535).default(587),
  /** `starttls` (default: upgrade, refuse a server without it), `implicit` (TLS from the start, port 465), `none` (plain text; a local relay only). */
  tls: z.enum(['starttls', 'implicit', 'none']).default('starttls'),
  /** Verify the server's certificate (turn off only for a test server with a self-signed one). */
  verifyCertificate: z.boolean().default(true),
  /** SMTP login; none: send without AUTH. */
  user: z.string().min(1).optional(),
  /** The SMTP password as a secret reference (`env:SMTP_PASSWORD`, `file:PATH`). */
  password: secretReference.optional(),
  /** Sender, e.g. `Capibara MCP <alerts@example.com>`. */
  from: address,
  /** Recipients. */
  to: z.array(address).min(1).max(100),
  /** Subject prefix. */
  subjectPrefix: z.string().max(100).default('[capibara-mcp]'),
  /** One delivery attempt (connect, greeting, every command) gives up after this, ms (the gateway retries). */
  timeoutMs: z.number().int().min(100).max(300_000).default(30_000),
});
export type EmailSinkOptions = z.input<typeof optionsSchema>;

/** Subject and plain-text body of the mail for one alert state change. */
export function emailMessage(alert: Alert, subjectPrefix = '[capibara-mcp]'): { subject: string; text: string } {
  const resolved = alert.state === 'resolved';
  const subject = `${subjectPrefix} ${resolved ? 'RESOLVED' : 'FIRING'} [${alert.severity}] ${alert.rule}`.replace(/[\r\n]+/g, ' ');
  const lines = [
    alert.summary,
    '',
    `state:     ${alert.state}`,
    `rule:      ${alert.rule}`,
    `severity:  ${alert.severity}`,
    ...(alert.value !== undefined ? [`value:     ${alert.value}`] : []),
    `since:     ${alert.startsAt.toISOString()}`,
    ...(resolved ? [`resolved:  ${(alert.endsAt ?? new Date()).toISOString()}`] : []),
    ...Object.entries(alert.labels).map(([k, v]) => `${`${k}:`.padEnd(10)} ${v}`),
    `alert id:  ${alert.id}`,
  ];
  return { subject, text: `${lines.join('\n')}\n` };
}

/** An SMTP failure as an error naming its SMTP code and reply status only (the reply text may echo what was sent). */
function smtpFailure(err: unknown, secrets: string[]): McpError {
  if (err instanceof McpError) return deliveryFailure('e-mail delivery', err);
  const e = err as { code?: string; responseCode?: number; name?: string } | undefined;
  if (e?.name === 'AbortError' || e?.code === 'ABORT_ERR') return new McpError('MCP_CANCELLED', 'e-mail delivery failed: aborted', { retryable: true });
  const what = [e?.code, e?.responseCode].filter((x) => x !== undefined).join(' ') || 'error';
  let message = `e-mail delivery failed: ${what}`;
  for (const s of secrets) if (s) message = message.split(s).join('***');
  const code = e?.code === 'ECONNECTION' || e?.code === 'ETIMEDOUT' || e?.code === 'EDNS' ? 'MCP_UPSTREAM_UNAVAILABLE' : 'MCP_UPSTREAM_ERROR';
  return new McpError(code, message, { retryable: true, details: e?.responseCode !== undefined ? { responseCode: e.responseCode } : {} });
}

export async function createEmailSink(
  ctx: Pick<PluginContext, 'logger' | 'addressPolicy' | 'name'>,
  input: z.output<typeof optionsSchema>,
): Promise<AlertSink> {
  if ((input.user === undefined) !== (input.password === undefined)) {
    throw new McpError('MCP_CONFIG_INVALID', `alert sink "${ctx.name}": give both user and password, or neither`);
  }
  const password = input.password === undefined ? undefined : resolveSecret(input.password);
  if (password?.literal) ctx.logger.warn({ option: 'password' }, 'alert-email: the SMTP password is written in the config; use env:NAME or file:PATH');
  const { default: nodemailer } = await import('nodemailer');
  const policy = ctx.addressPolicy;
  const transport = nodemailer.createTransport({
    host: input.host,
    port: input.port,
    secure: input.tls === 'implicit',
    requireTLS: input.tls === 'starttls',
    ignoreTLS: input.tls === 'none',
    tls: { rejectUnauthorized: input.verifyCertificate, servername: input.host },
    ...(input.user && password ? { auth: { user: input.user, pass: password.value } } : {}),
    connectionTimeout: input.timeoutMs,
    greetingTimeout: input.timeoutMs,
    socketTimeout: input.timeoutMs,
    logger: false,
    debug: false,
    // Our own connection, through the address policy (names and every resolved address checked).
    getSocket: (_options: unknown, callback: (err: Error | null, socket?: { connection: Socket }) => void) => {
      try {
        policy.assertHost(input.host);
      } catch (err) {
        return callback(err as Error);
      }
      policy.lookup(input.host, { all: false }, (err, resolved) => {
        if (err) return callback(err);
        const socket = connect({ host: resolved as string, port: input.port, timeout: input.timeoutMs });
        const fail = (e: Error) => callback(e);
        socket.once('error', fail);
        socket.once('timeout', () => socket.destroy(Object.assign(new Error('connection timed out'), { code: 'ETIMEDOUT' })));
        socket.once('connect', () => {
          socket.off('error', fail);
          socket.setTimeout(0);
          callback(null, { connection: socket });
        });
      });
    },
  } as Parameters<typeof nodemailer.createTransport>[0]);
  const secrets = password ? [password.value] : [];
  return {
    async send(alert, signal) {
      if (signal.aborted) throw new McpError('MCP_CANCELLED', 'e-mail delivery failed: aborted', { retryable: true });
      const { subject, text } = emailMessage(alert, input.subjectPrefix);
      try {
        await transport.sendMail({
          from: input.from,
          to: input.to,
          subject,
          text,
          headers: { 'x-capibara-alert-id': alert.id, 'x-capibara-alert-state': alert.state },
          signal,
        } as Parameters<typeof transport.sendMail>[0]);
      } catch (err) {
        throw smtpFailure(err, secrets);
      }
    },
  };
}

export default definePlugin({
  name: 'alert-email',
  kind: 'alertSink',
  apiVersion: '^1.0.0',
  description: 'Mails alerts over SMTP (nodemailer).',
  options: optionsSchema,
  setup: (ctx, options) => createEmailSink(ctx, options),
});
