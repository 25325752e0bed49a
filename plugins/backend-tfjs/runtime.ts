/**
 * Chooses and initialises the TensorFlow.js runtime, once per process (tfjs keeps one
 * global engine): `@tensorflow/tfjs-node-gpu` (CUDA) → `@tensorflow/tfjs-node` →
 * `@tensorflow/tfjs-backend-wasm` → the pure-JS `cpu` backend.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import type { Logger } from 'pino';
import { installRowGather } from './wasm-gather.ts';

export type RuntimeChoice = 'auto' | 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';
export type RuntimeName = 'tfjs-node-gpu' | 'tfjs-node' | 'tfjs-wasm' | 'tfjs-cpu';

export const RUNTIME_CHOICES = ['auto', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const;

export interface TfRuntime {
  /** Runtime name reported on every LoadedInstance. */
  name: RuntimeName;
  /** Device reported on every LoadedInstance. */
  device: 'gpu:0' | 'cpu';
  /** tfjs backend name (`tensorflow`, `wasm`, `cpu`). */
  backend: string;
  /** The tfjs namespace to use. */
  tf: typeof tf;
  /** The native TensorFlow version under tfjs-node(-gpu). */
  version?: string | undefined;
  /** Under tfjs-node(-gpu): the threads one TensorFlow op may use (intra-op parallelism), as TensorFlow was started with. */
  threads?: number | undefined;
  /** Runtimes tried before this one and why they were skipped. */
  skipped: Array<{ runtime: RuntimeName; reason: string }>;
}

/** The npm package of each native runtime (optional dependencies). */
export const NATIVE_PACKAGES = { 'tfjs-node-gpu': '@tensorflow/tfjs-node-gpu', 'tfjs-node': '@tensorflow/tfjs-node' } as const;

/** The order `auto` tries runtimes in. */
export const RUNTIME_ORDER: readonly RuntimeName[] = ['tfjs-node-gpu', 'tfjs-node', 'tfjs-wasm', 'tfjs-cpu'];
/** The runtime each explicit choice names. */
export const CHOICE_TO_NAME: Record<Exclude<RuntimeChoice, 'auto'>, RuntimeName> = {
  'tfjs-node-gpu': 'tfjs-node-gpu',
  'tfjs-node': 'tfjs-node',
  wasm: 'tfjs-wasm',
  cpu: 'tfjs-cpu',
};

let current: Promise<TfRuntime> | undefined;

export interface RuntimeOptions {
  /**
   * Threads one TensorFlow op may use under tfjs-node(-gpu) (TF_NUM_INTRAOP_THREADS). Unset: the
   * environment variable when the operator set it, else one less than the cores (at least 1), so
   * that the event loop keeps a core while a batch runs. 0: TensorFlow's own default (every core).
   */
  threads?: number | undefined;
}

/** The intra-op thread count TensorFlow is started with: `undefined` leaves TensorFlow's default. */
export function intraOpThreads(threads: number | undefined, env: NodeJS.ProcessEnv = process.env, cores = availableParallelism()): number | undefined {
  if (threads === 0) return undefined;
  if (threads !== undefined) return threads;
  const fromEnv = Number(env.TF_NUM_INTRAOP_THREADS);
  if (env.TF_NUM_INTRAOP_THREADS !== undefined && Number.isInteger(fromEnv) && fromEnv >= 0) return fromEnv || undefined;
  return Math.max(1, cores - 1);
}

/** Folder holding the tfjs-backend-wasm `.wasm` files (with trailing slash). */
export function wasmDistDir(): string {
  try {
    const require = createRequire(import.meta.url);
    return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/';
  } catch {
    // Packages that do not export package.json: resolve the main entry instead (it lives in dist/).
    const main = fileURLToPath(import.meta.resolve('@tensorflow/tfjs-backend-wasm'));
    let dir = dirname(main);
    while (!dir.endsWith('dist') && dirname(dir) !== dir) dir = dirname(dir);
    return dir + '/';
  }
}

/** Dynamic import whose specifier TypeScript does not resolve (optional packages may be absent). */
async function importOptional(specifier: string): Promise<unknown> {
  return import(/* @vite-ignore */ specifier);
}

