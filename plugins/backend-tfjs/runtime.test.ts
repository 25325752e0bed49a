import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Writable } from 'node:stream';
import pino from 'pino';
import plugin from './index.ts';
import { CHOICE_TO_NAME, NATIVE_PACKAGES, RUNTIME_ORDER, intraOpThreads, selectRuntime, type RuntimeChoice, type RuntimeName } from './runtime.ts';
import { testPluginContext } from 'capibara-mcp/testing';
import { AUTO_RUNTIME, NATIVE_RUNTIMES } from './auto-runtime.ts';

/** The runtimes auto tries and skips before the one it picks here. */
const SKIPPED = RUNTIME_ORDER.slice(0, RUNTIME_ORDER.indexOf(AUTO_RUNTIME));
/** The explicit choice that names a runtime. */
const choiceOf = (name: RuntimeName) => (Object.keys(CHOICE_TO_NAME) as Array<Exclude<RuntimeChoice, 'auto'>>).find((c) => CHOICE_TO_NAME[c] === name)!;
const resolvable = (pkg: string) => {
  try {
    createRequire(import.meta.url).resolve(`${pkg}/package.json`);
    return true;
  } catch {
    return false;
  }
};
const MISSING = NATIVE_RUNTIMES.filter((r) => !r.installed).map((r) => r.name);

function memoryLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

describe('tfjs runtime selection', () => {
  // Only tfjs-node-gpu and tfjs-node are optional; on a host with both built there is nothing to refuse.
  it.runIf(MISSING.length > 0)('an explicit runtime that is not installed is a clear error', async () => {
    for (const name of MISSING) {
      const pkg = NATIVE_PACKAGES[name as keyof typeof NATIVE_PACKAGES];
      await expect(selectRuntime(choiceOf(name))).rejects.toThrow(
        new RegExp(`tfjs runtime '${name}' was requested but is not available \\(${name}: .*(${pkg}|tfjs_binding)`),
      );
    }
    await expect(plugin.setup(testPluginContext('tfjs'), plugin.options.parse({ runtime: choiceOf(MISSING[0]!) }))).rejects.toThrow(/not available/);
  });

  it("TensorFlow op threads: the option, else TF_NUM_INTRAOP_THREADS, else cores − 1 (at least 1); 0 = TensorFlow's default", () => {
    expect(intraOpThreads(undefined, {}, 2)).toBe(1);
    expect(intraOpThreads(undefined, {}, 1)).toBe(1);
    expect(intraOpThreads(undefined, {}, 16)).toBe(15);
    expect(intraOpThreads(undefined, { TF_NUM_INTRAOP_THREADS: '6' }, 16)).toBe(6);
    expect(intraOpThreads(undefined, { TF_NUM_INTRAOP_THREADS: '0' }, 16)).toBeUndefined();
    expect(intraOpThreads(undefined, { TF_NUM_INTRAOP_THREADS: 'many' }, 16)).toBe(15);
    expect(intraOpThreads(4, { TF_NUM_INTRAOP_THREADS: '6' }, 16)).toBe(4);
    expect(intraOpThreads(0, {}, 16)).toBeUndefined();
    expect(plugin.options.safeParse({ threads: -1 }).success).toBe(false);
    expect(plugin.options.safeParse({ threads: 1.5 }).success).toBe(false);
  });

  it('rejects unknown runtime names in the options', () => {
    expect(plugin.options.safeParse({ runtime: 'cuda' }).success).toBe(false);
    expect(plugin.options.parse({})).toEqual({ runtime: 'auto', batching: {} });
  });

  it(`auto tries tfjs-node-gpu, tfjs-node, then wasm (here: ${AUTO_RUNTIME}); says why each was skipped on its info line`, async () => {
    const { logger, lines } = memoryLogger();
    const listeners = [process.listenerCount('uncaughtException'), process.listenerCount('unhandledRejection')];
    const envThreads = process.env.TF_NUM_INTRAOP_THREADS;
    const rt = await selectRuntime('auto', logger);
    const native = AUTO_RUNTIME === 'tfjs-node' || AUTO_RUNTIME === 'tfjs-node-gpu';
    expect(rt).toMatchObject({
      name: AUTO_RUNTIME,
      device: AUTO_RUNTIME === 'tfjs-node-gpu' ? expect.any(String) : 'cpu',
      backend: native ? 'tensorflow' : 'wasm',
    });
    expect(rt.tf.getBackend()).toBe(native ? 'tensorflow' : 'wasm');
    // Under tfjs-node the native TensorFlow version is reported, and TensorFlow was started with one
    // thread per op less than the cores (unless the environment said otherwise).
    if (native) {
      expect(rt.version).toMatch(/^\d+\.\d+/);
      expect(rt.threads).toBe(intraOpThreads(undefined, { TF_NUM_INTRAOP_THREADS: envThreads }) ?? availableParallelism());
      expect(lines.find((l) => l.msg === 'tfjs runtime selected')?.threads).toBe(rt.threads);
    }
    expect(rt.skipped.map((s) => s.runtime)).toEqual(SKIPPED);
    const skipped = lines.filter((l) => l.msg === 'tfjs runtime unavailable, skipped');
    expect(skipped.map((l) => [l.level, l.runtime])).toEqual(SKIPPED.map((r) => [20, r]));
    expect(skipped.every((l) => typeof l.reason === 'string' && (l.reason as string).length > 0)).toBe(true);
    const selected = lines.find((l) => l.msg === 'tfjs runtime selected' && l.runtime === AUTO_RUNTIME);
    expect(selected?.level).toBe(30);
    // The info line a user sees says why each faster runtime was passed over, and where to read more.
    if (SKIPPED.length) {
      expect(selected?.skipped).toEqual(Object.fromEntries(rt.skipped.map((s) => [s.runtime, s.reason])));
      expect(selected?.hint).toContain('README "TensorFlow.js runtimes"');
      for (const s of rt.skipped) {
        const pkg = NATIVE_PACKAGES[s.runtime as keyof typeof NATIVE_PACKAGES];
        if (pkg && !resolvable(pkg)) expect(s.reason).toBe(`not installed (npm i ${pkg})`);
      }
    } else {
      expect(selected).not.toHaveProperty('skipped');
    }
    // The wasm glue's process-wide rethrowing handlers are removed.
    expect([process.listenerCount('uncaughtException'), process.listenerCount('unhandledRejection')]).toEqual(listeners);
  });

  it('tfjs has one engine per process: auto and the same runtime reuse it, another explicit runtime is an error', async () => {
    expect((await selectRuntime('auto')).name).toBe(AUTO_RUNTIME);
    expect((await selectRuntime(choiceOf(AUTO_RUNTIME))).name).toBe(AUTO_RUNTIME);
    await expect(selectRuntime('cpu')).rejects.toThrow(new RegExp(`already runs TensorFlow.js on '${AUTO_RUNTIME}'`));
  });
});
