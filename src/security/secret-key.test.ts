import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DATA_DIR_KEY_FILE, resolveSecretKey } from './secret-key.ts';
import { SecretBox } from './secrets.ts';

const newKey = () => randomBytes(32).toString('base64');
const dev = { mode: 'development' as const };

describe('resolveSecretKey', () => {
  const root = mkdtempSync(join(tmpdir(), 'mcp-secret-key-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  const folder = () => join(root, `case-${n++}`);
  const pglite = (dataDir: string) => ({ storage: { inMemory: false, dataDir }, security: dev, baseDir: root });
  const postgres = { storage: { url: 'postgres://db/x', inMemory: false, dataDir: '.data' }, security: dev, baseDir: root };

  it('takes MCP_SECRET_KEY, then MCP_SECRET_KEY_FILE, then the data-dir file', () => {
    const dataDir = folder();
    const fileKey = newKey();
    const file = join(root, 'mounted');
    writeFileSync(file, `${fileKey}\n`, { mode: 0o444 });
    const envKey = newKey();
    const fromEnv = resolveSecretKey({ ...pglite(dataDir), env: { MCP_SECRET_KEY: envKey, MCP_SECRET_KEY_FILE: file } });
    expect(fromEnv.kind).toBe('env');
    expect(fromEnv.box.keyId).toBe(new SecretBox(envKey).keyId);
    const fromFile = resolveSecretKey({ ...pglite(dataDir), env: { MCP_SECRET_KEY_FILE: file } });
    expect(fromFile.kind).toBe('file');
    expect(fromFile.box.keyId).toBe(new SecretBox(fileKey).keyId);
    expect(fromFile.describe()).toBe(`file (MCP_SECRET_KEY_FILE: ${file})`);
    expect(fromFile.describe()).not.toContain(fileKey);
    // PostgreSQL takes it too.
    expect(resolveSecretKey({ ...postgres, env: { MCP_SECRET_KEY_FILE: file } }).kind).toBe('file');
    const fromDir = resolveSecretKey({ ...pglite(dataDir), env: {} });
    expect(fromDir.kind).toBe('data-dir file');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('draws a data-dir key in memory and writes it only on persist(): mode 0600, the same key on the next resolve', () => {
    const dataDir = folder();
    const first = resolveSecretKey({ ...pglite(dataDir), env: {} });
    expect(first.describe()).toContain('created at the first start');
    expect(first.box.canSeal).toBe(true);
    const sealed = first.box.seal('upstream-secret');
    first.persist();
    expect(first.created).toBe(true);
    const file = join(dataDir, DATA_DIR_KEY_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = resolveSecretKey({ ...pglite(dataDir), env: {} });
    expect(again.created).toBe(false);
    expect(again.box.open(sealed)).toBe('upstream-secret');
    again.persist(); // nothing to write
    expect(again.describe()).toBe(`data-dir file (${file})`);
  });

  it('never overwrites a key file another start wrote meanwhile', () => {
    const dataDir = folder();
    const a = resolveSecretKey({ ...pglite(dataDir), env: {} });
    const b = resolveSecretKey({ ...pglite(dataDir), env: {} });
    a.persist();
    const written = readFileSync(join(dataDir, DATA_DIR_KEY_FILE), 'utf8');
    expect(() => b.persist()).toThrow(expect.objectContaining({ code: 'MCP_CONFIG_INVALID', message: expect.stringContaining('start again') }));
    expect(readFileSync(join(dataDir, DATA_DIR_KEY_FILE), 'utf8')).toBe(written);
  });

  it('removes the temporary copies of the key that a start killed mid-write left, and only those of processes gone', () => {
    const dataDir = folder();
    resolveSecretKey({ ...pglite(dataDir), env: {} }).persist();
    const file = join(dataDir, DATA_DIR_KEY_FILE);
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!; // a pid whose process has exited
    const stale = `${file}.${gone}.0badcafe.tmp`;
    const live = `${file}.${process.ppid}.0badcafe.tmp`; // the process that started this test runs
    const other = `${file}.backup`;
    for (const f of [stale, live, other]) writeFileSync(f, `${newKey()}\n`, { mode: 0o600 });
    resolveSecretKey({ ...pglite(dataDir), env: {} }).persist(); // the file is there: a start with nothing to write
    expect([existsSync(stale), existsSync(live), existsSync(other), existsSync(file)]).toEqual([false, true, true, true]);
  });

  it('refuses a data-dir key file group or others may read or write, and one that holds no 32-byte key', () => {
    const dataDir = folder();
    resolveSecretKey({ ...pglite(dataDir), env: {} }).persist();
    const file = join(dataDir, DATA_DIR_KEY_FILE);
    const key = readFileSync(file, 'utf8').trim();
    for (const mode of [0o640, 0o604, 0o620]) {
      chmodSync(file, mode);
      expect(() => resolveSecretKey({ ...pglite(dataDir), env: {} })).toThrow(
        expect.objectContaining({ code: 'MCP_CONFIG_INVALID', message: expect.stringContaining(`mode 0${mode.toString(8)}`) }),
      );
    }
    chmodSync(file, 0o400);
    expect(resolveSecretKey({ ...pglite(dataDir), env: {} }).box.keyId).toBe(new SecretBox(key).keyId);
    chmodSync(file, 0o600);
    writeFileSync(file, 'short');
    expect(() => resolveSecretKey({ ...pglite(dataDir), env: {} })).toThrow(/32 random bytes/);
  });

  it('discard() removes only a file this start wrote', () => {
    const dataDir = folder();
    const first = resolveSecretKey({ ...pglite(dataDir), env: {} });
    first.persist();
    const next = resolveSecretKey({ ...pglite(dataDir), env: {} });
    next.discard();
    expect(existsSync(join(dataDir, DATA_DIR_KEY_FILE))).toBe(true);
    first.discard();
    expect(existsSync(join(dataDir, DATA_DIR_KEY_FILE))).toBe(false);
  });

  it('keeps MCP_SECRET_KEY_PREVIOUS with any source (rotation from a key file to MCP_SECRET_KEY)', () => {
    const dataDir = folder();
    const old = resolveSecretKey({ ...pglite(dataDir), env: {} });
    old.persist();
    const sealed = old.box.seal('s');
    const oldKey = readFileSync(join(dataDir, DATA_DIR_KEY_FILE), 'utf8').trim();
    const rotated = resolveSecretKey({ ...pglite(dataDir), env: { MCP_SECRET_KEY: newKey(), MCP_SECRET_KEY_PREVIOUS: oldKey } });
    expect(rotated.box.open(sealed)).toBe('s');
  });

  it('in-memory PGlite: a key per process, no file', () => {
    const dataDir = folder();
    const k = resolveSecretKey({ storage: { inMemory: true, dataDir }, security: dev, baseDir: root, env: {} });
    expect(k.kind).toBe('memory');
    expect(k.box.canSeal).toBe(true);
    k.persist();
    expect(existsSync(dataDir)).toBe(false);
  });

  it('PostgreSQL without a key: none (no per-host file), and strict mode refuses', () => {
    const none = resolveSecretKey({ ...postgres, env: {} });
    expect(none.kind).toBe('none');
    expect(none.box.canSeal).toBe(false);
    expect(none.describe()).toMatch(/^none \(PostgreSQL/);
    expect(() => resolveSecretKey({ ...postgres, security: { mode: 'strict' }, env: {} })).toThrow(
      expect.objectContaining({ code: 'MCP_CONFIG_INVALID', message: expect.stringContaining('security.mode is strict') }),
    );
    expect(resolveSecretKey({ ...postgres, security: { mode: 'strict' }, env: { MCP_SECRET_KEY: newKey() } }).kind).toBe('env');
  });

  it('a bad MCP_SECRET_KEY_FILE names the variable and the file, never the contents', () => {
    const file = join(root, 'bad-key');
    writeFileSync(file, 'hunter2-not-a-key');
    expect(() => resolveSecretKey({ ...postgres, env: { MCP_SECRET_KEY_FILE: file } })).toThrow(
      expect.objectContaining({ code: 'MCP_CONFIG_INVALID', message: expect.not.stringContaining('hunter2') }),
    );
    expect(() => resolveSecretKey({ ...postgres, env: { MCP_SECRET_KEY_FILE: join(root, 'absent') } })).toThrow(/MCP_SECRET_KEY_FILE .*ENOENT/);
    expect(() => resolveSecretKey({ ...postgres, env: { MCP_SECRET_KEY_FILE: root } })).toThrow(/not a regular file/);
  });
});
