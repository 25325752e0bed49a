/**
 * The command line a new user meets: help and version exit 0, every command has its help (the
 * worker's lists its flags), an unknown option is one line (no stack trace), and `config check`
 * refuses what `start` refuses, with the same message, without opening a database.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, runCli } from './support.ts';

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const COMMANDS = ['start', 'worker', 'migrate', 'config check', 'config schema', 'schema print', 'schema check', 'help'];

describe('capibara-mcp help and version', () => {
  it('--help, -h and help print every command and exit 0', async () => {
    const argsList = [['--help'], ['-h'], ['help']];
    const runs = await Promise.all(argsList.map((args) => runCli(args)));
    for (const [i, r] of runs.entries()) {
      expect(r.code, argsList[i]!.join(' ')).toBe(0);
      expect(r.stderr).toBe('');
      for (const c of COMMANDS) expect(r.stdout).toContain(`  ${c}`);
      expect(r.stdout).toContain('--version');
    }
  }, 120_000);

  it('--version and -v print the package version and exit 0', async () => {
    for (const r of await Promise.all(['--version', '-v'].map((flag) => runCli([flag])))) {
      expect(r).toMatchObject({ code: 0, stderr: '' });
      expect(r.stdout.trim()).toBe(`capibara-mcp ${VERSION} (node ${process.version})`);
    }
  }, 120_000);

  it('worker --help and help worker list the worker flags', async () => {
    const runs = await Promise.all(
      [
        ['worker', '--help'],
        ['help', 'worker'],
      ].map((args) => runCli(args)),
    );
    for (const r of runs) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: capibara-mcp worker/);
      for (const flag of ['--gateway URL', '--port N', '--config FILE', 'MCP_WORKER__TOKEN']) expect(r.stdout).toContain(flag);
    }
  }, 120_000);

  it('an unknown option or command is one clear line and exit 2, never a stack trace', async () => {
    // Four independent runs, side by side.
    const [opt, cmd, misplaced, none] = await Promise.all([
      runCli(['start', '--verbose']),
      runCli(['help', 'frobnicate']),
      runCli(['config', 'check', '--gateway', 'http://127.0.0.1:1']),
      runCli([]),
    ]);
    expect(opt.code).toBe(2);
    expect(opt.stderr).toContain("Unknown option '--verbose'");
    expect(opt.stderr).toContain('capibara-mcp --help');
    expect(opt.stderr + opt.stdout).not.toMatch(/\n\s+at /);
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toContain('unknown command: frobnicate');
    // Flags of another command are refused, not ignored.
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toContain('--gateway is not an option of `config`');
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('Usage: capibara-mcp <command>');
  }, 120_000);
});

// The cases run side by side (each spawns its own CLI processes): each writes its own file, and the one that
// creates a data folder (the secret key's) has its own directory, so "touches no storage" holds for every other.
describe.concurrent('capibara-mcp config check', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-config-check-'));
  const keyDir = mkdtempSync(join(tmpdir(), 'mcp-config-check-key-'));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(keyDir, { recursive: true, force: true });
  });
  const write = (name: string, config: unknown, under = dir) => {
    const file = join(under, name);
    writeFileSync(file, JSON.stringify({ server: { host: '127.0.0.1', port: 0 }, storage: { dataDir: join(under, 'data') }, ...(config as object) }));
    return file;
  };

  // `start` is run on the three the issue names too (the others go through the same src/start-check.ts).
  const ALSO_START = new Set(['a misspelt balancer', 'an unknown plugin', 'a bad plugin option']);
  it.for<[what: string, config: object, message: string]>([
    ['a misspelt balancer', { router: { balancer: 'round-robbin' } }, 'MCP_CONFIG_INVALID: router.balancer: no balancer plugin named "round-robbin"'],
    ['an unknown plugin', { plugins: [{ use: 'no-such-plugin' }] }, 'MCP_PLUGIN_INVALID: plugin "no-such-plugin" cannot be loaded'],
    ['a bad plugin option', { plugins: [{ use: 'tfjs', options: { runtime: 'cuda' } }] }, 'MCP_PLUGIN_INVALID: plugin "tfjs": option runtime:'],
    ['an unknown auth strategy', { auth: { strategies: ['api-key', 'ldap'] } }, 'MCP_CONFIG_INVALID: auth.strategies.1: no auth plugin named "ldap"'],
    ['a limits store that is no plugin', { limits: { store: 'redis' } }, 'MCP_CONFIG_INVALID: limits.store: no rateLimitStore plugin named "redis"'],
    [
      'a model seed on an unknown backend',
      { models: [{ id: 'm', versions: [{ version: 'v1', instances: [{ backend: 'vllm', endpoint: 'http://127.0.0.1:9' }] }] }] },
      'MCP_CONFIG_INVALID: models.0.versions.0.instances.0.backend: no backend plugin named "vllm"',
    ],
    ['auth off on a public address', { auth: { enabled: false }, server: { host: '0.0.0.0', port: 0 } }, 'MCP_CONFIG_INVALID: auth.enabled: false'],
  ])('refuses %s like start does, without opening the database', { timeout: 120_000 }, async ([what, config, message], { expect }) => {
    const file = write(`bad-${what.replaceAll(' ', '-')}.json`, config);
    // `start` (run side by side with the check) refuses the same configuration with the same message, before it creates anything.
    const [check, start] = await Promise.all([
      runCli(['config', 'check', '--config', file]),
      ALSO_START.has(what) ? runCli(['start', '--config', file]) : undefined,
    ]);
    expect(check.code).toBe(1);
    expect(check.stderr).toContain(message);
    expect(check.stdout).not.toContain('configuration ok');
    expect(existsSync(join(dir, 'data'))).toBe(false);
    if (!start) return;
    expect(start.code).toBe(1);
    expect(start.stderr.split('\n').find((l) => l.startsWith('MCP_'))).toBe(check.stderr.split('\n').find((l) => l.startsWith('MCP_')));
    expect(existsSync(join(dir, 'data', 'pglite'))).toBe(false);
  });

  it('accepts a good configuration, names the plugins a start would set up, and touches no storage', async ({ expect }) => {
    const file = write('good.json', { router: { balancer: 'round-robin' }, plugins: [{ use: 'tfjs', options: { runtime: 'wasm' } }] });
    const r = await runCli(['config', 'check', '--config', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^configuration ok \\(${file.replaceAll('/', '\\/')}\\): \\d+ plugins \\(.*round-robin.*tfjs`));
    expect(existsSync(join(dir, 'data'))).toBe(false);
  }, 60_000);

  it('names where the secret key comes from (env, file, data-dir file, none), never the key, and writes no key file', async ({ expect }) => {
    const file = write('key.json', {}, keyDir);
    const dataDirKey = join(keyDir, 'data', 'secret.key');
    const key = randomBytes(32).toString('base64');
    const keyFile = join(keyDir, 'mounted.key');
    writeFileSync(keyFile, key, { mode: 0o644 });
    const pg = write('pg.json', { storage: { url: 'postgres://127.0.0.1:1/none' } }, keyDir);
    const pgStrict = write('pg-strict.json', { storage: { url: 'postgres://127.0.0.1:1/none' }, security: { mode: 'strict' } }, keyDir);
    // Five independent checks side by side (none of them creates the data folder), then the loose key file.
    const [fresh, fromEnv, fromFile, none, strict] = await Promise.all([
      runCli(['config', 'check', '--config', file]),
      runCli(['config', 'check', '--config', file], { env: { MCP_SECRET_KEY: key } }),
      runCli(['config', 'check', '--config', file], { env: { MCP_SECRET_KEY_FILE: keyFile } }),
      runCli(['config', 'check', '--config', pg]),
      runCli(['config', 'check', '--config', pgStrict]),
    ]);
    expect(fresh.code).toBe(0);
    expect(fresh.stdout).toContain(`secret key: data-dir file (${dataDirKey}, created at the first start)`);
    expect(existsSync(join(keyDir, 'data'))).toBe(false);
    expect(fromEnv.stdout).toContain('secret key: env (MCP_SECRET_KEY)');
    expect(fromFile.stdout).toContain(`secret key: file (MCP_SECRET_KEY_FILE: ${keyFile})`);
    for (const r of [fresh, fromEnv, fromFile]) expect(r.stdout + r.stderr).not.toContain(key);

    // A data-dir key file others may read is refused by the check as by the start.
    mkdirSync(join(keyDir, 'data'));
    writeFileSync(dataDirKey, key, { mode: 0o644 });
    chmodSync(dataDirKey, 0o644);
    const loose = await runCli(['config', 'check', '--config', file]);
    expect(loose.code).toBe(1);
    expect(loose.stderr).toContain(`MCP_CONFIG_INVALID: the secret key file ${dataDirKey} may be read or written by group or others (mode 0644)`);
    expect(loose.stderr).not.toContain(key);
    rmSync(join(keyDir, 'data'), { recursive: true });

    expect(none.code).toBe(0);
    expect(none.stdout).toContain('secret key: none (PostgreSQL without MCP_SECRET_KEY or MCP_SECRET_KEY_FILE');
    expect(strict.code).toBe(1);
    expect(strict.stderr).toContain('MCP_CONFIG_INVALID: security.mode is strict and the gateway has no secret key');
  }, 240_000);

  it('accepts the shipped sample worker config', async ({ expect }) => {
    const r = await runCli(['config', 'check', '--config', join(ROOT, 'examples/worker.yaml')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('configuration ok');
  }, 60_000);
});
