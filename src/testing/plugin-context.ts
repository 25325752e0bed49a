import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { Capabilities, CredentialStore, PluginContext, PluginKind } from '../plugin/contract.ts';
import { AddressPolicy } from '../security/address-policy.ts';
import { MemoryCredentialStore } from './memory-credentials.ts';

/** A plugin context for tests of one plugin on its own (credentials: an empty MemoryCredentialStore unless given); close() runs the onClose hooks. */
export function testPluginContext(
  name = 'test-plugin',
  credentials: CredentialStore = new MemoryCredentialStore(),
): PluginContext & { close(): Promise<void>; abort: AbortController } {
  const abort = new AbortController();
  const closers: Array<() => unknown> = [];
  return {
    name,
    logger: pino({ level: process.env.LOG_LEVEL ?? 'silent' }).child({ plugin: name }),
    signal: abort.signal,
    dataDir: mkdtempSync(join(tmpdir(), 'mcp-plugin-')),
    metrics: new Registry(),
    addressPolicy: new AddressPolicy(),
    get<K extends PluginKind>(kind: K, other: string): Capabilities[K] {
      throw new Error(`testPluginContext has no ${kind} plugin ${other}`);
    },
    onClose(fn) {
      closers.push(fn);
    },
    onHealth() {},
    credentials,
    abort,
    async close() {
      abort.abort();
      for (const fn of closers.reverse()) await fn();
    },
  };
}
