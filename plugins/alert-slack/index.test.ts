import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { describeAlertSinkConformance, listenOnLoopback, sampleAlert, startSilentServer, testPluginContext, type LoopbackServer } from 'capibara-mcp/testing';
import plugin, { optionsSchema, slackMessage } from './index.ts';

const TOKEN = randomBytes(18).toString('hex');
const WRONG_TOKEN = randomBytes(18).toString('hex');

interface Posted {
  path: string;
  message: { text: string; attachments: Array<{ color: string; footer: string; fields: Array<{ title: string; value: string }> }> };
}

/** A stand-in for hooks.slack.com: 200 `ok` on the known webhook path, 403 `invalid_token` on others (as Slack answers). */
async function startSlack(): Promise<LoopbackServer & { posted: Posted[] }> {
  const posted: Posted[] = [];
  const server = await listenOnLoopback((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.headers['content-type'] !== 'application/json') return void res.writeHead(400).end('invalid_payload');
      if (req.url !== `/services/T000/B000/${TOKEN}`) return void res.writeHead(403, { 'content-type': 'text/plain' }).end('invalid_token');
      posted.push({ path: req.url, message: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Posted['message'] });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  return Object.assign(server, { posted });
}

let slack: Awaited<ReturnType<typeof startSlack>>;

describeAlertSinkConformance('alert-slack', {
  async create(ctx) {
    slack = await startSlack();
    const silent = await startSilentServer();
    process.env.TEST_SLACK_URL = `${slack.origin}/services/T000/B000/${TOKEN}`;
    process.env.TEST_SLACK_WRONG_URL = `${slack.origin}/services/T000/B000/${WRONG_TOKEN}`;
    process.env.TEST_SLACK_SILENT_URL = `${silent.url}/services/T000/B000/${TOKEN}`;
    return {
      sink: await plugin.setup(ctx, optionsSchema.parse({ url: 'env:TEST_SLACK_URL' })),
      failingSink: await plugin.setup(ctx, optionsSchema.parse({ url: 'env:TEST_SLACK_WRONG_URL' })),
      stalledSink: await plugin.setup(ctx, optionsSchema.parse({ url: 'env:TEST_SLACK_SILENT_URL', timeoutMs: 120_000 })),
      received: () =>
        slack.posted.map((p) => ({
          id: p.message.attachments[0]!.footer.replace('alert ', ''),
          state: p.message.text.includes('RESOLVED') ? ('resolved' as const) : ('firing' as const),
        })),
      secrets: [TOKEN, WRONG_TOKEN],
      close: async () => {
        await slack.close();
        await silent.close();
      },
    };
  },
});

describe('alert-slack', () => {
  it('posts a message coloured by severity, green when resolved, with labels and value as fields', () => {
    const firing = slack.posted.find((p) => p.message.text.includes('FIRING'))!;
    expect(firing.message.text).toContain('[critical] HighLatency: p99 latency of capibara-mini above 500 ms');
    expect(firing.message.attachments[0]!.color).toBe('#d0021b');
    expect(firing.message.attachments[0]!.fields).toEqual(expect.arrayContaining([{ title: 'model', value: 'capibara-mini', short: true }]));
    const resolved = slack.posted.find((p) => p.message.text.includes('RESOLVED'))!;
    expect(resolved.message.attachments[0]!.color).toBe('#2eb67d');
  });

  it('mentions on critical firing alerts only', () => {
    const opts = { mentionOnCritical: '<!here>' };
    expect(slackMessage(sampleAlert('firing'), opts).text).toMatch(/^<!here> /);
    expect(slackMessage(sampleAlert('resolved'), opts).text).not.toContain('<!here>');
    expect(slackMessage({ ...sampleAlert('firing'), severity: 'warning' }, opts).text).not.toContain('<!here>');
  });

  it('a reference that does not hold a URL fails setup without showing it', async () => {
    const ctx = testPluginContext('slack');
    process.env.TEST_SLACK_NOT_URL = `not a url ${TOKEN}`;
    const err = (await Promise.resolve()
      .then(() => plugin.setup(ctx, optionsSchema.parse({ url: 'env:TEST_SLACK_NOT_URL' })))
      .catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/option url does not hold a valid URL/);
    expect(err.message).not.toContain(TOKEN);
    await ctx.close();
  });
});
