/**
 * What `start` refuses in a configuration, checked before storage is opened or a port is bound:
 * `createGateway` runs it first, and `capibara-mcp config check` runs it alone (same code, so a
 * configuration the check accepts is one the start accepts).
 */
import type { Logger } from 'pino';
import { guardAuthDisabled } from './auth/disabled-guard.ts';
import type { Config } from './config/schema.ts';
import { McpError } from './errors.ts';
import type { PluginKind } from './plugin/contract.ts';
import { PluginHost, type PlannedPlugin } from './plugin/host.ts';
import type { LookupFunction } from './security/address-policy.ts';
import { resolveSecretKey, type SecretKey } from './security/secret-key.ts';
import { createUpstreamSafety, type UpstreamSafety } from './security/upstream.ts';

export interface StartCheck {
  upstream: UpstreamSafety;
  /** The plugins the start sets up, in setup order. */
  plugins: PlannedPlugin[];
  /** The secret key and its source; a first start's data-dir key file is written by `secretKey.persist()`. */
  secretKey: SecretKey;
}

/**
 * Throws MCP_CONFIG_INVALID / MCP_PLUGIN_INVALID for what the start would refuse: `auth.enabled:
 * false` off loopback, a bad secret key or key file (or none in strict mode with PostgreSQL), bad
 * upstream CIDRs, unknown plugins, bad plugin options, plugin dependencies, and names that refer to no
 * configured plugin (checkPluginReferences). Writes nothing.
 */
export async function checkStartConfig(
  config: Config,
  opts: { baseDir: string; logger: Logger; lookup?: LookupFunction; env?: NodeJS.ProcessEnv },
): Promise<StartCheck> {
  guardAuthDisabled(config.auth.enabled, config.server.host, opts.logger);
  const secretKey = resolveSecretKey({ storage: config.storage, security: config.security, baseDir: opts.baseDir, ...(opts.env ? { env: opts.env } : {}) });
  const upstream = createUpstreamSafety(config.security, {
    box: secretKey.box,
    baseDir: opts.baseDir,
    logger: opts.logger,
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
    ...(opts.env ? { env: opts.env } : {}),
  });
  const plugins = await PluginHost.plan({
    entries: config.plugins,
    defaultPlugins: config.defaultPlugins,
    baseDir: opts.baseDir,
    authStrategies: config.auth.enabled ? config.auth.strategies : [],
  });
  checkPluginReferences(config, (kind) => plugins.filter((p) => p.kind === kind).map((p) => p.name));
  return { upstream, plugins, secretKey };
}

/**
 * Every configuration key that names a plugin must name one of the right kind: `router.balancer`,
 * `auth.strategies`, `limits.store` (unless `memory`) and the backends of `models` seeds. `namesOf`
 * answers the configured names of a kind (planned before the start, set up after it: an optional
 * plugin that failed at setup is missing then).
 */
export function checkPluginReferences(config: Config, namesOf: (kind: PluginKind) => string[]): void {
  const problems: Array<{ path: string; message: string }> = [];
  const expect = (kind: PluginKind, path: string, name: string, builtIn?: string) => {
    const names = namesOf(kind);
    if (names.includes(name)) return;
    const known = builtIn ? `${builtIn}, or one of: ${names.join(', ') || 'none configured'}` : `configured: ${names.join(', ') || 'none'}`;
    problems.push({ path, message: `${path}: no ${kind} plugin named "${name}" (${known})` });
  };
  expect('balancer', 'router.balancer', config.router.balancer);
  if (config.auth.enabled) config.auth.strategies.forEach((s, i) => expect('auth', `auth.strategies.${i}`, s));
  if (config.limits.store !== 'memory') expect('rateLimitStore', 'limits.store', config.limits.store, 'memory');
  config.models.forEach((m, i) =>
    m.versions.forEach((v, j) => v.instances.forEach((inst, k) => expect('backend', `models.${i}.versions.${j}.instances.${k}.backend`, inst.backend))),
  );
  if (problems.length) {
    throw new McpError('MCP_CONFIG_INVALID', problems.map((p) => p.message).join('; '), { details: { paths: problems.map((p) => p.path) } });
  }
}
