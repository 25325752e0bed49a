import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { describe, expect, it } from 'vitest';
import { describeAlertSinkConformance, sampleAlert, startSilentServer, testPluginContext } from 'capibara-mcp/testing';
import { AddressPolicy } from 'capibara-mcp/sdk';
import plugin, { emailMessage, optionsSchema } from './index.ts';

const PASSWORD = randomBytes(18).toString('base64url');
const WRONG_PASSWORD = randomBytes(18).toString('base64url');
process.env.TEST_SMTP_PASSWORD = PASSWORD;
process.env.TEST_SMTP_WRONG_PASSWORD = WRONG_PASSWORD;

interface Mail {
  from: string;
  to: string[];
  user: string | undefined;
  raw: string;
  id: string;
  state: 'firing' | 'resolved';
}

/** A real SMTP server (npm smtp-server) on loopback: AUTH PLAIN/LOGIN with one user, messages kept in memory. */
async function startSmtp(): Promise<{ port: number; mails: Mail[]; close(): Promise<void> }> {
  const mails: Mail[] = [];
  const server = new SMTPServer({
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username === 'alerts' && auth.password === PASSWORD) cb(null, { user: 'alerts' });
      else cb(new Error('Invalid username or password'));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const header = (name: string) => new RegExp(`^${name}: (.+)$`, 'im').exec(raw)?.[1]?.trim() ?? '';
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          user: session.user as string | undefined,
          raw,
          id: header('x-capibara-alert-id'),
          state: header('x-capibara-alert-state') as Mail['state'],
        });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return { port, mails, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

let smtp: Awaited<ReturnType<typeof startSmtp>>;
const base = {
  host: '127.0.0.1',
  tls: 'none',
  user: 'alerts',
  from: 'Capibara MCP <alerts@example.test>',
  to: ['oncall@example.test', 'ops@example.test'],
} as const;

describeAlertSinkConformance('alert-email', {
  async create(ctx) {
    smtp = await startSmtp();
    const silent = await startSilentServer();
    return {
      sink: await plugin.setup(ctx, optionsSchema.parse({ ...base, port: smtp.port, password: 'env:TEST_SMTP_PASSWORD' })),
      failingSink: await plugin.setup(ctx, optionsSchema.parse({ ...base, port: smtp.port, password: 'env:TEST_SMTP_WRONG_PASSWORD' })),
      stalledSink: await plugin.setup(ctx, optionsSchema.parse({ ...base, port: silent.port, password: 'env:TEST_SMTP_PASSWORD', timeoutMs: 120_000 })),
      received: () => smtp.mails,
      secrets: [PASSWORD, WRONG_PASSWORD, Buffer.from(`\0alerts\0${PASSWORD}`).toString('base64'), Buffer.from(PASSWORD).toString('base64')],
      close: async () => {
        await smtp.close();
        await silent.close();
      },
    };
  },
});

describe('alert-email', () => {
  it('the SMTP server got a mail per delivery, after login, to every recipient, with subject and body', () => {
    const mail = smtp.mails.find((m) => m.state === 'firing')!;
    expect(mail.user).toBe('alerts');
    expect(mail.from).toBe('alerts@example.test');
    expect(mail.to).toEqual(['oncall@example.test', 'ops@example.test']);
    expect(mail.raw).toMatch(/^Subject: \[capibara-mcp\] FIRING \[critical\] HighLatency/m);
    expect(mail.raw).toContain('p99 latency of capibara-mini above 500 ms');
    expect(smtp.mails.some((m) => m.state === 'resolved' && /^Subject: \[capibara-mcp\] RESOLVED/m.test(m.raw))).toBe(true);
  });

  it('the message lists labels and value; a subject cannot carry a line break', () => {
    const { subject, text } = emailMessage({ ...sampleAlert(), rule: 'A\r\nBcc: x@y' });
    expect(subject).not.toMatch(/[\r\n]/);
    expect(text).toMatch(/^model: +capibara-mini$/m);
    expect(text).toMatch(/^value: +812.5$/m);
  });

  it('user without password is refused at setup; the address policy is applied to the SMTP host', async () => {
    const ctx = testPluginContext('mail');
    await expect(async () => plugin.setup(ctx, optionsSchema.parse({ ...base, port: 25 }))).rejects.toThrow(/give both user and password/);
    const strict = await plugin.setup(
      { ...ctx, addressPolicy: new AddressPolicy({ mode: 'strict' }) },
      optionsSchema.parse({ ...base, port: smtp.port, password: 'env:TEST_SMTP_PASSWORD' }),
    );
    const before = smtp.mails.length;
    await expect(strict.send(sampleAlert(), new AbortController().signal)).rejects.toThrow(/e-mail delivery failed/);
    expect(smtp.mails.length).toBe(before);
    await ctx.close();
  });
});