/** `requireGpu`: tfjs-node-gpu was asked for by name, so running it on the CPU is a failure. */
async function tryRuntime(name: RuntimeName, requireGpu: boolean, options: RuntimeOptions): Promise<Omit<TfRuntime, 'skipped' | 'tf'>> {
  switch (name) {
    case 'tfjs-node-gpu':
    case 'tfjs-node': {
      // libtensorflow logs to stderr from C++; keep its INFO/WARNING lines out of the gateway's log.
      process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
      // TensorFlow reads its thread counts from the environment once, when it makes its thread pools.
      const threads = intraOpThreads(options.threads);
      if (threads === undefined) delete process.env.TF_NUM_INTRAOP_THREADS;
      else process.env.TF_NUM_INTRAOP_THREADS = String(threads);
      await importOptional(NATIVE_PACKAGES[name]);
      if (!(await tf.setBackend('tensorflow'))) throw new Error('the `tensorflow` backend failed to initialise');
      await tf.ready();
      const native = tf.backend() as unknown as { isUsingGpuDevice?: boolean; binding?: { TF_Version?: string } };
      // tfjs-node-gpu runs on the CPU when TensorFlow finds no usable CUDA device: report that, never gpu:0.
      const device = name === 'tfjs-node-gpu' && native.isUsingGpuDevice ? 'gpu:0' : 'cpu';
      if (name === 'tfjs-node-gpu' && device === 'cpu' && requireGpu) {
        throw new Error('tfjs-node-gpu loaded, but TensorFlow sees no CUDA device (driver, CUDA or cuDNN libraries missing)');
      }
      return { name, device, backend: 'tensorflow', version: native.binding?.TF_Version, threads: threads ?? availableParallelism() };
    }
    case 'tfjs-wasm': {
      const wasm = (await import('@tensorflow/tfjs-backend-wasm')) as typeof import('@tensorflow/tfjs-backend-wasm');
      wasm.setWasmPaths(wasmDistDir());
      // The emscripten glue installs process-wide handlers that rethrow every uncaught
      // exception / unhandled rejection; remove them so the host keeps its own policy.
      const before = {
        uncaughtException: new Set(process.listeners('uncaughtException')),
        unhandledRejection: new Set(process.listeners('unhandledRejection')),
      };
      let ok: boolean;
      try {
        ok = await tf.setBackend('wasm');
        if (ok) await tf.ready();
      } finally {
        for (const l of process.listeners('uncaughtException')) if (!before.uncaughtException.has(l)) process.removeListener('uncaughtException', l);
        for (const l of process.listeners('unhandledRejection')) if (!before.unhandledRejection.has(l)) process.removeListener('unhandledRejection', l);
      }
      if (!ok || tf.getBackend() !== 'wasm') throw new Error('the wasm backend failed to initialise');
      installRowGather(tf);
      return { name, device: 'cpu', backend: 'wasm' };
    }
    case 'tfjs-cpu': {
      if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend failed to initialise');
      await tf.ready();
      return { name, device: 'cpu', backend: 'cpu' };
    }
  }
}

const SKIPPED_HINT =
  'the native runtimes (tfjs-node-gpu, tfjs-node) are optional dependencies whose installers download libtensorflow; see README "TensorFlow.js runtimes"';

/** Why a runtime could not be used, in one line: a native package that is not there says so plainly. */
export function skipReason(name: RuntimeName, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const pkg = name in NATIVE_PACKAGES ? NATIVE_PACKAGES[name as keyof typeof NATIVE_PACKAGES] : undefined;
  if (pkg && String(e?.message).includes('tfjs_binding.node')) {
    return `${pkg} is installed but its native addon is not built (its installer could not download libtensorflow)`;
  }
  if (pkg && (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') && String(e.message).includes(pkg)) {
    return `not installed (npm i ${pkg})`;
  }
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

async function init(choice: RuntimeChoice, options: RuntimeOptions, logger?: Logger): Promise<TfRuntime> {
  // tfjs prints a banner through console.warn unless in PROD mode; plugins never use console.
  tf.env().set('PROD', true);
  const candidates = choice === 'auto' ? RUNTIME_ORDER : [CHOICE_TO_NAME[choice]];
  const skipped: TfRuntime['skipped'] = [];
  for (const name of candidates) {
    try {
      const rt = await tryRuntime(name, choice !== 'auto', options);
      // Why a faster runtime was passed over (a native one not installed, say) is on the same line.
      const why = skipped.length ? { skipped: Object.fromEntries(skipped.map((s) => [s.runtime, s.reason])), hint: SKIPPED_HINT } : {};
      logger?.info({ runtime: rt.name, device: rt.device, backend: rt.backend, tensorflow: rt.version, threads: rt.threads, ...why }, 'tfjs runtime selected');
      if (rt.name === 'tfjs-node-gpu' && rt.device === 'cpu')
        logger?.warn('tfjs-node-gpu is installed but TensorFlow sees no CUDA device: models run on the CPU');
      return { ...rt, tf, skipped };
    } catch (err) {
      const reason = skipReason(name, err);
      skipped.push({ runtime: name, reason });
      logger?.debug({ runtime: name, reason }, 'tfjs runtime unavailable, skipped');
    }
  }
  const why = skipped.map((s) => `${s.runtime}: ${s.reason}`).join('; ');
  throw new Error(
    choice === 'auto'
      ? `no TensorFlow.js runtime could be initialised (${why})`
      : `tfjs runtime '${choice}' was requested but is not available (${why}); install it or use runtime: auto`,
  );
}

/**
 * Initialises (once per process) and returns the runtime. `auto` accepts whatever was
 * chosen first; an explicit choice that differs from the runtime already initialised, or
 * that is unavailable, throws.
 */
export async function selectRuntime(choice: RuntimeChoice = 'auto', logger?: Logger, options: RuntimeOptions = {}): Promise<TfRuntime> {
  if (!current) {
    const p = init(choice, options, logger);
    current = p;
    p.catch(() => {
      if (current === p) current = undefined;
    });
    return p;
  }
  const rt = await current;
  if (choice !== 'auto' && CHOICE_TO_NAME[choice] !== rt.name) {
    throw new Error(`tfjs runtime '${choice}' was requested but this process already runs TensorFlow.js on '${rt.name}' (tfjs has one engine per process)`);
  }
  return rt;
}
