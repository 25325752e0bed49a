import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { McpError } from '../errors.ts';
import { bearerMatches, deriveWorkerCallToken, loadWorkerCallKey, newWorkerSession, WORKER_CALL_KEY_FILE, WORKER_SESSION_PATTERN } from './call-auth.ts';

describe('worker call key and tokens', () => {
  const dirs: string[] = [];
  const fresh = () => {
    const d = mkdtempSync(join(tmpdir(), 'mcp-callkey-'));
    dirs.push(d);
    return join(d, 'data');
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('generates one key file (mode 0600) that concurrent loads agree on and later loads reuse', async () => {
    const dir = fresh();
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadWorkerCallKey(dir, {})));
    expect(new Set(keys.map((k) => k.toString('hex'))).size).toBe(1);
    expect(keys[0]!.length).toBe(32);
    expect(statSync(join(dir, WORKER_CALL_KEY_FILE)).mode & 0o777).toBe(0o600);
    expect((await loadWorkerCallKey(dir, {})).equals(keys[0]!)).toBe(true);
    expect(readFileSync(join(dir, WORKER_CALL_KEY_FILE), 'utf8')).not.toContain(keys[0]!.toString('hex'));
    expect((await loadWorkerCallKey(fresh(), {})).equals(keys[0]!)).toBe(false);
  });

  it('MCP_WORKER_CALL_KEY wins over the file; a short one is a config error', async () => {
    const dir = fresh();
    const env = { MCP_WORKER_CALL_KEY: 'x'.repeat(32) };
    expect((await loadWorkerCallKey(dir, env)).toString()).toBe('x'.repeat(32));
    expect(() => statSync(join(dir, WORKER_CALL_KEY_FILE))).toThrow();
    const err = await loadWorkerCallKey(dir, { MCP_WORKER_CALL_KEY: 'short' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe('MCP_CONFIG_INVALID');
    expect((err as McpError).message).not.toContain('short');
  });

  it('derives a different token for each worker, session, endpoint and key; checks bearers exactly', () => {
    const k = Buffer.alloc(32, 1);
    const t = deriveWorkerCallToken(k, 'w1', 's'.repeat(16), 'http://127.0.0.1:1');
    const others = [
      deriveWorkerCallToken(k, 'w2', 's'.repeat(16), 'http://127.0.0.1:1'),
      deriveWorkerCallToken(k, 'w1', 't'.repeat(16), 'http://127.0.0.1:1'),
      deriveWorkerCallToken(k, 'w1', 's'.repeat(16), 'http://127.0.0.1:2'),
      deriveWorkerCallToken(Buffer.alloc(32, 2), 'w1', 's'.repeat(16), 'http://127.0.0.1:1'),
    ];
    expect(new Set([t, ...others]).size).toBe(5);
    expect(bearerMatches(`Bearer ${t}`, t)).toBe(true);
    expect(bearerMatches(`bearer  ${t} `, t)).toBe(true);
    for (const h of [undefined, '', t, `Basic ${t}`, `Bearer ${t}x`, `Bearer ${t.slice(1)}`, `Bearer ${t} extra`]) expect(bearerMatches(h, t)).toBe(false);
    expect(bearerMatches(`Bearer ${t}`, undefined)).toBe(false);
    expect(newWorkerSession()).toMatch(WORKER_SESSION_PATTERN);
    expect(newWorkerSession()).not.toBe(newWorkerSession());
  });
});
