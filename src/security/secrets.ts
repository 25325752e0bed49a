/**
 * Secrets in instance options (apiKey, token, authorization headers…). A secret value is stored
 * as one of:
 * - a reference `env:NAME` (read from the gateway's environment when the instance loads),
 * - a reference `file:PATH` (read when the instance loads; through the API only under
 *   `security.secrets.fileRoots`, from the configuration file anywhere),
 * - a literal, encrypted at rest with AES-256-GCM under the gateway's secret key (32 bytes; where it
 *   comes from: src/security/secret-key.ts): `enc:v1:<key id>:<base64url(iv | ciphertext | tag)>`.
 *   Older keys listed in `MCP_SECRET_KEY_PREVIOUS` (comma-separated) still decrypt, so keys can
 *   rotate. Without a key (PostgreSQL without MCP_SECRET_KEY / MCP_SECRET_KEY_FILE) a literal
 *   secret is refused.
 * Plaintext exists only in memory, in the options handed to the backend's `load`. Every API shows
 * options through `redact`: references as they are, literals as `[redacted]`.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { resolveSecret } from '../sdk/secret-ref.ts';
import { isAbsolute, resolve, sep } from 'node:path';
import { McpError } from '../errors.ts';
import type { EndpointSource } from './address-policy.ts';

export const REDACTED = '[redacted]';
const ENVELOPE_PREFIX = 'enc:v1:';
const AAD = Buffer.from('capibara-mcp instance option secret v1');
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/** Option names (lower-cased, without `-`/`_`) that always hold secrets, at any depth. */
const SECRET_NAMES = new Set([
  'apikey',
  'xapikey',
  'apitoken',
  'token',
  'accesstoken',
  'authtoken',
  'bearertoken',
  'refreshtoken',
  'idtoken',
  'sessiontoken',
  'secret',
  'clientsecret',
  'secretkey',
  'secretaccesskey',
  'accesskey',
  'privatekey',
  'password',
  'passwd',
  'passphrase',
  'authorization',
  'proxyauthorization',
  'cookie',
  'credentials',
  'credential',
]);
/** Header names (inside any `headers` object) holding secrets when they contain one of these. */
const SECRET_HEADER_PARTS = ['authorization', 'apikey', 'token', 'secret', 'cookie', 'password', 'auth', 'signature'];
const SECRET_SUFFIXES = ['apikey', 'secret', 'password', 'authorization', 'privatekey', 'accesskey'];

const squash = (name: string) => name.toLowerCase().replace(/[^a-z0-9]/g, '');

/** Decides which option paths hold secrets: the built-in names, `security.secrets.extraKeys`, and a backend's `secretOptions`. */
export class SecretFields {
  private readonly extra: ReadonlySet<string>;

  constructor(extraKeys: readonly string[] = []) {
    this.extra = new Set(extraKeys.map(squash));
  }

  /** Whether the option at `path` (dotted, e.g. `headers.authorization`) is a secret; `declared`: the backend's secretOptions. */
  isSecret(path: readonly string[], declared: readonly string[] = []): boolean {
    const key = squash(path[path.length - 1] ?? '');
    if (SECRET_NAMES.has(key) || this.extra.has(key) || SECRET_SUFFIXES.some((s) => key.endsWith(s))) return true;
    const parent = path.length > 1 ? squash(path[path.length - 2]!) : '';
    if (parent === 'headers' && SECRET_HEADER_PARTS.some((p) => key.includes(p))) return true;
    const dotted = path.join('.').toLowerCase();
    return declared.some((d) => d.toLowerCase() === dotted);
  }
}

interface Key {
  id: string;
  bytes: Buffer;
}

function parseKey(text: string, name: string): Key {
  const bytes = Buffer.from(text.trim(), 'base64');
  if (bytes.length !== 32) {
    throw new McpError('MCP_CONFIG_INVALID', `${name} must hold the base64 encoding of 32 random bytes (e.g. \`openssl rand -base64 32\`)`, {
      details: { paths: [name] },
    });
  }
  return { id: createHash('sha256').update(bytes).digest('base64url').slice(0, 8), bytes };
}

