import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import semver from 'semver';
import { McpError } from '../errors.ts';
import { PACKAGE_ROOT } from '../package-root.ts';
import { PLUGIN_API_VERSION, type Capabilities, type PluginDefinition, type PluginKind } from './contract.ts';
import { FIRST_PARTY_PLUGINS } from './first-party.ts';

/** The capability kinds this host consumes, with the methods it calls on each (a capability lacking one fails setup). */
export const BUILT_IN_KINDS: { readonly [K in keyof Capabilities]?: ReadonlyArray<keyof Capabilities[K] & string> } = {
  auth: ['authenticate'],
  balancer: ['pick'],
  backend: ['load'],
  alertSink: ['send'],
  rateLimitStore: ['spend', 'adjust'],
  scaler: ['desiredInstances'],
};

const NAME = /^[a-z][a-z0-9-]*$/;
/** A kind added by augmenting `Capabilities`: camelCase or kebab-case. */
const KIND = /^[a-z][a-zA-Z0-9]*(-[a-z0-9]+)*$/;
/** The export condition under which capibara-mcp and first-party plugins resolve to their TypeScript sources. */
const SOURCE_CONDITION = 'capibara-source';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- options differ per plugin; the host validates them with the plugin's own schema
export type AnyPluginDefinition = PluginDefinition<PluginKind, any>;

function isPath(use: string): boolean {
  return use.startsWith('.') || isAbsolute(use);
}

/** Custom conditions Node was started with (`-C x`, `--conditions=x`, on the command line or in NODE_OPTIONS). */
function nodeFlagConditions(): string[] {
  const args = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean)];
  const out: string[] = [];
  args.forEach((arg, i) => {
    const m = /^(?:--conditions|-C)(?:=(.+))?$/.exec(arg);
    const value = m && (m[1] ?? args[i + 1]);
    if (value) out.push(value);
  });
  return out;
}

let conditionsMemo: ReadonlySet<string> | undefined;

/**
 * The conditions a plugin package's `exports` are read with, as Node would for an import from here:
 * its defaults and custom conditions, including the source condition exactly when capibara-mcp itself
 * runs from its TypeScript sources. A plugin importing `capibara-mcp` must get this very copy of it
 * (one McpError class, one contract); if the name resolves elsewhere, say so rather than load a second one.
 */
function exportConditions(): ReadonlySet<string> {
  if (conditionsMemo) return conditionsMemo;
  const own = new URL('../index' + (import.meta.url.endsWith('.ts') ? '.ts' : '.js'), import.meta.url).href;
  // Where import.meta.resolve is missing (a bundle), there is no name resolution to compare with.
  let self = own;
  if (typeof import.meta.resolve === 'function') {
    try {
      self = import.meta.resolve('capibara-mcp');
    } catch (err) {
      self = `nothing (${(err as Error).message})`;
    }
  }
  if (self !== own) {
    throw new McpError(
      'MCP_PLUGIN_INVALID',
      `capibara-mcp runs from ${fileURLToPath(own)} but its name resolves to ${self}; plugins would load a second copy. ` +
        `From the TypeScript sources start Node with --conditions=${SOURCE_CONDITION} (as npm start does); from dist/, without it.`,
    );
  }
  const conditions = new Set(['node', 'import', 'default', ...nodeFlagConditions()]);
  if (own.endsWith('.ts')) conditions.add(SOURCE_CONDITION);
  conditionsMemo = conditions;
  return conditions;
}

/** Node's conditional exports matching for one target: strings, fallback arrays, nested condition objects. */
function matchTarget(target: unknown, conditions: ReadonlySet<string>): string | undefined {
  if (typeof target === 'string') return target;
  if (Array.isArray(target)) {
    for (const t of target) {
      const hit = matchTarget(t, conditions);
      if (hit !== undefined) return hit;
    }
    return undefined;
  }
  if (target && typeof target === 'object') {
    for (const [key, value] of Object.entries(target)) {
      if (!conditions.has(key)) continue;
      const hit = matchTarget(value, conditions);
      if (hit !== undefined) return hit;
    }
  }
  return undefined;
}

