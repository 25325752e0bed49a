import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { McpError } from '../errors.ts';
import type { PluginEntry } from '../config/schema.ts';
import type { Capabilities, CredentialStore, HealthReport, PluginContext, PluginKind } from './contract.ts';
import { FIRST_PARTY_PLUGINS } from './first-party.ts';
import { AddressPolicy } from '../security/address-policy.ts';
import { NO_CREDENTIALS } from '../auth/credential-store.ts';
import { BUILT_IN_KINDS, loadPluginDefinition, type AnyPluginDefinition } from './loader.ts';

export interface PluginHostOptions {
  entries: PluginEntry[];
  /** Add every first-party plugin not listed in `entries`. */
  defaultPlugins: boolean;
  /** Folder relative plugin paths are resolved against. */
  baseDir: string;
  logger: Logger;
  dataDir: string;
  metrics: Registry;
  /** Handed to plugins as `ctx.addressPolicy` (default: development mode). */
  addressPolicy?: AddressPolicy;
  /** Auth strategies to set up (`auth.strategies`): first-party ones not listed in `entries` get default options. None by default. */
  authStrategies?: readonly string[];
  /** What auth plugins get as `ctx.credentials` (default: none, every call fails with MCP_STORAGE_UNAVAILABLE). */
  credentials?: CredentialStore;
}

export interface PluginInfo {
  /** Configured name. */
  name: string;
  kind: PluginKind;
  /** The plugin's own name (differs from `name` when configured twice). */
  plugin: string;
  source: string;
  description?: string;
  required: boolean;
}

interface ActivePlugin extends PluginInfo {
  capability: Capabilities[PluginKind];
  closers: Array<() => unknown>;
  checks: Array<() => HealthReport | Promise<HealthReport>>;
}

/** A plugin a start will set up: its definition, configured name and validated options. */
export interface PlannedPlugin {
  entry: PluginEntry;
  def: AnyPluginDefinition;
  name: string;
  kind: PluginKind;
  options: unknown;
}

