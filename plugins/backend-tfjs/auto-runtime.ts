/**
 * Which runtime `runtime: auto` should pick on this machine, told without loading TensorFlow:
 * the first native package whose addon is built, else wasm. Tests of the tfjs backend run on
 * whatever a user with the same node_modules gets (CI runs them with and without tfjs-node).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { NATIVE_PACKAGES, type RuntimeName } from './runtime.ts';

const require = createRequire(import.meta.url);

function addonBuilt(pkg: string): boolean {
  try {
    const packageJson = require.resolve(`${pkg}/package.json`);
    const preGyp = createRequire(packageJson)('@mapbox/node-pre-gyp') as { find(packageJson: string): string };
    return existsSync(preGyp.find(packageJson));
  } catch {
    return false;
  }
}

/** Runtimes in the order `auto` tries them, with whether they are installed here. */
export const NATIVE_RUNTIMES: Array<{ name: RuntimeName; installed: boolean }> = Object.entries(NATIVE_PACKAGES).map(([name, pkg]) => ({
  name: name as RuntimeName,
  installed: addonBuilt(pkg),
}));

export const AUTO_RUNTIME: RuntimeName = NATIVE_RUNTIMES.find((r) => r.installed)?.name ?? 'tfjs-wasm';
