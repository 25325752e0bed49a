import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import semver from 'semver';
import { McpError } from '../errors.ts';
import { PLUGIN_API_VERSION, type PluginDefinition, type PluginKind } from './contract.ts';
import { FIRST_PARTY_PLUGINS } from './first-party.ts';

const KINDS: readonly PluginKind[] = ['auth', 'balancer', 'backend', 'alertSink', 'rateLimitStore', 'scaler'];
const NAME = /^[a-z][a-z0-9-]*$/;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyPluginDefinition = PluginDefinition<PluginKind, any>;

function isPath(use: string): boolean {
  return use.startsWith('.') || isAbsolute(use);
}

/** The module file a folder-shaped package points at (package.json exports/main, else index.js). */
function packageEntry(dir: string): string {
  const pkgPath = join(dir, 'package.json');
  if (existsSync(pkgPath)) {
    const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { exports?: unknown; main?: string };
    const exp = pkg.exports;
    const fromExports =
      typeof exp === 'string' ? exp
      : exp && typeof exp === 'object' ? (((exp as Record<string, unknown>)['.'] ?? exp) as Record<string, unknown> | string)
      : undefined;
    const target = typeof fromExports === 'string' ? fromExports
      : fromExports && typeof fromExports === 'object' ? (fromExports.import ?? fromExports.default) as string | undefined
      : undefined;
    if (target) return join(dir, target);
    if (pkg.main) return join(dir, pkg.main);
  }
  for (const f of ['index.js', 'index.mjs', 'index.ts']) if (existsSync(join(dir, f))) return join(dir, f);
  throw new McpError('MCP_PLUGIN_INVALID', `no entry module in ${dir}`);
}

async function importModule(use: string, baseDir: string): Promise<unknown> {
  const firstParty = FIRST_PARTY_PLUGINS[use];
  if (firstParty) return firstParty();
  if (isPath(use)) {
    const path = resolve(baseDir, use);
    if (!existsSync(path)) throw new McpError('MCP_PLUGIN_INVALID', `plugin "${use}": no such file or folder ${path}`);
    const file = statSync(path).isDirectory() ? packageEntry(path) : path;
    return import(pathToFileURL(file).href);
  }
  // An npm package, resolved from the working folder first (the deployment's node_modules), then from here.
  try {
    const resolved = createRequire(join(baseDir, 'package.json')).resolve(use);
    return await import(pathToFileURL(resolved).href);
  } catch {
    return import(use);
  }
}

/** Loads a plugin definition from a first-party name, a file/folder path or an npm package, and checks its shape. */
export async function loadPluginDefinition(use: string, baseDir: string): Promise<AnyPluginDefinition> {
  let mod: unknown;
  try {
    mod = await importModule(use, baseDir);
  } catch (err) {
    if (err instanceof McpError) throw err;
    throw new McpError('MCP_PLUGIN_INVALID', `plugin "${use}" cannot be loaded: ${(err as Error).message}`, { cause: err, details: { plugin: use } });
  }
  const def = ((mod as { default?: unknown }).default ?? (mod as { plugin?: unknown }).plugin) as Partial<AnyPluginDefinition> | undefined;
  const bad = (why: string) => new McpError('MCP_PLUGIN_INVALID', `plugin "${use}": ${why}`, { details: { plugin: use } });
  if (!def || typeof def !== 'object') throw bad('the module has no default export made with definePlugin()');
  if (typeof def.name !== 'string' || !NAME.test(def.name)) throw bad('`name` must be kebab-case');
  if (!KINDS.includes(def.kind as PluginKind)) throw bad(`\`kind\` must be one of ${KINDS.join(', ')}`);
  if (typeof def.apiVersion !== 'string' || !semver.validRange(def.apiVersion)) throw bad('`apiVersion` must be a semver range');
  if (!semver.satisfies(PLUGIN_API_VERSION, def.apiVersion)) {
    throw bad(`written for plugin API ${def.apiVersion}, this gateway implements ${PLUGIN_API_VERSION}`);
  }
  if (!def.options || typeof (def.options as { safeParse?: unknown }).safeParse !== 'function') throw bad('`options` must be a zod schema');
  if (typeof def.setup !== 'function') throw bad('`setup` must be a function');
  return def as AnyPluginDefinition;
}