/** AES-256-GCM with a current key (encrypts) and previous ones (still decrypt). */
export class SecretBox {
  private readonly current: Key | undefined;
  private readonly keys = new Map<string, Key>();

  /**
   * `current`: base64 of 32 bytes (seals and opens); `previous`: older keys (open only); `source`:
   * where `current` came from, as messages name it (never the key), e.g. `MCP_SECRET_KEY`.
   */
  constructor(
    current?: string,
    previous: readonly string[] = [],
    readonly source = 'MCP_SECRET_KEY',
  ) {
    if (current) {
      this.current = parseKey(current, source);
      this.keys.set(this.current.id, this.current);
    }
    for (const p of previous) {
      const k = parseKey(p, 'MCP_SECRET_KEY_PREVIOUS');
      if (!this.keys.has(k.id)) this.keys.set(k.id, k);
    }
  }

  /** From MCP_SECRET_KEY and MCP_SECRET_KEY_PREVIOUS only (the gateway resolves its key with resolveSecretKey). */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): SecretBox {
    return new SecretBox(env.MCP_SECRET_KEY || undefined, previousKeys(env));
  }

  get canSeal(): boolean {
    return this.current !== undefined;
  }

  /** The id of the key new secrets are sealed with (a hash prefix, not the key). */
  get keyId(): string | undefined {
    return this.current?.id;
  }

  seal(plaintext: string): string {
    if (!this.current) throw new Error('no secret key (MCP_SECRET_KEY / MCP_SECRET_KEY_FILE)');
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.current.bytes, iv);
    cipher.setAAD(AAD);
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return `${ENVELOPE_PREFIX}${this.current.id}:${Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url')}`;
  }

  open(envelope: string): string {
    const rest = envelope.slice(ENVELOPE_PREFIX.length);
    const colon = rest.indexOf(':');
    const kid = rest.slice(0, colon);
    const key = this.keys.get(kid);
    if (colon < 0 || !key) {
      throw new McpError(
        'MCP_CONFLICT',
        `a stored secret was encrypted with key id "${kid}", which is not configured (${this.source} / MCP_SECRET_KEY_PREVIOUS)`,
      );
    }
    const raw = Buffer.from(rest.slice(colon + 1), 'base64url');
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.bytes, raw.subarray(0, 12));
      decipher.setAAD(AAD);
      decipher.setAuthTag(raw.subarray(raw.length - 16));
      return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
    } catch {
      throw new McpError('MCP_CONFLICT', `a stored secret (key id "${kid}") does not decrypt: it was altered or the key is wrong`);
    }
  }
}

/** The keys listed in MCP_SECRET_KEY_PREVIOUS (comma-separated). */
export function previousKeys(env: NodeJS.ProcessEnv): string[] {
  return (env.MCP_SECRET_KEY_PREVIOUS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export const isEnvelope = (v: string) => v.startsWith(ENVELOPE_PREFIX);
const isReference = (v: string) => v.startsWith('env:') || v.startsWith('file:');

type Visit = (value: string, path: readonly string[]) => string | Promise<string>;

/** A deep copy of `value` where each secret string is replaced by `visit`'s answer (a secret object's strings are all secrets). */
async function mapSecrets(
  value: unknown,
  fields: SecretFields,
  declared: readonly string[],
  visit: Visit,
  path: string[] = [],
  inside = false,
): Promise<unknown> {
  if (Array.isArray(value)) return Promise.all(value.map((v, i) => mapSecrets(v, fields, declared, visit, [...path, String(i)], inside)));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const p = [...path, k];
      out[k] = await mapSecrets(v, fields, declared, visit, p, inside || fields.isSecret(p, declared));
    }
    return out;
  }
  if (typeof value === 'string' && (inside || isEnvelope(value))) return visit(value, path);
  return value;
}

/** The same, synchronous (redaction only). */
function mapSecretsSync(
  value: unknown,
  fields: SecretFields,
  declared: readonly string[],
  visit: (v: string, path: readonly string[]) => string,
  path: string[] = [],
  inside = false,
): unknown {
  if (Array.isArray(value)) return value.map((v, i) => mapSecretsSync(v, fields, declared, visit, [...path, String(i)], inside));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const p = [...path, k];
      out[k] = mapSecretsSync(v, fields, declared, visit, p, inside || fields.isSecret(p, declared));
    }
    return out;
  }
  if (typeof value === 'string' && (inside || isEnvelope(value))) return visit(value, path);
  return value;
}

