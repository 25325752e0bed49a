import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { describeAlertSinkConformance, listenOnLoopback, sampleAlert, startSilentServer, testPluginContext, type LoopbackServer } from 'capibara-mcp/testing';
import plugin, { optionsSchema, signWebhook, verifyWebhookSignature, type WebhookBody } from './index.ts';

const SECRET = randomBytes(24).toString('base64url');
process.env.TEST_ALERT_WEBHOOK_SECRET = SECRET;

interface Delivery {
  id: string;
  state: 'firing' | 'resolved';
  valid: boolean;
  body: WebhookBody;
}

/** A webhook receiver that checks every signature on its own (HMAC-SHA256 over "<timestamp>.<raw body>", 5 min tolerance). */
async function startReceiver(): Promise<LoopbackServer & { deliveries: Delivery[] }> {
  const deliveries: Delivery[] = [];
  const server = await listenOnLoopback((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/fail') return void res.writeHead(500).end('{"error":"down"}');
      const raw = Buffer.concat(chunks).toString('utf8');
      const ts = String(req.headers['x-capibara-timestamp'] ?? '');
      const given = Buffer.from(String(req.headers['x-capibara-signature'] ?? ''));
      const expected = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(`${ts}.${raw}`).digest('hex')}`);
      const fresh = Math.abs(Date.now() / 1000 - Number(ts)) <= 300;
      const valid = fresh && given.length === expected.length && timingSafeEqual(given, expected);
      const body = JSON.parse(raw) as WebhookBody;
      deliveries.push({ id: body.alert.id, state: body.alert.state, valid, body });
      res.writeHead(valid ? 204 : 401).end();
    });
  });
  return Object.assign(server, { deliveries });
}

let receiver: Awaited<ReturnType<typeof startReceiver>>;
const silent = await startSilentServer();

describeAlertSinkConformance('alert-webhook', {
  async create(ctx) {
    receiver = await startReceiver();
    const make = (url: string, timeoutMs = 10_000) => plugin.setup(ctx, optionsSchema.parse({ url, secret: 'env:TEST_ALERT_WEBHOOK_SECRET', timeoutMs }));
    return {
      sink: await make(`${receiver.origin}/hook`),
      failingSink: await make(`${receiver.origin}/fail`),
      stalledSink: await make(silent.url, 120_000),
      // Only deliveries whose signature checked out count as received.
      received: () => receiver.deliveries.filter((d) => d.valid),
      secrets: [SECRET],
      close: async () => {
        await receiver.close();
        await silent.close();
      },
    };
  },
});

describe('alert-webhook', () => {
  it('every delivery carries a valid signature over its exact body, with the alert as JSON', () => {
    expect(receiver.deliveries.length).toBeGreaterThan(0);
    expect(receiver.deliveries.every((d) => d.valid)).toBe(true);
    const d = receiver.deliveries[0]!;
    expect(d.body).toMatchObject({
      version: '1',
      alert: { rule: 'HighLatency', severity: 'critical', labels: { model: 'capibara-mini', version: 'v1' }, value: 812.5 },
    });
    expect(Date.parse(d.body.alert.startsAt)).toBeGreaterThan(0);
  });

  it('verifyWebhookSignature accepts a right signature, refuses a tampered body, another secret and a stale timestamp', () => {
    const body = JSON.stringify({ version: '1', alert: { id: 'a' } });
    const now = 1_800_000_000;
    const signature = signWebhook(SECRET, now, body);
    expect(verifyWebhookSignature({ secret: SECRET, body, timestamp: String(now), signature, nowSec: now + 10 })).toEqual({ ok: true });
    expect(verifyWebhookSignature({ secret: SECRET, body: body.replace('"a"', '"b"'), timestamp: String(now), signature, nowSec: now })).toEqual({
      ok: false,
      reason: 'mismatch',
    });
    expect(verifyWebhookSignature({ secret: 'another-secret-of-enough-length', body, timestamp: String(now), signature, nowSec: now })).toEqual({
      ok: false,
      reason: 'mismatch',
    });
    expect(verifyWebhookSignature({ secret: SECRET, body, timestamp: String(now), signature, nowSec: now + 301 })).toEqual({ ok: false, reason: 'stale' });
    // A replayed body with a new timestamp fails: the timestamp is signed too.
    expect(verifyWebhookSignature({ secret: SECRET, body, timestamp: String(now + 60), signature, nowSec: now + 60 })).toEqual({
      ok: false,
      reason: 'mismatch',
    });
    expect(verifyWebhookSignature({ secret: SECRET, body, timestamp: undefined, signature, nowSec: now })).toEqual({ ok: false, reason: 'missing' });
  });

  it('refuses a short secret and a missing variable at setup, naming neither value', async () => {
    const ctx = testPluginContext('hook');
    await expect(async () => plugin.setup(ctx, optionsSchema.parse({ url: 'http://127.0.0.1:9/x', secret: 'short' }))).rejects.toThrow(
      /at least 16 characters/,
    );
    await expect(async () => plugin.setup(ctx, optionsSchema.parse({ url: 'http://127.0.0.1:9/x', secret: 'env:NO_SUCH_ALERT_SECRET_VAR' }))).rejects.toThrow(
      /env:NO_SUCH_ALERT_SECRET_VAR: the environment variable is not set/,
    );
    expect(() => optionsSchema.parse({ url: 'ftp://x/y', secret: 'env:X' })).toThrow();
    await ctx.close();
  });

  it('an unreachable receiver rejects with a message naming the sink, not the URL', async () => {
    const ctx = testPluginContext('hook');
    const sink = await plugin.setup(ctx, optionsSchema.parse({ url: 'http://127.0.0.1:9/hook?token=abc123secret', secret: 'env:TEST_ALERT_WEBHOOK_SECRET' }));
    const err = (await sink.send(sampleAlert(), new AbortController().signal).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/^alert webhook failed: /);
    expect(err.message).not.toContain('abc123secret');
    await ctx.close();
  });
});