function formatOptionIssues(name: string, error: { issues: Array<{ path: PropertyKey[]; message: string }> }): string {
  return error.issues.map((i) => `plugin "${name}": option ${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** Orders plugins so that dependencies come first, otherwise keeping config order. */
function dependencyOrder(planned: PlannedPlugin[]): PlannedPlugin[] {
  const byName = new Map(planned.map((p) => [p.name, p]));
  const out: PlannedPlugin[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (p: PlannedPlugin, trail: string[]) => {
    if (state.get(p.name) === 'done') return;
    if (state.get(p.name) === 'visiting') {
      throw new McpError('MCP_PLUGIN_INVALID', `plugin dependency cycle: ${[...trail, p.name].join(' → ')}`, { details: { plugin: p.name } });
    }
    state.set(p.name, 'visiting');
    for (const dep of p.def.dependsOn ?? []) {
      const target = byName.get(dep);
      if (!target) throw new McpError('MCP_PLUGIN_INVALID', `plugin "${p.name}" depends on "${dep}", which is not configured`, { details: { plugin: p.name } });
      visit(target, [...trail, p.name]);
    }
    state.set(p.name, 'done');
    out.push(p);
  };
  for (const p of planned) visit(p, []);
  return out;
}

/** Loads, validates, sets up and closes plugins; the one place plugins are looked up at run time. */
export class PluginHost {
  private readonly active: ActivePlugin[] = [];
  private readonly abort = new AbortController();
  private closed = false;

  private constructor(private readonly opts: PluginHostOptions) {}

  static async start(opts: PluginHostOptions): Promise<PluginHost> {
    const host = new PluginHost(opts);
    try {
      await host.setupAll();
    } catch (err) {
      await host.close();
      throw err;
    }
    return host;
  }

  /**
   * Which plugins a start with these options sets up, in setup order: every definition loaded and
   * every plugin's options validated, without setting anything up. Throws MCP_PLUGIN_INVALID naming
   * each problem (unknown plugin, bad option, duplicate name, missing or cyclic dependency).
   * `capibara-mcp config check` runs it too.
   */
  static async plan(opts: Pick<PluginHostOptions, 'entries' | 'defaultPlugins' | 'baseDir' | 'authStrategies'>): Promise<PlannedPlugin[]> {
    const listedNames = new Set(opts.entries.flatMap((e) => [e.use, e.name ?? e.use]));
    const strategies = new Set(opts.authStrategies ?? []);
    const defaults = Object.keys(FIRST_PARTY_PLUGINS)
      .filter((n) => !listedNames.has(n) && (opts.defaultPlugins || strategies.has(n)))
      .map((use) => ({ use, options: {}, required: true }));
    const all: PluginEntry[] = [...defaults, ...opts.entries];
    const loaded = await Promise.all(all.map((e) => loadPluginDefinition(e.use, opts.baseDir)));
    // A default (unlisted) auth plugin is set up only when auth.strategies names it; a default alert sink never (it needs a destination).
    const listed = new Set(opts.entries);
    const keep = all.map((e, i) => {
      const kind = loaded[i]!.kind;
      return listed.has(e) || (kind === 'auth' ? strategies.has(e.use) : kind !== 'alertSink');
    });
    const entries = all.filter((_, i) => keep[i]);
    const defs = loaded.filter((_, i) => keep[i]);
    const planned: PlannedPlugin[] = [];
    const seen = new Map<string, string>();
    const problems: string[] = [];
    entries.forEach((entry, i) => {
      const def = defs[i]!;
      const name = entry.name ?? def.name;
      const key = `${def.kind}:${name}`;
      if (seen.has(key)) problems.push(`plugin "${name}" (${def.kind}) is configured twice (${seen.get(key)} and ${entry.use}); give one a distinct \`name\``);
      seen.set(key, entry.use);
      const parsed = def.options.safeParse(entry.options ?? {});
      if (!parsed.success) problems.push(formatOptionIssues(name, parsed.error));
      else planned.push({ entry, def, name, kind: def.kind, options: parsed.data });
    });
    if (problems.length) {
      throw new McpError('MCP_PLUGIN_INVALID', problems.join('; '), { details: { problems } });
    }
    return dependencyOrder(planned);
  }

  private async setupAll(): Promise<void> {
    for (const p of await PluginHost.plan(this.opts)) await this.setupOne(p);
  }

  private async setupOne({ entry, def, name, options }: PlannedPlugin): Promise<void> {
    const logger = this.opts.logger.child({ plugin: name });
    const closers: Array<() => unknown> = [];
    const checks: ActivePlugin['checks'] = [];
    const ctx: PluginContext = {
      name,
      logger,
      signal: this.abort.signal,
      dataDir: this.opts.dataDir,
      metrics: this.opts.metrics,
      addressPolicy: this.opts.addressPolicy ?? new AddressPolicy(),
      get: (kind, other) => {
        if (!(def.dependsOn ?? []).includes(other)) {
          throw new McpError('MCP_PLUGIN_INVALID', `plugin "${name}" asked for "${other}" without listing it in dependsOn`);
        }
        return this.get(kind, other);
      },
      onClose: (fn) => void closers.push(fn),
      onHealth: (fn) => void checks.push(fn),
      credentials: this.opts.credentials ?? NO_CREDENTIALS,
    };
    try {
      const capability = await def.setup(ctx, options);
      if (!capability || typeof capability !== 'object') throw new Error('setup() returned no capability object');
      const missing = (BUILT_IN_KINDS[def.kind] ?? []).filter((m) => typeof (capability as unknown as Record<string, unknown>)[m] !== 'function');
      if (missing.length) throw new Error(`setup() returned a ${def.kind} without ${missing.map((m) => `${m}()`).join(', ')}`);
      this.active.push({
        name,
        kind: def.kind,
        plugin: def.name,
        source: entry.use,
        description: def.description,
        required: entry.required,
        capability,
        closers,
        checks,
      });
      logger.debug({ kind: def.kind, source: entry.use }, 'plugin ready');
    } catch (err) {
      for (const fn of closers.reverse())
        await Promise.resolve()
          .then(fn)
          .catch(() => {});
      if (!entry.required) {
        logger.warn({ err }, 'optional plugin failed at setup; skipped');
        return;
      }
      throw new McpError('MCP_PLUGIN_SETUP_FAILED', `plugin "${name}" failed at setup: ${(err as Error).message}`, {
        cause: err,
        details: { plugin: name, kind: def.kind },
      });
    }
  }

  /** A configured plugin's capability; throws MCP_UNKNOWN_PLUGIN naming what is available. */
  get<K extends PluginKind>(kind: K, name: string): Capabilities[K] {
    const p = this.active.find((a) => a.kind === kind && a.name === name);
    if (!p) {
      throw new McpError('MCP_UNKNOWN_PLUGIN', `no ${kind} plugin named "${name}" (configured: ${this.names(kind).join(', ') || 'none'})`, {
        details: { kind, name, available: this.names(kind) },
      });
    }
    return p.capability as Capabilities[K];
  }

  has(kind: PluginKind, name: string): boolean {
    return this.active.some((a) => a.kind === kind && a.name === name);
  }

  names(kind: PluginKind): string[] {
    return this.active.filter((a) => a.kind === kind).map((a) => a.name);
  }

  list(): PluginInfo[] {
    return this.active.map(({ name, kind, plugin, source, description, required }) => ({ name, kind, plugin, source, description, required }));
  }

  /** Runs every plugin's health checks (each bounded to 2 s). */
  async health(): Promise<Array<PluginInfo & HealthReport>> {
    return Promise.all(
      this.active.map(async (p) => {
        const info = { name: p.name, kind: p.kind, plugin: p.plugin, source: p.source, description: p.description, required: p.required };
        for (const check of p.checks) {
          try {
            const r = await Promise.race([
              Promise.resolve().then(check),
              new Promise<HealthReport>((res) => setTimeout(() => res({ ok: false, detail: 'health check timed out' }), 2000).unref()),
            ]);
            if (!r.ok) return { ...info, ...r };
          } catch (err) {
            return { ...info, ok: false, detail: (err as Error).message };
          }
        }
        return { ...info, ok: true };
      }),
    );
  }

  /** Aborts the shared signal, then closes plugins in reverse setup order. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    for (const p of [...this.active].reverse()) {
      for (const fn of [...p.closers].reverse()) {
        try {
          await fn();
        } catch (err) {
          this.opts.logger.warn({ err, plugin: p.name }, 'plugin close hook failed');
        }
      }
    }
    this.active.length = 0;
  }
}
