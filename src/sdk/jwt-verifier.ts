/**
 * The JWT strategy: Bearer JWTs verified with jose against pinned algorithms and keys from the config
 * (an HMAC secret, public keys) or a JWKS URL; claims mapped to the principal by the SDK's claim mapper.
 * Shared by the `jwt` and `auth0` plugins.
 */
import { sharedCounter } from './shared-metrics.ts';
import { createHash, createPublicKey } from 'node:crypto';
import { z } from 'zod';
import { createLocalJWKSet, decodeJwt, jwtVerify, type CryptoKey, type JWK, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import { McpError } from '../errors.ts';
import type { Principal } from '../inference/types.ts';
import type { AuthRequest, AuthStrategy, PluginContext } from '../plugin/contract.ts';
import { claimMappingShape, createClaimMapper } from './claims.ts';
import { resolveSecret, secretReference } from './secret-ref.ts';
import { TtlCache } from './ttl-cache.ts';
import { RemoteKeySet } from './jwks.ts';

export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
const HMAC_BYTES: Record<string, number> = { HS256: 32, HS384: 48, HS512: 64 };

/** http only to a loopback host (a local IdP or a test); anything else must be https. */
export const keyServerUrl = z.url({ protocol: /^https?$/ }).refine((u) => {
  const url = new URL(u);
  return url.protocol === 'https:' || ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}, 'must be https (http only to a loopback address)');

const pem = z
  .string()
  .min(1)
  .max(16_384)
  .regex(/-----BEGIN [A-Z ]*(PUBLIC KEY|CERTIFICATE)-----/, 'a PEM public key (SPKI) or certificate');
const publicJwk = z
  .looseObject({ kty: z.enum(['RSA', 'EC', 'OKP']), kid: z.string().max(256).optional() })
  .refine((k) => !('d' in k), 'a public key: private JWK members ("d") are refused');
const publicKey = z.union([pem, z.strictObject({ kid: z.string().min(1).max(256).optional(), pem }), publicJwk]);
const oneOrMany = z.union([z.string().min(1).max(1024), z.array(z.string().min(1).max(1024)).min(1).max(16)]);

/** The key, claim and cache options of the JWT strategy (without the cross-field checks). */
export const jwtOptionsShape = {
  /** Accepted signature algorithms, pinned. HMAC ones need `secret`; the others need `publicKeys` or `jwksUrl`. */
  algorithms: z.array(z.enum([...HMAC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS])).min(1),
  /** Expected `iss` (one or several). A token naming another issuer is left to the next auth plugin. */
  issuer: oneOrMany.optional(),
  /** Expected `aud` (the token must name one of them). */
  audience: oneOrMany.optional(),
  /** Leeway for `exp`, `nbf` and `iat`, seconds. */
  clockToleranceSec: z.number().int().min(0).max(300).default(30),
  /** Refuse tokens issued (`iat`) longer ago than this, seconds. */
  maxTokenAgeSec: z.number().int().positive().max(31_536_000).optional(),
  /** Refuse tokens without `exp` (they would never expire). */
  requireExp: z.boolean().default(true),
  /** HMAC key: `env:NAME`, `file:PATH`, or (discouraged) the secret itself; at least as many bytes as the hash (32 for HS256). */
  secret: secretReference.optional(),
  /** Public keys: PEM strings, `{ kid, pem }`, or public JWKs. */
  publicKeys: z.array(publicKey).min(1).max(64).optional(),
  /** URL of the issuer's JSON Web Key Set (https; http only on loopback). */
  jwksUrl: keyServerUrl.optional(),
  jwks: z
    .strictObject({
      /** Minimum time between two fetches (an unknown `kid`, a retry after a failure), seconds. */
      cooldownSec: z.number().min(0).max(3600).default(30),
      /** Keys older than this are refetched (the old ones stay in use while the key server is down), seconds. */
      maxAgeSec: z.number().min(1).max(86_400).default(600),
      timeoutMs: z.number().int().min(100).max(60_000).default(3000),
      maxBytes: z.number().int().min(1024).max(4_194_304).default(262_144),
    })
    .prefault({}),
  /** Longer Bearer values that look like a JWT are refused unread. */
  maxTokenBytes: z.number().int().min(512).max(65_536).default(8192),
  /** Verified tokens are kept (by SHA-256) until their `exp`, at most `maxTtlSec`; `maxEntries: 0` turns the cache off. */
  cache: z
    .strictObject({
      maxEntries: z.number().int().min(0).max(1_000_000).default(10_000),
      maxTtlSec: z.number().int().min(1).max(86_400).default(300),
    })
    .prefault({}),
  ...claimMappingShape,
};

type JwtShapeOutput = z.output<z.ZodObject<typeof jwtOptionsShape>>;

/** Cross-field rules: exactly one key source, and algorithms that fit it (no HMAC with public keys: algorithm confusion). */
export function checkJwtOptions(o: Pick<JwtShapeOutput, 'algorithms' | 'secret' | 'publicKeys' | 'jwksUrl'>, ctx: z.RefinementCtx): void {
  const sources = [o.secret, o.publicKeys, o.jwksUrl].filter((s) => s !== undefined).length;
  if (sources !== 1) ctx.addIssue({ code: 'custom', path: [], message: 'give exactly one of secret, publicKeys, jwksUrl' });
  const hmac = o.algorithms.filter((a) => a.startsWith('HS'));
  if (o.secret !== undefined && hmac.length !== o.algorithms.length) {
    ctx.addIssue({ code: 'custom', path: ['algorithms'], message: 'with a secret, only HS256/HS384/HS512' });
  }
  if (o.secret === undefined && hmac.length > 0) {
    ctx.addIssue({ code: 'custom', path: ['algorithms'], message: 'HS* algorithms need a secret; with public keys they would allow algorithm confusion' });
  }
}

export const jwtOptions = z.strictObject(jwtOptionsShape).superRefine(checkJwtOptions);
export type JwtOptions = z.output<typeof jwtOptions>;

/** A strategy plus what tests and benches look at. */
export interface JwtStrategy extends AuthStrategy {
  /** The remote key set, when keys come from `jwksUrl`. */
  readonly keySet: RemoteKeySet | undefined;
}

const JWS_COMPACT = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

/** The Bearer token of the request, or undefined. */
export function bearerToken(req: AuthRequest): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth !== 'string' || auth.length < 8 || auth.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  const token = auth.slice(7).trim();
  return token === '' ? undefined : token;
}