export interface InstanceSecretsOptions {
  box: SecretBox;
  fields?: SecretFields;
  /** Folders API-given `file:` references may point into. */
  fileRoots?: readonly string[];
  /** Folder relative `file:` paths from the configuration resolve against. */
  baseDir?: string;
  env?: NodeJS.ProcessEnv;
}

/** Seals secret options at registration, resolves them when an instance loads, redacts them in every answer. */
export class InstanceSecrets {
  private readonly box: SecretBox;
  private readonly fields: SecretFields;
  private readonly roots: readonly string[];
  private readonly baseDir: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(options: InstanceSecretsOptions) {
    this.box = options.box;
    this.fields = options.fields ?? new SecretFields();
    this.baseDir = options.baseDir ?? process.cwd();
    this.roots = (options.fileRoots ?? []).map((r) => resolve(this.baseDir, r));
    this.env = options.env ?? process.env;
  }

  /**
   * What is stored for `options`: each secret value checked (references) or encrypted (literals).
   * Throws MCP_VALIDATION_FAILED naming the option: a malformed `env:` name, a `file:` path outside
   * the allowed folders (API), a literal while the gateway has no secret key. `literals: 'keep'` only
   * checks the references (options that are used at once and never stored, e.g. a worker's LOAD command).
   */
  seal(
    options: Record<string, unknown>,
    declared: readonly string[],
    source: EndpointSource,
    at: string,
    literals: 'seal' | 'keep' = 'seal',
  ): Record<string, unknown> {
    return mapSecretsSync(options, this.fields, declared, (value, path) => {
      const where = `${at}.${path.join('.')}`;
      const fail = (why: string): never => {
        throw new McpError('MCP_VALIDATION_FAILED', `${where}: ${why}`, { details: { path: where } });
      };
      if (value.startsWith('env:')) {
        if (!ENV_NAME.test(value.slice(4))) fail('"env:" must be followed by an environment variable name');
        return value;
      }
      if (value.startsWith('file:')) return `file:${this.checkFile(value.slice(5), source, fail)}`;
      if (literals === 'keep') return value;
      if (!this.box.canSeal) {
        fail(
          'a literal secret cannot be stored: give a reference "env:NAME" (or "file:PATH"), or set MCP_SECRET_KEY (or MCP_SECRET_KEY_FILE) so the gateway stores it encrypted',
        );
      }
      return this.box.seal(value);
    }) as Record<string, unknown>;
  }

  private checkFile(path: string, source: EndpointSource, fail: (why: string) => never): string {
    if (path === '') fail('"file:" must be followed by a path');
    if (source === 'config') return isAbsolute(path) ? path : resolve(this.baseDir, path);
    if (!isAbsolute(path)) fail('"file:" references given through the API must be absolute paths');
    const full = resolve(path);
    if (!this.roots.some((r) => full.startsWith(r.endsWith(sep) ? r : r + sep))) {
      fail('"file:" references given through the API must point under security.secrets.fileRoots');
    }
    return full;
  }

  /** The options the backend receives: references read, literals decrypted (in memory only). */
  async resolve(options: Record<string, unknown>, declared: readonly string[]): Promise<Record<string, unknown>> {
    return (await mapSecrets(options, this.fields, declared, async (value) => {
      if (isEnvelope(value)) return this.box.open(value);
      if (isReference(value)) {
        try {
          return resolveSecret(value, this.env).value;
        } catch (err) {
          // resolveSecret names the reference, never a value.
          throw new McpError('MCP_CONFLICT', (err as Error).message);
        }
      }
      return value; // a literal stored before secrets were sealed
    })) as Record<string, unknown>;
  }

  /** Options as any API shows them: secret references as they are, everything else secret as `[redacted]`. */
  redact(options: unknown, declared: readonly string[] = []): unknown {
    return mapSecretsSync(options, this.fields, declared, (v) => (isReference(v) ? v : REDACTED));
  }
}
