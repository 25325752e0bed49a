/**
 * Small, allocation-free string hashes for routing decisions (sticky traffic splits,
 * consistent hashing). Not cryptographic: never use them for secrets or ids an attacker
 * must not be able to collide.
 *
 * `hash32` is FNV-1a over the UTF-16 code units of the string (both bytes of each unit),
 * followed by the murmur3 `fmix32` finalizer so that nearby keys (`user-1`, `user-2`) land
 * far apart and every output bit depends on every input bit (plain FNV-1a has weak low bits).
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** murmur3 32-bit finalizer: full avalanche of a 32-bit value. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Unsigned 32-bit hash of `key`; `seed` gives independent hash functions (default 0). */
export function hash32(key: string, seed = 0): number {
  let h = (FNV_OFFSET ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    h ^= c & 0xff;
    h = Math.imul(h, FNV_PRIME);
    h ^= c >>> 8;
    h = Math.imul(h, FNV_PRIME);
  }
  return fmix32(h);
}

/** Maps `key` uniformly into [0, 1). */
export function hashToUnit(key: string, seed = 0): number {
  return hash32(key, seed) / 4294967296;
}
