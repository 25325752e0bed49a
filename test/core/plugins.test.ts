import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { PluginEntry } from '../../src/config/schema.ts';
import { PluginHost } from '../../src/plugin/host.ts';
import { startTestGateway } from '../../src/testing/gateway.ts';

const ROOT = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'mcp-plugins-'));
const events: string[] = [];
(globalThis as Record<string, unknown>).__pluginEvents = events;

/** Writes a plugin module (plain ESM, as a third party would ship it). */
function plugin(file: string, body: string): string {
  const path = join(dir, file);
  writeFileSync(
    path,
    `import { z } from ${JSON.stringify(join(ROOT, 'node_modules/zod/index.js'))};\nconst ev = globalThis.__pluginEvents;\nexport default ${body};\n`,
  );
  return path;
}

const recorder = (name: string, extra = '') =>
  plugin(
    `${name}.mjs`,
    `{
  name: '${name}', kind: 'scaler', apiVersion: '^1.0.0', options: z.strictObject({ target: z.number().default(2) }), ${extra}
  setup(ctx, o) {
    ev.push('setup:${name}');
    ctx.onClose(() => ev.push('close:${name}:' + (ctx.signal.aborted ? 'aborted' : 'live')));
    return { desiredInstances: () => o.target };
  },
}`,
  );

function start(entries: Array<Partial<PluginEntry> & { use: string }>) {
  return PluginHost.start({
    entries: entries.map((e) => ({ options: {}, required: true, ...e })),
    defaultPlugins: false,
    baseDir: ROOT,
    logger: pino({ level: 'silent' }),
    dataDir: dir,
    metrics: new Registry(),
  });
}

afterEach(() => {
  events.length = 0;
});

describe('plugin host', () => {
  it('sets plugins up in dependency order and closes them in reverse with the signal aborted', async () => {
    const a = recorder('alpha', "dependsOn: ['beta'],");
    const b = recorder('beta');
    const host = await start([{ use: a }, { use: b, options: { target: 5 } }]);
    expect(events).toEqual(['setup:beta', 'setup:alpha']);
    expect(host.get('scaler', 'beta').desiredInstances({} as never)).toBe(5);
    await host.close();
    expect(events).toEqual(['setup:beta', 'setup:alpha', 'close:alpha:aborted', 'close:beta:aborted']);
  });

  it('validates options at boot and names the plugin and the option path', async () => {
    const p = recorder('gamma');
    await expect(start([{ use: p, options: { target: 'x' } }])).rejects.toMatchObject({
      code: 'MCP_PLUGIN_INVALID',
      message: expect.stringMatching(/plugin "gamma": option target: .*number/),
    });
    await expect(start([{ use: p, options: { colour: 1 } }])).rejects.toThrow(/plugin "gamma": option .*colour/);
    expect(events).toEqual([]);
  });

  it('rejects a plugin written for another plugin API version, a missing dependency, a bad module', async () => {
    const future = plugin(
      'future.mjs',
      "{ name: 'future', kind: 'scaler', apiVersion: '^2.0.0', options: z.object({}), setup: () => ({ desiredInstances: () => 1 }) }",
    );
    await expect(start([{ use: future }])).rejects.toThrow(/plugin ".*future.mjs": written for plugin API \^2\.0\.0/);
    const orphan = recorder('orphan', "dependsOn: ['nobody'],");
    await expect(start([{ use: orphan }])).rejects.toThrow(/"orphan" depends on "nobody", which is not configured/);
    const notAPlugin = plugin('bad.mjs', '{ hello: 1 }');
    await expect(start([{ use: notAPlugin }])).rejects.toMatchObject({ code: 'MCP_PLUGIN_INVALID' });
    await expect(start([{ use: './nope/missing.js' }])).rejects.toThrow(/no such file/);
    await expect(start([{ use: 'capibara-plugin-that-does-not-exist' }])).rejects.toMatchObject({ code: 'MCP_PLUGIN_INVALID' });
  });

  it('a plugin failing at setup stops the boot with a coded error naming it, unless it is optional', async () => {
    const ok = recorder('first');
    const broken = plugin(
      'broken.mjs',
      "{ name: 'broken', kind: 'scaler', apiVersion: '^1.0.0', options: z.object({}), setup() { throw new Error('GPU on fire'); } }",
    );
    await expect(start([{ use: ok }, { use: broken }])).rejects.toMatchObject({
      code: 'MCP_PLUGIN_SETUP_FAILED',
      message: 'plugin "broken" failed at setup: GPU on fire',
      details: { plugin: 'broken', kind: 'scaler' },
    });
    // What was set up before the failure was closed again.
    expect(events).toEqual(['setup:first', 'close:first:aborted']);
    events.length = 0;
    const host = await start([{ use: ok }, { use: broken, required: false }]);
    expect(host.names('scaler')).toEqual(['first']);
    await host.close();
  });

  it('the same plugin can be configured twice under different names', async () => {
    const p = recorder('twin');
    const host = await start([
      { use: p, options: { target: 1 } },
      { use: p, name: 'twin-b', options: { target: 3 } },
    ]);
    expect(host.get('scaler', 'twin-b').desiredInstances({} as never)).toBe(3);
    await host.close();
    await expect(start([{ use: p }, { use: p }])).rejects.toThrow(/configured twice/);
  });

  it('loads the example third-party package from the config and lists it in the plugins query', async () => {
    const gw = await startTestGateway({ plugins: [{ use: './examples/capibara-plugin-echo', options: { prefix: '> ' } }] });
    try {
      const r = await gw.gql<{ plugins: Array<{ name: string; kind: string; source: string; healthy: boolean }> }>('{ plugins { name kind source healthy } }');
      expect(r.data?.plugins).toContainEqual({ name: 'echo', kind: 'backend', source: './examples/capibara-plugin-echo', healthy: true });
      expect(r.data?.plugins.map((p) => p.name)).toEqual(expect.arrayContaining(['tfjs', 'openai', 'kserve-v2', 'worker', 'p2c-ewma', 'round-robin']));
      const reg = await gw.gql(
        'mutation { registerModel(input: { id: "e", task: GENERATE, versions: [{ version: "1", instances: [{ backend: "echo" }] }] }) { status } }',
      );
      expect(reg.data).toEqual({ registerModel: { status: 'READY' } });
      const inf = await gw.gql<{ infer: { text: string } }>('mutation { infer(model: "e", input: { prompt: "hi" }) { text } }');
      expect(inf.data?.infer.text).toBe('> hi');
    } finally {
      await gw.close();
    }
  });
});