/** The module a package folder exports at `subpath` (package.json `exports`, else `main`, else index.js), as Node would resolve it. */
function packageEntry(dir: string, subpath = '.'): string {
  const pkgPath = join(dir, 'package.json');
  if (existsSync(pkgPath)) {
    const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { exports?: unknown; main?: string };
    const exp = pkg.exports;
    if (exp !== undefined && exp !== null) {
      const bySubpath = typeof exp === 'object' && !Array.isArray(exp) && Object.keys(exp).some((k) => k.startsWith('.'));
      const target = matchTarget(bySubpath ? (exp as Record<string, unknown>)[subpath] : subpath === '.' ? exp : undefined, exportConditions());
      if (target === undefined) {
        throw new McpError(
          'MCP_PLUGIN_INVALID',
          `${pkgPath}: "exports" has no entry for ${subpath} under the conditions ${[...exportConditions()].join(', ')}`,
        );
      }
      return join(dir, target);
    }
    if (subpath === '.' && pkg.main) return join(dir, pkg.main);
  }
  if (subpath !== '.') return join(dir, subpath);
  for (const f of ['index.js', 'index.mjs', 'index.ts']) if (existsSync(join(dir, f))) return join(dir, f);
  throw new McpError('MCP_PLUGIN_INVALID', `no entry module in ${dir}`);
}

/** The folder of npm package `name` in a node_modules at or above `from`. */
function findPackage(name: string, from: string): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

/** Imports a plugin file, or a package folder through its package.json. */
async function importPath(path: string): Promise<unknown> {
  const file = statSync(path).isDirectory() ? packageEntry(path) : path;
  return import(pathToFileURL(file).href);
}

/** First-party plugins, paths and npm packages all end up as a package folder (or a file) read the same way. */
async function importModule(use: string, baseDir: string): Promise<unknown> {
  const firstParty = FIRST_PARTY_PLUGINS[use];
  if (firstParty) return importPath(firstParty);
  if (isPath(use)) {
    const path = resolve(baseDir, use);
    if (!existsSync(path)) throw new McpError('MCP_PLUGIN_INVALID', `plugin "${use}": no such file or folder ${path}`);
    return importPath(path);
  }
  // An npm package (`name` or `@scope/name`, optionally with a subpath), found in the working folder's
  // node_modules first (the deployment's), then next to capibara-mcp itself.
  const [, name, subpath] = /^((?:@[^/]+\/)?[^/]+)(\/.*)?$/.exec(use) ?? [];
  const dir = name && (findPackage(name, baseDir) ?? findPackage(name, PACKAGE_ROOT));
  if (!dir) throw new Error(`no package "${name ?? use}" in a node_modules folder above ${baseDir} or ${PACKAGE_ROOT}`);
  return import(pathToFileURL(packageEntry(dir, subpath ? `.${subpath}` : '.')).href);
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
  const kind = typeof def.kind === 'string' ? def.kind : '';
  const lookalike = Object.keys(BUILT_IN_KINDS).find((k) => k !== kind && squash(k) === squash(kind));
  if (lookalike) throw bad(`\`kind\` "${kind}" is not the built-in kind "${lookalike}"`);
  if (!KIND.test(kind)) {
    throw bad(`\`kind\` must be a built-in kind (${Object.keys(BUILT_IN_KINDS).join(', ')}) or a camelCase/kebab-case kind added to Capabilities`);
  }
  if (typeof def.apiVersion !== 'string' || !semver.validRange(def.apiVersion)) throw bad('`apiVersion` must be a semver range');
  if (!semver.satisfies(PLUGIN_API_VERSION, def.apiVersion)) {
    throw bad(`written for plugin API ${def.apiVersion}, this gateway implements ${PLUGIN_API_VERSION}`);
  }
  if (!def.options || typeof (def.options as { safeParse?: unknown }).safeParse !== 'function') throw bad('`options` must be a zod schema');
  if (typeof def.setup !== 'function') throw bad('`setup` must be a function');
  return def as AnyPluginDefinition;
}

/** A kind without case, dashes and a plural s: catches `Backend`, `balancers` and `alert-sink` for the built-in kinds. */
function squash(kind: string): string {
  return kind.toLowerCase().replace(/[-_]/g, '').replace(/s$/, '');
}
