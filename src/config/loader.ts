import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { McpError } from '../errors.ts';
import { configSchema, type Config } from './schema.ts';

export interface LoadedConfig {
  config: Config;
  /** The file read, when any. */
  file?: string;
  /** Folder that relative paths in the config are resolved against. */
  baseDir: string;
}

const DEFAULT_FILES = ['capibara.yaml', 'capibara.yml', 'capibara.json'];

/** Finds the config file: explicit path, `MCP_CONFIG`, or capibara.{yaml,yml,json} in the working folder. */
export function findConfigFile(explicit: string | undefined, env: NodeJS.ProcessEnv, cwd: string): string | undefined {
  const named = explicit ?? env.MCP_CONFIG;
  if (named) {
    const path = resolve(cwd, named);
    if (!existsSync(path)) throw new McpError('MCP_CONFIG_INVALID', `config file not found: ${path}`, { details: { path } });
    return path;
  }
  return DEFAULT_FILES.map((f) => resolve(cwd, f)).find((f) => existsSync(f));
}

function readConfigFile(path: string): unknown {
  const text = readFileSync(path, 'utf8');
  try {
    return path.endsWith('.json') ? JSON.parse(text) : (parseYaml(text) ?? {});
  } catch (err) {
    throw new McpError('MCP_CONFIG_INVALID', `cannot parse ${path}: ${(err as Error).message}`, { details: { path } });
  }
}

const camel = (s: string) => s.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function parseEnvValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/**
 * Environment overrides: `MCP_SECTION__KEY=value` sets `section.key` (SNAKE_CASE → camelCase,
 * `__` separates levels, values parsed as JSON when they parse). Shorthands: `DATABASE_URL`
 * → storage.url, `REDIS_URL` → events.redisUrl, `PORT` → server.port, `HOST` → server.host, `LOG_LEVEL` → log.level.
 */
export function envOverrides(env: NodeJS.ProcessEnv): Array<{ path: string[]; value: unknown; from: string }> {
  const out: Array<{ path: string[]; value: unknown; from: string }> = [];
  const shorthands: Record<string, string[]> = {
    DATABASE_URL: ['storage', 'url'],
    REDIS_URL: ['events', 'redisUrl'],
    PORT: ['server', 'port'],
    HOST: ['server', 'host'],
    LOG_LEVEL: ['log', 'level'],
  };
  for (const [name, path] of Object.entries(shorthands)) {
    const v = env[name];
    if (v !== undefined && v !== '') out.push({ path, value: name === 'PORT' ? Number(v) : v, from: name });
  }
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('MCP_') || !name.includes('__') || raw === undefined) continue;
    const path = name.slice(4).split('__').map(camel);
    out.push({ path, value: parseEnvValue(raw), from: name });
  }
  return out;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function formatIssues(issues: z.core.$ZodIssue[], sources: Map<string, string>): string {
  return issues
    .map((i) => {
      const path = i.path.map(String).join('.') || '(root)';
      const keys = i.code === 'unrecognized_keys' ? ` ${i.keys.map((k) => (path === '(root)' ? k : `${path}.${k}`)).join(', ')}` : '';
      const from = sources.get(path) ? ` (from ${sources.get(path)})` : '';
      return `${path}: ${i.message}${keys}${from}`;
    })
    .join('; ');
}

/** Reads, merges and validates the configuration; throws McpError(MCP_CONFIG_INVALID) naming every bad key path. */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; cwd?: string; overrides?: Record<string, unknown> } = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const file = findConfigFile(opts.file, env, cwd);
  const raw = file ? readConfigFile(file) : {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new McpError('MCP_CONFIG_INVALID', `${file}: the top level must be a mapping`);
  }
  const merged = structuredClone(raw) as Record<string, unknown>;
  const sources = new Map<string, string>();
  for (const o of envOverrides(env)) {
    setPath(merged, o.path, o.value);
    sources.set(o.path.join('.'), o.from);
  }
  for (const [k, v] of Object.entries(opts.overrides ?? {})) setPath(merged, k.split('.'), v);
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const paths = parsed.error.issues.map((i) => i.path.map(String).join('.'));
    throw new McpError('MCP_CONFIG_INVALID', `invalid configuration${file ? ` in ${file}` : ''}: ${formatIssues(parsed.error.issues, sources)}`, {
      details: { paths, issues: parsed.error.issues },
    });
  }
  return { config: parsed.data, file, baseDir: file ? dirname(file) : cwd };
}
