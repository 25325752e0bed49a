#!/usr/bin/env node
// Builds the package into dist/ (or the folder given as the first argument): tsc compiles src/ and
// plugins/ (tsconfig.build.json), then each plugin's package.json and README.md are copied next to its
// compiled files, so dist/plugins/<folder> is a package the plugin loader reads like any other.
// Vite bundles the dashboard (dashboard/) into dist/dashboard, which the gateway serves at /dashboard
// (from the source tree with `npm start` too: `npm install` runs this script).
// Emits without type checking (`npm run typecheck` does that), so installing from a git checkout stays
// quick. Runs as `npm run build` and as the `prepare` script (npm ci, npm pack, install from a git checkout).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const outDir = resolve(process.argv[2] ?? join(root, 'dist'));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

// Files of sources since moved or deleted must not linger in the package.
for (const sub of ['src', 'plugins']) rmSync(join(outDir, sub), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--noCheck', '--outDir', outDir], { stdio: 'inherit' });
await buildDashboard();
for (const name of readdirSync(join(root, 'plugins'))) {
  for (const file of ['package.json', 'README.md']) {
    const from = join(root, 'plugins', name, file);
    if (existsSync(from)) copyFileSync(from, join(outDir, 'plugins', name, file));
  }
}

/** The dashboard bundle; skipped (with a note) where Vite is not installed, e.g. a production-only install. */
async function buildDashboard() {
  let vite;
  try {
    vite = await import('vite');
  } catch {
    console.warn('capibara-mcp build: vite is not installed; /dashboard stays unbuilt');
    return;
  }
  await vite.build({ configFile: join(root, 'dashboard', 'vite.config.ts'), build: { outDir: join(outDir, 'dashboard') } });
}
