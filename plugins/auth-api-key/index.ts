/**
 * `api-key` auth: prefixed, checksummed API keys (`mcp_sk_<43 base62>_<6-char checksum>`),
 * presented as `Authorization: Bearer …` or `x-api-key: …`. The config holds only SHA-256
 * hashes; verifying a key is one hash and one Map lookup (no database round trip).
 */
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { z } from 'zod';
import { McpError, type Principal, definePlugin, type AuthRequest } from 'capibara-mcp';

export const KEY_PREFIX = 'mcp_sk_';
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** Random part length: 43 base62 characters ≈ 256 bits. */
const SECRET_CHARS = 43;
const KEY_SHAPE = /^mcp_sk_([0-9A-Za-z]{32,128})_([0-9A-Za-z]{6})$/;

function base62(n: number, width: number): string {
  let out = '';
  for (let i = 0; i < width; i++) {
    out = BASE62[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

/** The 6-character checksum of a key body: CRC-32 of `mcp_sk_<secret>`, base62. 62^6 > 2^32, so it is lossless. */
export function checksumOf(body: string): string {
  return base62(crc32(body) >>> 0, 6);
}

/** True when the string has the shape and a valid checksum of an mcp API key (what a secret scanner checks; no lookup). */
export function looksLikeApiKey(s: string): boolean {
  const m = KEY_SHAPE.exec(s);
  return m !== null && checksumOf(`${KEY_PREFIX}${m[1]}`) === m[2];
}

export function sha256Hex(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** Creates a new key and its hash. Show `key` once to its owner; store only `sha256` in the config. */
export function generateApiKey(): { key: string; sha256: string } {
  // Rejection sampling keeps every base62 character uniform.
  let secret = '';
  while (secret.length < SECRET_CHARS) {
    for (const b of randomBytes(64)) {
      if (b < 248 && secret.length < SECRET_CHARS) secret += BASE62[b % 62];
    }
  }
  const body = `${KEY_PREFIX}${secret}`;
  const key = `${body}_${checksumOf(body)}`;
  return { key, sha256: sha256Hex(key) };
}

const keySchema = z.strictObject({
  /** Stable key id (the principal id: logs, usage, rate limits). */
  id: z.string().min(1).max(128),
  /** Lower-case hex SHA-256 of the whole key. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, '64 lower-case hex characters (sha256 of the key)'),
  /** Roles of the principal (`admin`, or roles checked by operations). */
  roles: z.array(z.string().min(1)).default([]),
  /** Human label (owner, purpose). */
  name: z.string().max(200).optional(),
  /** Revoked keys are refused (kept in the config for the audit trail). */
  revoked: z.boolean().default(false),
});

export const apiKeyOptions = z
  .strictObject({
    keys: z.array(keySchema).default([]),
    /** Also accept the key in `x-api-key`. */
    headerXApiKey: z.boolean().default(true),
  })
  .superRefine((o, ctx) => {
    const ids = new Set<string>();
    const hashes = new Set<string>();
    o.keys.forEach((k, i) => {
      if (ids.has(k.id)) ctx.addIssue({ code: 'custom', path: ['keys', i, 'id'], message: `duplicate key id "${k.id}"` });
      if (hashes.has(k.sha256)) ctx.addIssue({ code: 'custom', path: ['keys', i, 'sha256'], message: 'duplicate key hash' });
      ids.add(k.id);
      hashes.add(k.sha256);
    });
  });
export type ApiKeyOptions = z.output<typeof apiKeyOptions>;

const unauthenticated = (why: string) => new McpError('MCP_UNAUTHENTICATED', `invalid API key: ${why}`);

/** The key presented by the request, or undefined when it carries none this strategy understands. */
function presentedKey(req: AuthRequest, xApiKey: boolean): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && auth.length > 7 && auth.slice(0, 7).toLowerCase() === 'bearer ') {
    const token = auth.slice(7).trim();
    // Another scheme's token (e.g. a JWT) is left to the next auth plugin.
    if (token.startsWith(KEY_PREFIX)) return token;
  }
  if (xApiKey) {
    const k = req.headers['x-api-key'];
    if (typeof k === 'string' && k !== '') return k.trim();
  }
  return undefined;
}

export default definePlugin({
  name: 'api-key',
  kind: 'auth',
  apiVersion: '^1.0.0',
  description: 'Prefixed, checksummed API keys verified against SHA-256 hashes in the config.',
  options: apiKeyOptions,
  setup(ctx, opts) {
    const byHash = new Map<string, Principal | null>();
    for (const k of opts.keys) {
      byHash.set(
        k.sha256,
        k.revoked ? null : (Object.freeze({ id: k.id, via: ctx.name, roles: [...k.roles], claims: k.name ? { keyName: k.name } : {} }) as Principal),
      );
    }
    ctx.logger.debug({ keys: opts.keys.length }, 'api-key auth ready');
    return {
      authenticate(req) {
        const key = presentedKey(req, opts.headerXApiKey);
        if (key === undefined) return null;
        // Shape and checksum first: typos and random strings are refused without hashing.
        if (!looksLikeApiKey(key)) throw unauthenticated('not an mcp_sk_ key or bad checksum');
        const p = byHash.get(sha256Hex(key));
        if (p === undefined) throw unauthenticated('unknown key');
        if (p === null) throw unauthenticated('the key was revoked');
        return p;
      },
    };
  },
});
