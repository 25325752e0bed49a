/**
 * Sets one plugin up the way the gateway's plugin host does, for the conformance suites: the
 * definition (or a `use:` string resolved by the gateway's own loader), options validated by the
 * plugin's schema, `setup` called with a real PluginContext, close hooks run in reverse order.
 */
import { AddressPolicy } from '../security/address-policy.ts';
import { MemoryCredentialStore } from './memory-credentials.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { McpError } from '../errors.ts';
import type { Capabilities, CredentialStore, HealthReport, PluginContext, PluginDefinition, PluginKind } from '../plugin/contract.ts';
import { loadPluginDefinition } from '../plugin/loader.ts';

/** A plugin given to a suite: its definition (the module's default export) or what a config's `use:` would say. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type PluginUnderTest<K extends PluginKind> = PluginDefinition<K, any> | string;

export interface PluginHarness<K extends PluginKind> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly definition: PluginDefinition<K, any>;
  /** The configured name the plugin was set up under (`ctx.name`). */
  readonly name: string;
  readonly capability: Capabilities[K];
  /** Runs the health checks the plugin registered with `ctx.onHealth`. */
  health(): Promise<HealthReport[]>;
  /** Aborts `ctx.signal`, runs the close hooks (reverse order), removes the data folder. */
  close(): Promise<void>;
}

function describeValue(v: unknown): string {
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/**
 * Loads (when given a string: a path, resolved from the working folder, or a package name),
 * checks the kind, validates `rawOptions` and calls `setup` with a fresh context.
 */
export async function setUpPlugin<K extends PluginKind>(
  kind: K,
  plugin: PluginUnderTest<K>,
  rawOptions: unknown,
  configuredName?: string | ((pluginName: string) => string),
  credentials: CredentialStore = new MemoryCredentialStore(),
): Promise<PluginHarness<K>> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const definition = (typeof plugin === 'string' ? await loadPluginDefinition(plugin, process.cwd()) : plugin) as PluginDefinition<K, any>;
  if (definition.kind !== kind) {
    throw new Error(`plugin "${definition.name}" is a ${String(definition.kind)} plugin; this suite checks ${kind} plugins`);
  }
  const parsed = definition.options.safeParse(rawOptions ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `option ${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`plugin "${definition.name}": the fixture's options are invalid: ${issues}`);
  }
  const name = typeof configuredName === 'function' ? configuredName(definition.name) : (configuredName ?? definition.name);
  const abort = new AbortController();
  const closers: Array<() => unknown> = [];
  const checks: Array<() => HealthReport | Promise<HealthReport>> = [];
  const dataDir = mkdtempSync(join(tmpdir(), `mcp-conformance-${definition.name}-`));
  const ctx: PluginContext = {
    name,
    logger: pino({ level: process.env.LOG_LEVEL ?? 'silent' }).child({ plugin: name }),
    signal: abort.signal,
    dataDir,
    metrics: new Registry(),
    addressPolicy: new AddressPolicy(),
    get(other: PluginKind, otherName: string): never {
      throw new McpError('MCP_UNKNOWN_PLUGIN', `the conformance suite sets up "${name}" alone; it has no ${other} plugin "${otherName}"`);
    },
    onClose(fn) {
      closers.push(fn);
    },
    onHealth(fn) {
      checks.push(fn);
    },
    credentials,
  };
  let capability: Capabilities[K];
  try {
    capability = await definition.setup(ctx, parsed.data);
    if (!capability || typeof capability !== 'object') throw new Error(`setup() returned ${describeValue(capability)}, not a ${kind} object`);
  } catch (err) {
    for (const fn of closers.reverse())
      await Promise.resolve()
        .then(fn)
        .catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  let closed = false;
  return {
    definition,
    name,
    capability,
    async health() {
      return Promise.all(checks.map((fn) => Promise.resolve().then(fn)));
    },
    async close() {
      if (closed) return;
      closed = true;
      abort.abort();
      for (const fn of closers.reverse()) await fn();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Resolves with the outcome of `p` (never rejects). */
export async function settle<T>(p: Promise<T> | (() => Promise<T>)): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await (typeof p === 'function' ? p() : p) };
  } catch (error) {
    return { ok: false, error };
  }
}

/** `p`, or an Error naming `what` when it has not settled after `ms` (the timer never keeps the process alive). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms (it hangs)`)), ms);
    timer.unref?.();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Polls `cond` (every 10 ms) until it holds; an Error naming `what` after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`${what} (waited ${ms} ms)`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export { describeValue };
