import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/loader.ts';
import { configJsonSchema } from '../../src/config/schema.ts';

function dirWith(file: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-config-'));
  writeFileSync(join(dir, file), text);
  return dir;
}

const CLI = join(import.meta.dirname, '../../src/main.ts');
const TSX = join(import.meta.dirname, '../../node_modules/.bin/tsx');

describe('configuration', () => {
  it('works with no file at all (defaults)', () => {
    const { config, file } = loadConfig({ env: {}, cwd: mkdtempSync(join(tmpdir(), 'mcp-empty-')) });
    expect(file).toBeUndefined();
    expect(config.server).toMatchObject({ port: 8080, host: '127.0.0.1' });
    expect(config.storage.url).toBeUndefined();
    expect(config.router.balancer).toBe('p2c-ewma');
  });

  it('reads YAML and applies environment overrides over it', () => {
    const cwd = dirWith('capibara.yaml', 'server:\n  port: 9000\nlog:\n  level: warn\n');
    const { config } = loadConfig({ cwd, env: { MCP_SERVER__MAX_BODY_BYTES: '1024', DATABASE_URL: 'postgres://x/y', MCP_ROUTER__RETRY_BUDGET__RATIO: '0.1' } });
    expect(config.server.port).toBe(9000);
    expect(config.server.maxBodyBytes).toBe(1024);
    expect(config.storage.url).toBe('postgres://x/y');
    expect(config.router.retryBudget.ratio).toBe(0.1);
    expect(config.log.level).toBe('warn');
  });

  it('names the path of an unknown key, a wrong type, and the env variable it came from', () => {
    const cwd = dirWith('capibara.yaml', 'server:\n  port: "eighty"\n  colour: blue\n');
    expect(() => loadConfig({ cwd, env: {} })).toThrow(/server\.port: .*number/);
    expect(() => loadConfig({ cwd, env: {} })).toThrow(/server\.colour/);
    const ok = dirWith('capibara.json', '{}');
    expect(() => loadConfig({ cwd: ok, env: { MCP_ROUTER__MAX_ATTEMPTS: '"many"' } })).toThrow(/router\.maxAttempts: .* \(from MCP_ROUTER__MAX_ATTEMPTS\)/);
  });

  it('refuses a custom role that would redefine a built-in one', () => {
    const cwd = dirWith('capibara.yaml', 'auth:\n  roles:\n    operator: [models:read]\n    auditor: [audit:read]\n');
    expect(() => loadConfig({ cwd, env: {} })).toThrow(/auth\.roles\.operator: a built-in role cannot be redefined/);
    const ok = dirWith('capibara.yaml', 'auth:\n  roles:\n    auditor: [audit:read]\n');
    expect(loadConfig({ cwd: ok, env: {} }).config.auth.roles).toEqual({ auditor: ['audit:read'] });
  });

  it('exports a JSON Schema for editors', () => {
    const schema = configJsonSchema() as { properties: Record<string, unknown> };
    expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(['server', 'storage', 'plugins', 'router', 'models']));
  });

  it('`capibara-mcp config check` exits non-zero naming the bad key, zero on a good file', { timeout: 120_000 }, () => {
    const bad = dirWith('capibara.yaml', 'storage:\n  dataDirectory: /tmp\n');
    const r = spawnSync(TSX, ['--conditions=capibara-source', CLI, 'config', 'check'], {
      cwd: bad,
      encoding: 'utf8',
      env: { ...process.env, DATABASE_URL: '' },
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('MCP_CONFIG_INVALID');
    expect(r.stderr).toContain('storage.dataDirectory');
    const good = dirWith('capibara.yaml', 'server:\n  port: 9001\n');
    const ok = spawnSync(TSX, ['--conditions=capibara-source', CLI, 'config', 'check'], {
      cwd: good,
      encoding: 'utf8',
      env: { ...process.env, DATABASE_URL: '' },
    });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain('configuration ok');
  });
});
