/**
 * The API key format of Capibara MCP: `mcp_sk_<43 base62 ≈ 256 bits>_<6-char checksum>`. The
 * checksum (CRC-32 of `mcp_sk_<secret>`, base62) lets scanners and the api-key strategy refuse
 * typos and random strings without a lookup. Only the SHA-256 of a key is ever stored.
 */
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';

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

/** Creates a new key and its hash. Show `key` once to its owner; store only `sha256`. */
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
