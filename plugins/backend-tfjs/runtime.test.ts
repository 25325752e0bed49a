import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import plugin from './index.ts';
import { selectRuntime } from './runtime.ts';
import { testPluginContext } from '../../test/support/plugin-context.ts';

function memoryLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb(); } });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

describe('tfjs runtime selection', () => {
  it('an explicit runtime that is not installed is a clear error', async () => {
    await expect(selectRuntime('tfjs-node')).rejects.toThrow(/tfjs runtime 'tfjs-node' was requested but is not available \(tfjs-node: .*@tensorflow\/tfjs-node/);
    await expect(selectRuntime('tfjs-node-gpu')).rejects.toThrow(/'tfjs-node-gpu' was requested but is not available/);
    await expect(plugin.setup(testPluginContext('tfjs'), plugin.options.parse({ runtime: 'tfjs-node' }))).rejects.toThrow(/not available/);
  });

  it('rejects unknown runtime names in the options', () => {
    expect(plugin.options.safeParse({ runtime: 'cuda' }).success).toBe(false);
    expect(plugin.options.parse({})).toEqual({ runtime: 'auto', batching: {} });
  });

  it('auto tries tfjs-node-gpu, tfjs-node, then wasm; logs why each was skipped at debug', async () => {
    const { logger, lines } = memoryLogger();
    const listeners = [process.listenerCount('uncaughtException'), process.listenerCount('unhandledRejection')];
    const rt = await selectRuntime('auto', logger);
    expect(rt).toMatchObject({ name: 'tfjs-wasm', device: 'cpu', backend: 'wasm' });
    expect(rt.tf.getBackend()).toBe('wasm');
    expect(rt.skipped.map((s) => s.runtime)).toEqual(['tfjs-node-gpu', 'tfjs-node']);
    const skipped = lines.filter((l) => l.msg === 'tfjs runtime unavailable, skipped');
    expect(skipped.map((l) => [l.level, l.runtime])).toEqual([[20, 'tfjs-node-gpu'], [20, 'tfjs-node']]);
    expect(skipped.every((l) => typeof l.reason === 'string' && (l.reason as string).length > 0)).toBe(true);
    expect(lines.some((l) => l.msg === 'tfjs runtime selected' && l.runtime === 'tfjs-wasm')).toBe(true);
    // The wasm glue's process-wide rethrowing handlers are removed.
    expect([process.listenerCount('uncaughtException'), process.listenerCount('unhandledRejection')]).toEqual(listeners);
  });

  it('tfjs has one engine per process: auto and the same runtime reuse it, another explicit runtime is an error', async () => {
    expect((await selectRuntime('auto')).name).toBe('tfjs-wasm');
    expect((await selectRuntime('wasm')).name).toBe('tfjs-wasm');
    await expect(selectRuntime('cpu')).rejects.toThrow(/already runs TensorFlow.js on 'tfjs-wasm'/);
  });
});