const REASONS: Record<string, string> = {
  ERR_JWT_EXPIRED: 'expired',
  ERR_JOSE_ALG_NOT_ALLOWED: 'algorithm not allowed',
  ERR_JWS_SIGNATURE_VERIFICATION_FAILED: 'bad signature',
  ERR_JWKS_NO_MATCHING_KEY: 'no key matches its kid and algorithm',
  ERR_JWKS_MULTIPLE_MATCHING_KEYS: 'several keys match; the token needs a kid',
  ERR_JWS_INVALID: 'malformed',
  ERR_JWT_INVALID: 'malformed',
  ERR_JOSE_NOT_SUPPORTED: 'unsupported algorithm or key',
};

function unauthenticated(reason: string, code: string): McpError {
  return new McpError('MCP_UNAUTHENTICATED', `invalid token: ${reason}`, { details: { reason: code } });
}

/** A verification failure as MCP_UNAUTHENTICATED with a short reason (never the token); McpErrors (key server down) pass. */
function refusal(err: unknown): McpError {
  if (err instanceof McpError) return err;
  const code = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'ERR_UNKNOWN';
  if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') {
    const claim = String((err as { claim?: unknown }).claim ?? '');
    return unauthenticated(/^[a-z]{2,4}$/.test(claim) ? `the "${claim}" claim is wrong or missing` : 'a claim is wrong or missing', code);
  }
  return unauthenticated(REASONS[code] ?? 'it could not be verified', code in REASONS ? code : 'ERR_UNVERIFIED');
}

function toJwk(key: NonNullable<JwtOptions['publicKeys']>[number]): JWK {
  if (typeof key === 'string') return createPublicKey(key).export({ format: 'jwk' }) as JWK;
  if ('pem' in key && typeof key.pem === 'string') {
    const jwk = createPublicKey(key.pem).export({ format: 'jwk' }) as JWK;
    return key.kid ? { ...jwk, kid: key.kid } : jwk;
  }
  return key as JWK;
}

