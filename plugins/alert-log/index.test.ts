import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { describeAlertSinkConformance, sampleAlert, testPluginContext } from 'capibara-mcp/testing';
import plugin, { optionsSchema } from './index.ts';

let file = '';

describeAlertSinkConformance('alert-log', {
  async create(ctx) {
    file = join(ctx.dataDir, 'alerts.ndjson');
    return {
      sink: await plugin.setup(ctx, optionsSchema.parse({ file: 'alerts.ndjson' })),
      // A file in a folder that does not exist cannot be appended to.
      failingSink: await plugin.setup(ctx, optionsSchema.parse({ file: join(ctx.dataDir, 'no-such-folder', 'alerts.ndjson') })),
      received: () =>
        existsSync(file)
          ? readFileSync(file, 'utf8')
              .split('\n')
              .filter(Boolean)
              .map((l) => JSON.parse(l) as { id: string; state: 'firing' | 'resolved' })
          : [],
      secrets: [],
    };
  },
});

describe('alert-log', () => {
  it('without a file, writes one structured line per alert to the plugin log: firing at the configured level, resolutions at info', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _e, cb) {
          lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
          cb();
        },
      }),
    );
    const ctx = { ...testPluginContext('log'), logger };
    const sink = await plugin.setup(ctx, optionsSchema.parse({ level: 'error' }));
    const alert = sampleAlert('firing');
    await sink.send(alert, new AbortController().signal);
    await sink.send({ ...alert, state: 'resolved', endsAt: new Date() }, new AbortController().signal);
    expect(lines).toMatchObject([
      { level: 50, msg: 'alert firing', alert: { id: alert.id, rule: 'HighLatency', state: 'firing', labels: { model: 'capibara-mini' } } },
      { level: 30, msg: 'alert resolved', alert: { id: alert.id, state: 'resolved' } },
    ]);
    expect(typeof (lines[1]!.alert as { endsAt: unknown }).endsAt).toBe('string');
  });
});
