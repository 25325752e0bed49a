import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import plugin, { fileSaveHandler } from './index.ts';
import { testPluginContext } from 'capibara-mcp/testing';

// Runs in its own worker process (vitest forks pool), so the pure-JS cpu backend can be chosen.
const ctx = testPluginContext('tfjs');
afterAll(() => ctx.close());

describe('tfjs backend on the pure-JS cpu runtime', () => {
  it('serves a model with runtime: cpu and reports tfjs-cpu', async () => {
    const backend = await plugin.setup(ctx, plugin.options.parse({ runtime: 'cpu' }));
    expect(tf.getBackend()).toBe('cpu');
    const dir = join(mkdtempSync(join(tmpdir(), 'tfjs-cpu-')), 'm');
    const m = tf.sequential({ layers: [tf.layers.dense({ units: 2, inputShape: [2], kernelInitializer: 'ones', name: 'out' })] });
    await m.save(fileSaveHandler(dir));
    m.dispose();
    const inst = await backend.load({ id: 'c', model: 'm', version: '1', endpoint: dir, options: {} }, new AbortController().signal);
    expect([inst.runtime, inst.device]).toEqual(['tfjs-cpu', 'cpu']);
    const out = await inst.infer(
      { task: 'tensor', tensors: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] },
      { requestId: 'r', signal: new AbortController().signal },
    );
    expect(out.tensors).toEqual([{ name: 'out', datatype: 'FP32', shape: [1, 2], data: [3, 3] }]);
    await inst.unload();
  });
});
