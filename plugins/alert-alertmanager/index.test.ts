/**
 * Against a real Prometheus Alertmanager (Debian package prometheus-alertmanager): the sink posts to
 * its API v2, and Alertmanager's own webhook receiver (send_resolved) tells a local HTTP server what it
 * notified: the firing alert, then its resolution.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  describeAlertSinkConformance,
  freeLoopbackPort,
  listenOnLoopback,
  sampleAlert,
  startSilentServer,
  testPluginContext,
  type LoopbackServer,
} from 'capibara-mcp/testing';
import plugin, { alertmanagerAlert, optionsSchema } from './index.ts';

const BIN = ['prometheus-alertmanager', 'alertmanager'].find((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0);

interface Notified {
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** Alertmanager on a free loopback port, routing every alert on its own (group_by: ['...']) to a local webhook receiver. */
async function startAlertmanager(): Promise<{ url: string; notified: Notified[]; close(): Promise<void> }> {
  const notified: Notified[] = [];
  const receiver: LoopbackServer = await listenOnLoopback((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { alerts: Notified[] };
      notified.push(...body.alerts);
      res.writeHead(200).end();
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'mcp-alertmanager-'));
  writeFileSync(
    join(dir, 'alertmanager.yml'),
    [
      'route:',
      '  receiver: local',
      "  group_by: ['...']",
      '  group_wait: 100ms',
      '  group_interval: 1s',
      '  repeat_interval: 1h',
      'receivers:',
      '  - name: local',
      '    webhook_configs:',
      `      - url: ${receiver.origin}/alertmanager`,
      '        send_resolved: true',
      '',
    ].join('\n'),
  );
  const port = await freeLoopbackPort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    BIN!,
    [
      `--config.file=${join(dir, 'alertmanager.yml')}`,
      `--storage.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--cluster.listen-address=',
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const until = Date.now() + 30_000;
  for (;;) {
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (child.exitCode !== null || Date.now() > until) throw new Error(`alertmanager did not start: ${stderr.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    notified,
    async close() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      await receiver.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

if (!BIN) {
  describe('alert-alertmanager', () => {
    it.skip('needs Alertmanager: apt-get install prometheus-alertmanager (binary prometheus-alertmanager or alertmanager on PATH)', () => {});
  });
} else {
  // One Alertmanager for the whole file (the suite's tests and the ones below).
  const am = await startAlertmanager();
  afterAll(() => am.close());

  describeAlertSinkConformance('alert-alertmanager', {
    async create(ctx) {
      const silent = await startSilentServer();
      return {
        sink: await plugin.setup(ctx, optionsSchema.parse({ url: am.url, labels: { source: 'capibara-mcp' } })),
        // No such path on Alertmanager: 404.
        failingSink: await plugin.setup(ctx, optionsSchema.parse({ url: `${am.url}/no-such-prefix` })),
        stalledSink: await plugin.setup(ctx, optionsSchema.parse({ url: silent.url, timeoutMs: 120_000 })),
        received: () => am.notified.map((n) => ({ id: n.annotations.alert_id ?? '', state: n.status })),
        secrets: [],
        // Alertmanager batches: group_wait, then a resolution at the next group_interval.
        receiveTimeoutMs: 20_000,
        close: () => silent.close(),
      };
    },
    timeoutMs: 60_000,
  });

  describe('alert-alertmanager', () => {
    it('what Alertmanager notified carries the rule as alertname, the severity, the labels, static labels and the summary', () => {
      const n = am.notified.find((x) => x.status === 'firing')!;
      expect(n.labels).toMatchObject({ alertname: 'HighLatency', severity: 'critical', model: 'capibara-mini', version: 'v1', source: 'capibara-mcp' });
      expect(n.annotations).toMatchObject({ summary: 'p99 latency of capibara-mini above 500 ms for 5 minutes', value: '812.5' });
    });

    it('a firing alert is active in its API until the resolution ends it', { timeout: 30_000 }, async () => {
      const ctx = testPluginContext('am');
      const sink = await plugin.setup(ctx, optionsSchema.parse({ url: am.url }));
      const alert = { ...sampleAlert('firing'), labels: { model: 'capibara-mini', probe: Math.random().toString(36).slice(2) } };
      const active = async () => {
        const r = await fetch(`${am.url}/api/v2/alerts?active=true&filter=${encodeURIComponent(`probe="${alert.labels.probe}"`)}`);
        return ((await r.json()) as unknown[]).length;
      };
      await sink.send(alert, new AbortController().signal);
      expect(await active()).toBe(1);
      await sink.send({ ...alert, state: 'resolved', endsAt: new Date() }, new AbortController().signal);
      expect(await active()).toBe(0);
      await ctx.close();
    });

    it('label names Prometheus would refuse are rewritten', () => {
      const posted = alertmanagerAlert({ ...sampleAlert(), labels: { 'model.id': 'm', '9lives': 'x' } }, { labels: {} });
      expect(posted.labels).toMatchObject({ model_id: 'm', _9lives: 'x', alertname: 'HighLatency' });
    });
  });
}
