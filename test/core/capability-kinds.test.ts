import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { Greeter } from '../../examples/capibara-plugin-greeter/index.js';
import type { PluginEntry } from '../../src/config/schema.ts';
import { PluginHost } from '../../src/plugin/host.ts';
import { startTestGateway } from '../../src/testing/gateway.ts';

const ROOT = join(import.meta.dirname, '../..');
const GREETER = './examples/capibara-plugin-greeter';
const GREETING_BACKEND = './test/core/greeting-backend.ts';
const dir = mkdtempSync(join(tmpdir(), 'mcp-kinds-'));

/** Writes a plugin module (plain ESM, as a third party would ship it). */
function plugin(file: string, body: string): string {
  const path = join(dir, file);
  writeFileSync(path, `import { z } from ${JSON.stringify(join(ROOT, 'node_modules/zod/index.js'))};\nexport default ${body};\n`);
  return path;
}

let files = 0;
/** A plugin of `kind` returning `capability`, in a file of its own (modules are cached by path). */
const ofKind = (name: string, kind: string, capability = '{ ok: true }') =>
  plugin(
    `${name}-${++files}.mjs`,
    `{ name: '${name}', kind: ${JSON.stringify(kind)}, apiVersion: '^1.0.0', options: z.object({}), setup: () => (${capability}) }`,
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

describe('capability kinds added by packages (Capabilities augmentation)', () => {
  it('a package adds a kind; the host sets it up and hands it, typed, to a plugin that depends on it', async () => {
    const host = await start([{ use: GREETING_BACKEND }, { use: GREETER, options: { greeting: 'Hola' } }]);
    try {
      expect(host.names('greeter')).toEqual(['greeter']);
      const greeter = host.get('greeter', 'greeter');
      expectTypeOf(greeter).toEqualTypeOf<Greeter>();
      expect(greeter.greet('Ada')).toBe('Hola, Ada!');
      expect(host.list().map((p) => [p.name, p.kind])).toEqual([
        ['greeter', 'greeter'],
        ['greeting', 'backend'],
      ]);
      expect(() => host.get('greeter', 'nobody')).toThrow(/no greeter plugin named "nobody" \(configured: greeter\)/);
    } finally {
      await host.close();
    }
  });

  it('loads both from the config of a real gateway, which serves inference through them', async () => {
    const gw = await startTestGateway({
      plugins: [{ use: GREETER, options: { greeting: 'Hello', punctuation: '.' } }, { use: GREETING_BACKEND }],
      models: [{ id: 'hello', task: 'generate', versions: [{ version: 'v1', instances: [{ backend: 'greeting' }] }] }],
    });
    try {
      const r = await gw.gql<{ plugins: Array<{ name: string; kind: string; source: string; healthy: boolean }> }>('{ plugins { name kind source healthy } }');
      expect(r.data?.plugins).toEqual(
        expect.arrayContaining([
          { name: 'greeter', kind: 'greeter', source: GREETER, healthy: true },
          { name: 'greeting', kind: 'backend', source: GREETING_BACKEND, healthy: true },
        ]),
      );
      const inf = await gw.gql<{ infer: { text: string } }>('mutation { infer(model: "hello", input: { prompt: "Grace" }) { text } }');
      expect(inf.errors).toBeUndefined();
      expect(inf.data?.infer.text).toBe('Hello, Grace.');
    } finally {
      await gw.close();
    }
  });

  it('a plugin gets another kind only through dependsOn', async () => {
    const nosy = plugin(
      'nosy.mjs',
      "{ name: 'nosy', kind: 'scaler', apiVersion: '^1.0.0', options: z.object({}), " +
        "setup(ctx) { ctx.get('greeter', 'greeter'); return { desiredInstances: () => 1 }; } }",
    );
    await expect(start([{ use: GREETER }, { use: nosy }])).rejects.toMatchObject({
      code: 'MCP_PLUGIN_SETUP_FAILED',
      message: expect.stringMatching(/"nosy" asked for "greeter" without listing it in dependsOn/),
    });
  });

  it('accepts camelCase and kebab-case kinds; refuses other shapes and look-alikes of the built-in kinds', async () => {
    const host = await start([{ use: ofKind('flags', 'featureFlags') }, { use: ofKind('limiter', 'rate-limiter') }]);
    expect([host.names('featureFlags' as never), host.names('rate-limiter' as never)]).toEqual([['flags'], ['limiter']]);
    await host.close();
    for (const kind of ['9lives', 'two words', 'under_score', '']) {
      await expect(start([{ use: ofKind('odd', kind) }])).rejects.toMatchObject({
        code: 'MCP_PLUGIN_INVALID',
        message: expect.stringMatching(/`kind` must be a built-in kind/),
      });
    }
    for (const [kind, builtIn] of [
      ['Backend', 'backend'],
      ['balancers', 'balancer'],
      ['alert-sink', 'alertSink'],
      ['ratelimitstore', 'rateLimitStore'],
    ]) {
      await expect(start([{ use: ofKind('lookalike', kind!) }])).rejects.toThrow(`\`kind\` "${kind}" is not the built-in kind "${builtIn}"`);
    }
  });

  it('a capability of a built-in kind must have the methods the gateway calls', async () => {
    await expect(start([{ use: ofKind('pickless', 'balancer', '{ observe() {} }') }])).rejects.toMatchObject({
      code: 'MCP_PLUGIN_SETUP_FAILED',
      message: 'plugin "pickless" failed at setup: setup() returned a balancer without pick()',
    });
    await expect(start([{ use: ofKind('loadless', 'backend') }])).rejects.toThrow('setup() returned a backend without load()');
  });
});
