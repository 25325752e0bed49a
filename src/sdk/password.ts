/**
 * Password hashing for auth plugins and the gateway's user store: scrypt (node:crypto) with a
 * per-password random salt; the parameters travel in the hash string, so they can be raised
 * later without invalidating stored hashes: `scrypt$<N>$<r>$<p>$<salt base64>$<hash base64>`.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  N: number;
  r: number;
  p: number;
}

/** 2^15 · 8 · 128 B = 32 MiB and ~50–100 ms per hash: OWASP's floor for scrypt, affordable on a login path. */
export const DEFAULT_SCRYPT_PARAMS: Readonly<ScryptParams> = Object.freeze({ N: 2 ** 15, r: 8, p: 1 });
const KEY_BYTES = 32;
const SALT_BYTES = 16;
/** Bounds for parameters read back from storage: a tampered row cannot make a check take minutes. */
const MAX = { N: 2 ** 20, r: 32, p: 16 };

function derive(password: string, salt: Buffer, { N, r, p }: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFC'), salt, KEY_BYTES, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** Hashes a password with a fresh salt. */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT_PARAMS): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, params);
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

function parse(hash: string): { params: ScryptParams; salt: Buffer; key: Buffer } | undefined {
  const parts = hash.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const ok = (v: number, max: number) => Number.isInteger(v) && v >= 1 && v <= max;
  if (!ok(N, MAX.N) || (N & (N - 1)) !== 0 || N < 2 || !ok(r, MAX.r) || !ok(p, MAX.p)) return undefined;
  const salt = Buffer.from(parts[4]!, 'base64');
  const key = Buffer.from(parts[5]!, 'base64');
  if (salt.length < 8 || key.length !== KEY_BYTES) return undefined;
  return { params: { N, r, p }, salt, key };
}

/** True when the password matches the hash (constant-time compare); false for a malformed hash. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const parsed = parse(hash);
  if (!parsed) return false;
  const key = await derive(password, parsed.salt, parsed.params);
  return timingSafeEqual(key, parsed.key);
}
