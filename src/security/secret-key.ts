/**
 * Where the gateway's secret key comes from: the 32 bytes the one secret box (secrets.ts) seals
 * instance secrets and the access-token signing key with. The first that applies wins:
 *
 * 1. `MCP_SECRET_KEY`: base64 of 32 random bytes;
 * 2. `MCP_SECRET_KEY_FILE`: a file holding that (a mounted Kubernetes or Docker secret), any storage;
 * 3. embedded PGlite on disk: `<storage.dataDir>/secret.key`, made at first start (random, mode 0600,
 *    published atomically: written under a temporary name opened with O_EXCL, then hard-linked into
 *    place, so a reader never sees half a key and two starts never both win). Like ssh with a private
 *    key, a file group or others may read or write is refused;
 * 4. in-memory PGlite: a random key for the life of the process (the database goes with it);
 * 5. PostgreSQL without 1 or 2: no key. Replicas share one database and need one same key, which a
 *    per-host file would split: a warning (the signing key is stored unencrypted, literal secrets are
 *    refused); `security.mode: strict` refuses to start.
 *
 * `MCP_SECRET_KEY_PREVIOUS` (comma-separated) adds older keys that still open, whatever the source.
 * Neither the key nor the key file's contents is ever logged or put in a message: only where it came from.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { McpError } from '../errors.ts';
import { createPrivateFileOnce, removeStaleTemps } from './private-file.ts';
import { previousKeys, SecretBox } from './secrets.ts';

/** The name of the key file PGlite starts make in the data folder. */
export const DATA_DIR_KEY_FILE = 'secret.key';

/** `env` MCP_SECRET_KEY, `file` MCP_SECRET_KEY_FILE, `data-dir file` <dataDir>/secret.key, `memory` in-memory PGlite, `none` PostgreSQL without a key. */
export type SecretKeySourceKind = 'env' | 'file' | 'data-dir file' | 'memory' | 'none';

export interface SecretKeyInputs {
  storage: { url?: string | undefined; inMemory: boolean; dataDir: string };
  security: { mode: 'development' | 'strict' };
  /** Folder a relative `storage.dataDir` resolves against. */
  baseDir: string;
  env?: NodeJS.ProcessEnv;
}

const invalid = (message: string, path: string) => new McpError('MCP_CONFIG_INVALID', message, { details: { paths: [path] } });

function keyBytesOk(text: string): boolean {
  return Buffer.from(text.trim(), 'base64').length === 32;
}

/**
 * The key a file holds (undefined: no such file and `missingOk`); `label` names the file in messages
 * (never its contents); `privateMode`: refuse a file group or others may read or write.
 */
function readKeyFile(path: string, label: string, variable: string, opts: { privateMode: boolean; missingOk: boolean }): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && opts.missingOk) return undefined;
    throw invalid(`${label}: cannot read the key file (${code ?? 'error'})`, variable);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw invalid(`${label}: not a regular file`, variable);
    if (opts.privateMode && process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw invalid(
        `${label} may be read or written by group or others (mode ${mode}); it is refused, as ssh refuses such a private key: run \`chmod 600 ${path}\``,
        variable,
      );
    }
    const text = readFileSync(fd, 'utf8');
    if (!keyBytesOk(text)) throw invalid(`${label} must hold the base64 encoding of 32 random bytes (e.g. \`openssl rand -base64 32\`)`, variable);
    return text.trim();
  } finally {
    closeSync(fd);
  }
}