/** The key resolver for the configured key source. */
function keyResolver(ctx: PluginContext, opts: JwtOptions): { getKey: JWTVerifyGetKey; keySet?: RemoteKeySet } {
  if (opts.secret !== undefined) {
    const { value, literal } = resolveSecret(opts.secret);
    if (literal) ctx.logger.warn('jwt: the HMAC secret is written in the config; prefer secret: env:NAME or file:PATH');
    const bytes = new TextEncoder().encode(value);
    const need = Math.max(...opts.algorithms.map((a) => HMAC_BYTES[a] ?? 0));
    if (bytes.length < need)
      throw new McpError('MCP_CONFIG_INVALID', `jwt: the secret has ${bytes.length} bytes; ${opts.algorithms.join('/')} needs at least ${need}`);
    // One WebCrypto key per algorithm, imported once (given raw bytes, jose would import them on every verification).
    const byAlg = new Map<string, Promise<CryptoKey>>();
    return {
      getKey: (header) => {
        const alg = header.alg ?? '';
        let key = byAlg.get(alg);
        if (!key) {
          key = crypto.subtle.importKey('raw', bytes, { name: 'HMAC', hash: `SHA-${alg.slice(2)}` }, false, ['verify']);
          byAlg.set(alg, key);
        }
        return key;
      },
    };
  }
  if (opts.publicKeys !== undefined) {
    let keys: JWK[];
    try {
      keys = opts.publicKeys.map(toJwk);
    } catch (err) {
      throw new McpError('MCP_CONFIG_INVALID', `jwt: a public key could not be read: ${(err as Error).message}`);
    }
    return { getKey: createLocalJWKSet({ keys }) };
  }
  const fetches = sharedCounter(ctx.metrics, 'mcp_auth_jwks_fetches_total', 'JWKS fetch attempts of JWT auth plugins.', ['plugin', 'outcome']);
  const keySet = new RemoteKeySet({
    url: opts.jwksUrl!,
    cooldownMs: opts.jwks.cooldownSec * 1000,
    maxAgeMs: opts.jwks.maxAgeSec * 1000,
    timeoutMs: opts.jwks.timeoutMs,
    maxBytes: opts.jwks.maxBytes,
    onFetchError: (message) => ctx.logger.warn({ jwksUrl: opts.jwksUrl, err: message }, 'jwt: fetching the JWKS failed'),
    onFetch: (ok) => fetches.inc({ plugin: ctx.name, outcome: ok ? 'ok' : 'error' }),
  });
  return { getKey: keySet.getKey, keySet };
}

/** Builds the JWT strategy of a configured plugin (`ctx.name` becomes the principal's `via`). */
export function createJwtStrategy(ctx: PluginContext, opts: JwtOptions): JwtStrategy {
  const { getKey, keySet } = keyResolver(ctx, opts);
  if (opts.issuer === undefined || opts.audience === undefined) {
    ctx.logger.warn(
      { issuer: opts.issuer ?? null, audience: opts.audience ?? null },
      'jwt: without issuer and audience, any token signed by these keys is accepted, whoever it was issued for',
    );
  }
  const issuers = opts.issuer === undefined ? undefined : new Set(typeof opts.issuer === 'string' ? [opts.issuer] : opts.issuer);
  const verifyOptions: JWTVerifyOptions = {
    algorithms: opts.algorithms,
    clockTolerance: opts.clockToleranceSec,
    requiredClaims: opts.requireExp ? ['exp'] : [],
  };
  if (opts.issuer !== undefined) verifyOptions.issuer = opts.issuer;
  if (opts.audience !== undefined) verifyOptions.audience = opts.audience;
  if (opts.maxTokenAgeSec !== undefined) verifyOptions.maxTokenAge = opts.maxTokenAgeSec;
  const mapClaims = createClaimMapper(opts);
  const cache = new TtlCache<Principal>(opts.cache.maxEntries);
  const maxTtlMs = opts.cache.maxTtlSec * 1000;

  const principalOf = (payload: JWTPayload): { principal: Principal; until: number } => {
    const mapped = mapClaims(payload as Record<string, unknown>);
    const principal: Principal = { id: mapped.id, via: ctx.name, roles: mapped.roles, claims: mapped.claims };
    if (mapped.models) principal.models = mapped.models;
    let until = Date.now() + maxTtlMs;
    if (typeof payload.exp === 'number') {
      principal.expiresAt = payload.exp * 1000;
      until = Math.min(until, principal.expiresAt);
    }
    if (opts.maxTokenAgeSec !== undefined && typeof payload.iat === 'number') until = Math.min(until, (payload.iat + opts.maxTokenAgeSec) * 1000);
    return { principal: Object.freeze(principal), until };
  };

  return {
    keySet,
    async authenticate(req) {
      const token = bearerToken(req);
      // Not a JWT (an API key, an opaque token, another scheme): the next strategy may take it.
      if (token === undefined || !token.startsWith('eyJ')) return null;
      if (token.length > opts.maxTokenBytes) {
        if (token.split('.', 4).length === 3) throw unauthenticated(`longer than ${opts.maxTokenBytes} bytes`, 'TOO_LONG');
        return null;
      }
      if (!JWS_COMPACT.test(token)) return null;
      const cacheKey = opts.cache.maxEntries > 0 ? createHash('sha256').update(token).digest('base64url') : '';
      if (cacheKey) {
        const hit = cache.get(cacheKey);
        if (hit) return hit;
      }
      if (issuers) {
        // Another issuer's token (a second IdP, the gateway's own login tokens) is not ours to refuse.
        let iss: unknown;
        try {
          iss = decodeJwt(token).iss;
        } catch {
          throw unauthenticated('malformed', 'ERR_JWT_INVALID');
        }
        if (typeof iss === 'string' && !issuers.has(iss)) return null;
      }
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, getKey, verifyOptions));
      } catch (err) {
        throw refusal(err);
      }
      const { principal, until } = principalOf(payload);
      if (cacheKey) cache.set(cacheKey, principal, until);
      return principal;
    },
  };
}
