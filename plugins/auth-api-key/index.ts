/**
 * `api-key` auth: prefixed, checksummed API keys (`mcp_sk_<43 base62>_<6-char checksum>`), presented as
 * `Authorization: Bearer …` or `x-api-key: …`. Keys come from the config (SHA-256 hashes) and from the
 * gateway's store (`createApiKey`, the `api_keys` table, SHA-256 only). Verified keys are cached in memory,
 * so the hot path is one hash and one Map lookup; a cached entry is re-checked in the background after
 * `cache.freshMs` and never used past `cache.maxStaleMs`, and a revocation announced on any replica drops it at once.
 */
import { z } from 'zod';
import { McpError, type Principal, definePlugin, type AuthRequest, type StoredApiKey } from 'capibara-mcp';
import { KEY_PREFIX, looksLikeApiKey, sha256Hex } from 'capibara-mcp/sdk';

export { KEY_PREFIX, checksumOf, looksLikeApiKey, sha256Hex, generateApiKey } from 'capibara-mcp/sdk';

const keySchema = z.strictObject({
  /** Stable key id (the principal id: logs, usage, rate limits). */
  id: z.string().min(1).max(128),
  /** Lower-case hex SHA-256 of the whole key. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, '64 lower-case hex characters (sha256 of the key)'),
  /** Roles of the principal (`admin`, or roles checked by operations). */
  roles: z.array(z.string().min(1)).default([]),
  /** Models the key may use (default: every model). */
  models: z.array(z.string().min(1)).max(1000).optional(),
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
    /** Keys created at run time (the gateway's store). false: only the config keys. */
    stored: z.boolean().default(true),
    cache: z
      .strictObject({
        /** Verified keys kept in memory (least recently used dropped first). */
        maxEntries: z.number().int().min(1).max(1_000_000).default(10_000),
        /** A cached key is re-checked in the background once older than this, ms. */
        freshMs: z.number().int().min(0).max(60_000).default(2000),
        /** A cached key older than this is re-checked before use: the bound on how long a revoked key may still work, ms. */
        maxStaleMs: z.number().int().min(0).max(60_000).default(5000),
        /** How long an unknown key stays known as unknown, ms. */
        negativeMs: z.number().int().min(0).max(60_000).default(2000),
      })
      .prefault({}),
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
    if (o.cache.freshMs > o.cache.maxStaleMs) ctx.addIssue({ code: 'custom', path: ['cache', 'freshMs'], message: 'must not exceed maxStaleMs' });
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

/** A stored key as the cache holds it: its principal, or why it is refused. */
interface Entry {
  id?: string;
  principal?: Principal;
  refused?: string;
  checkedAt: number;
  expiresAt?: number;
  refreshing?: boolean;
}

export default definePlugin({
  name: 'api-key',
  kind: 'auth',
  apiVersion: '^1.0.0',
  description: 'Prefixed, checksummed API keys: from the config (SHA-256 hashes) and created at run time (stored as SHA-256), cached in memory.',
  options: apiKeyOptions,
  setup(ctx, opts) {
    const configured = new Map<string, Principal | null>();
    for (const k of opts.keys) {
      configured.set(
        k.sha256,
        k.revoked
          ? null
          : (Object.freeze({
              id: k.id,
              via: ctx.name,
              roles: [...k.roles],
              ...(k.models ? { models: Object.freeze([...k.models]) } : {}),
              claims: k.name ? { keyName: k.name } : {},
            }) as Principal),
      );
    }
    const { cache: limits } = opts;
    const cache = new Map<string, Entry>();
    const inflight = new Map<string, Promise<Entry>>();
    const store = ctx.credentials;

    const remember = (hash: string, e: Entry) => {
      cache.delete(hash);
      cache.set(hash, e);
      if (cache.size > limits.maxEntries) cache.delete(cache.keys().next().value!);
    };
    const entryOf = (k: StoredApiKey | undefined): Entry => {
      const checkedAt = Date.now();
      if (!k) return { refused: 'unknown key', checkedAt };
      if (k.revokedAt) return { id: k.id, refused: 'the key was revoked', checkedAt };
      const principal = Object.freeze({
        id: k.id,
        via: ctx.name,
        roles: [...k.roles],
        ...(k.models ? { models: Object.freeze([...k.models]) } : {}),
        ...(k.worker ? { worker: k.worker } : {}),
        ...(k.expiresAt ? { expiresAt: k.expiresAt.getTime() } : {}),
        claims: { keyName: k.name },
      }) as Principal;
      return { id: k.id, principal, checkedAt, ...(k.expiresAt ? { expiresAt: k.expiresAt.getTime() } : {}) };
    };
    const lookup = (hash: string): Promise<Entry> => {
      let p = inflight.get(hash);
      if (!p) {
        p = store
          .apiKeyByHash(hash)
          .then(entryOf)
          .then((e) => (remember(hash, e), e))
          .finally(() => inflight.delete(hash));
        inflight.set(hash, p);
      }
      return p;
    };
    const verdict = (e: Entry): Principal => {
      if (!e.principal) throw unauthenticated(e.refused ?? 'unknown key');
      if (e.expiresAt !== undefined && Date.now() >= e.expiresAt) throw unauthenticated('the key has expired');
      store.touchApiKey(e.id!);
      return e.principal;
    };

    ctx.onClose(
      store.onRevoked((r) => {
        if (r.kind !== 'apiKey') return;
        for (const [hash, e] of cache) if (e.id === r.id) cache.delete(hash);
      }),
    );
    ctx.logger.debug({ keys: opts.keys.length, stored: opts.stored }, 'api-key auth ready');
    return {
      authenticate(req) {
        const key = presentedKey(req, opts.headerXApiKey);
        if (key === undefined) return null;
        // Shape and checksum first: typos and random strings are refused without hashing.
        if (!looksLikeApiKey(key)) throw unauthenticated('not an mcp_sk_ key or bad checksum');
        const hash = sha256Hex(key);
        const fromConfig = configured.get(hash);
        if (fromConfig) return fromConfig;
        if (fromConfig === null) throw unauthenticated('the key was revoked');
        if (!opts.stored) throw unauthenticated('unknown key');
        const e = cache.get(hash);
        if (e) {
          const age = Date.now() - e.checkedAt;
          if (e.principal ? age < limits.freshMs : age < limits.negativeMs) return verdict(e);
          if (e.principal && age < limits.maxStaleMs) {
            if (!e.refreshing) {
              e.refreshing = true;
              lookup(hash).catch((err) => {
                e.refreshing = false;
                ctx.logger.warn({ err: (err as Error).message }, 'API key re-check failed');
              });
            }
            return verdict(e);
          }
        }
        return lookup(hash).then(verdict);
      },
    };
  },
});