/** Writes `key` to `path` unless a file is there already (createPrivateFileOnce); answers whether this call wrote it. */
function publishKeyFile(path: string, key: string): boolean {
  try {
    return createPrivateFileOnce(path, `${key}\n`);
  } catch (err) {
    throw invalid(`cannot create the secret key file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, 'storage.dataDir');
  }
}

/**
 * The gateway's secret key and where it came from. Made by `resolveSecretKey`, which writes nothing:
 * a first start's data-dir key is drawn in memory (`pending`) and written by `persist()` once the
 * whole configuration is accepted, so `config check` and a refused start leave no file behind.
 */
export class SecretKey {
  private wrote = false;

  constructor(
    readonly box: SecretBox,
    readonly kind: SecretKeySourceKind,
    /** The key file (kinds `file` and `data-dir file`). */
    readonly path?: string,
    /** `data-dir file` not there yet: `persist()` writes the key the box holds. */
    private pending = false,
    private readonly fresh?: string,
  ) {}

  /** Whether this start wrote the data-dir key file (first start, or the file was missing). */
  get created(): boolean {
    return this.wrote;
  }

  /** Writes a pending data-dir key file, after removing what a start killed while writing it left (removeStaleTemps). */
  persist(): void {
    if (this.kind === 'data-dir file' && this.path) removeStaleTemps(this.path);
    if (!this.pending || !this.path || !this.fresh) return;
    mkdirSync(dirname(this.path), { recursive: true });
    if (!publishKeyFile(this.path, this.fresh)) {
      throw invalid(`the secret key file ${this.path} was created by another process during this start: start again`, 'storage.dataDir');
    }
    this.pending = false;
    this.wrote = true;
  }

  /** Removes the data-dir key file this start wrote (its key opens nothing stored), so the one used before can be put back. */
  discard(): void {
    if (this.wrote && this.path) unlinkSync(this.path);
    this.wrote = false;
  }

  /** Where the key comes from, for `config check` and messages (never the key). */
  describe(): string {
    switch (this.kind) {
      case 'env':
        return 'env (MCP_SECRET_KEY)';
      case 'file':
        return `file (MCP_SECRET_KEY_FILE: ${this.path})`;
      case 'data-dir file':
        return `data-dir file (${this.path}${this.pending ? ', created at the first start' : ''})`;
      case 'memory':
        return 'memory (in-memory PGlite: a new key each start, like the database)';
      case 'none':
        return 'none (PostgreSQL without MCP_SECRET_KEY or MCP_SECRET_KEY_FILE: the access-token signing key is stored unencrypted, literal secrets are refused)';
    }
  }
}

/** Finds the secret key (see the top of this file); throws MCP_CONFIG_INVALID for a bad key, key file or (strict) a missing key. Writes nothing. */
export function resolveSecretKey(inputs: SecretKeyInputs): SecretKey {
  const env = inputs.env ?? process.env;
  const previous = previousKeys(env);
  if (env.MCP_SECRET_KEY) return new SecretKey(new SecretBox(env.MCP_SECRET_KEY, previous, 'MCP_SECRET_KEY'), 'env');
  if (env.MCP_SECRET_KEY_FILE) {
    const path = resolve(env.MCP_SECRET_KEY_FILE);
    const label = `MCP_SECRET_KEY_FILE (${path})`;
    // A mounted secret is often 0644 or 0444 (Kubernetes, Docker): its mount guards it, not its mode.
    const key = readKeyFile(path, label, 'MCP_SECRET_KEY_FILE', { privateMode: false, missingOk: false })!;
    return new SecretKey(new SecretBox(key, previous, label), 'file', path);
  }
  if (!inputs.storage.url) {
    if (inputs.storage.inMemory) return new SecretKey(new SecretBox(randomBytes(32).toString('base64'), previous, 'the in-memory key'), 'memory');
    const path = join(resolve(inputs.baseDir, inputs.storage.dataDir), DATA_DIR_KEY_FILE);
    const label = `the secret key file ${path}`;
    const existing = readKeyFile(path, label, 'storage.dataDir', { privateMode: true, missingOk: true });
    if (existing) return new SecretKey(new SecretBox(existing, previous, label), 'data-dir file', path);
    const fresh = randomBytes(32).toString('base64');
    return new SecretKey(new SecretBox(fresh, previous, label), 'data-dir file', path, true, fresh);
  }
  if (inputs.security.mode === 'strict') {
    throw invalid(
      'security.mode is strict and the gateway has no secret key: with PostgreSQL set MCP_SECRET_KEY or MCP_SECRET_KEY_FILE (the same key on every replica), or the access-token signing key would be stored unencrypted',
      'MCP_SECRET_KEY',
    );
  }
  return new SecretKey(new SecretBox(undefined, previous, 'MCP_SECRET_KEY'), 'none');
}
