/**
 * `oauth2` auth: opaque (or any) Bearer tokens checked by RFC 7662 token introspection. Active
 * tokens map to principals through their scope/claims; answers are cached no longer than the token's
 * `exp` and `cache.maxTtlSec`, refusals for `cache.negativeTtlSec`. An unreachable introspection
 * endpoint is 503 MCP_UPSTREAM_UNAVAILABLE (retryable), never a silent 401 for everyone; nothing of
 * it is cached, so the first request after the endpoint is back succeeds. See README.md beside this file.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { request } from 'undici';
import { McpError, definePlugin, type AuthRequest, type Principal } from 'capibara-mcp';
import { claimMappingShape, createClaimMapper, readBody, resolveSecret, secretReference, sharedCounter, TtlCache } from 'capibara-mcp/sdk';

const API_KEY_PREFIX = 'mcp_sk_';

/** http only to a loopback host (a local authorization server or a test); anything else must be https. */
const endpointUrl = z.url({ protocol: /^https?$/ }).refine((u) => {
  const url = new URL(u);
  return url.protocol === 'https:' || ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}, 'must be https (http only to a loopback address)');

export const oauth2Options = z.strictObject({
  /** The authorization server's introspection endpoint (RFC 7662). */
  introspectionUrl: endpointUrl,
  /** This gateway's client credentials at the authorization server. */
  clientId: z.string().min(1).max(512),
  /** `env:NAME`, `file:PATH`, or (discouraged) the secret itself. */
  clientSecret: secretReference,
  /** How the client authenticates: HTTP Basic (RFC 6749 §2.3.1) or form fields. */
  authMethod: z.enum(['client_secret_basic', 'client_secret_post']).default('client_secret_basic'),
  /** When set, the introspection answer's `iss` must be one of these. */
  issuer: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  /** When set, the answer's `aud` must name one of these. */
  audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  /** Deadline of one introspection call, ms. */
  timeoutMs: z.number().int().min(100).max(30_000).default(2000),
  /** Largest introspection answer read, bytes. */
  maxResponseBytes: z.number().int().min(1024).max(1_048_576).default(65_536),
  /** Longer Bearer tokens are refused unsent. */
  maxTokenBytes: z.number().int().min(64).max(65_536).default(8192),
  cache: z
    .strictObject({
      /** Active tokens: kept until their `exp`, at most this long, seconds (0: never cached). */
      maxTtlSec: z.number().int().min(0).max(3600).default(60),
      /** Inactive tokens: refused from the cache this long, seconds (0: asked every time). */
      negativeTtlSec: z.number().int().min(0).max(300).default(5),
      /** Entries of each cache (active, inactive). */
      maxEntries: z.number().int().min(0).max(1_000_000).default(10_000),
    })
    .prefault({}),
  ...claimMappingShape,
  /** OAuth2 scopes are the usual source of roles. */
  rolesClaim: claimMappingShape.rolesClaim.default('scope'),
  keepClaims: claimMappingShape.keepClaims.default(['iss', 'client_id', 'scope']),
});
export type OAuth2Options = z.output<typeof oauth2Options>;

const unauthenticated = (reason: string, code: string) => new McpError('MCP_UNAUTHENTICATED', `invalid token: ${reason}`, { details: { reason: code } });
const unavailable = () =>
  new McpError('MCP_UPSTREAM_UNAVAILABLE', 'the token introspection endpoint could not be reached; retry later', { status: 503, retryable: true });

function presentedToken(req: AuthRequest): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth !== 'string' || auth.length < 8 || auth.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  const token = auth.slice(7).trim();
  // An API key is the api-key plugin's.
  return token === '' || token.startsWith(API_KEY_PREFIX) ? undefined : token;
}

/** RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding. */
function basicAuth(id: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

function listOf(v: string | string[] | undefined): Set<string> | undefined {
  return v === undefined ? undefined : new Set(typeof v === 'string' ? [v] : v);
}

export default definePlugin({
  name: 'oauth2',
  kind: 'auth',
  apiVersion: '^1.0.0',
  description: 'OAuth2 Bearer tokens checked by RFC 7662 token introspection; scopes/claims mapped to roles.',
  options: oauth2Options,
  setup(ctx, opts) {
    const { value: secret, literal } = resolveSecret(opts.clientSecret);
    if (literal) ctx.logger.warn('oauth2: the client secret is written in the config; prefer clientSecret: env:NAME or file:PATH');
    const calls = sharedCounter(ctx.metrics, 'mcp_auth_introspections_total', 'Token introspection calls by outcome.', ['plugin', 'outcome']);
    const mapClaims = createClaimMapper(opts);
    const issuers = listOf(opts.issuer);
    const audiences = listOf(opts.audience);
    const active = new TtlCache<Principal>(opts.cache.maxEntries);
    const inactive = new TtlCache<true>(opts.cache.maxEntries);
    /** One introspection call per token at a time: concurrent requests with the same token share it. */
    const inFlight = new Map<string, Promise<Principal>>();
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (opts.authMethod === 'client_secret_basic') headers.authorization = basicAuth(opts.clientId, secret);

    async function introspect(token: string): Promise<Record<string, unknown>> {
      const form = new URLSearchParams({ token, token_type_hint: 'access_token' });
      if (opts.authMethod === 'client_secret_post') {
        form.set('client_id', opts.clientId);
        form.set('client_secret', secret);
      }
      let status: number;
      let text: string;
      try {
        const res = await request(opts.introspectionUrl, {
          method: 'POST',
          headers,
          body: form.toString(),
          signal: AbortSignal.any([AbortSignal.timeout(opts.timeoutMs), ctx.signal]),
          headersTimeout: opts.timeoutMs,
          bodyTimeout: opts.timeoutMs,
        });
        status = res.statusCode;
        text = await readBody(res.body, opts.maxResponseBytes);
      } catch (err) {
        ctx.logger.warn({ err: (err as Error).message }, 'oauth2: token introspection failed');
        throw unavailable();
      }
      if (status !== 200) {
        // 401/403 here mean our client credentials are wrong: the operator's problem, not the caller's.
        ctx.logger.warn({ status }, 'oauth2: the introspection endpoint answered an error');
        throw unavailable();
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      if (typeof body !== 'object' || body === null || Array.isArray(body) || typeof (body as { active?: unknown }).active !== 'boolean') {
        ctx.logger.warn('oauth2: the introspection answer is not a JSON object with a boolean "active"');
        throw unavailable();
      }
      return body as Record<string, unknown>;
    }

    /** An introspection answer → principal and how long it may be cached; throws MCP_UNAUTHENTICATED when inactive or not for us. */
    function judge(claims: Record<string, unknown>): { principal: Principal; until: number } {
      const now = Date.now();
      if (claims.active !== true) throw unauthenticated('not active (revoked, expired or unknown)', 'INACTIVE');
      const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : undefined;
      if (exp !== undefined && exp <= now) throw unauthenticated('expired', 'EXPIRED');
      if (typeof claims.nbf === 'number' && claims.nbf * 1000 > now + 60_000) throw unauthenticated('not valid yet', 'NOT_BEFORE');
      if (issuers && !(typeof claims.iss === 'string' && issuers.has(claims.iss))) throw unauthenticated('the "iss" claim is wrong or missing', 'ISSUER');
      if (audiences) {
        const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
        if (!aud.some((a) => typeof a === 'string' && audiences.has(a))) throw unauthenticated('the "aud" claim is wrong or missing', 'AUDIENCE');
      }
      const mapped = mapClaims(claims);
      const principal: Principal = { id: mapped.id, via: ctx.name, roles: mapped.roles, claims: mapped.claims };
      if (mapped.models) principal.models = mapped.models;
      if (exp !== undefined) principal.expiresAt = exp;
      return { principal: Object.freeze(principal), until: Math.min(exp ?? Infinity, now + opts.cache.maxTtlSec * 1000) };
    }

    async function check(token: string, key: string): Promise<Principal> {
      let claims: Record<string, unknown>;
      try {
        claims = await introspect(token);
      } catch (err) {
        calls.inc({ plugin: ctx.name, outcome: 'error' });
        throw err;
      }
      try {
        const { principal, until } = judge(claims);
        active.set(key, principal, until);
        calls.inc({ plugin: ctx.name, outcome: 'active' });
        return principal;
      } catch (err) {
        inactive.set(key, true, Date.now() + opts.cache.negativeTtlSec * 1000);
        calls.inc({ plugin: ctx.name, outcome: 'refused' });
        throw err;
      }
    }

    ctx.onClose(() => {
      active.clear();
      inactive.clear();
    });
    ctx.logger.debug({ introspectionUrl: opts.introspectionUrl }, 'oauth2 auth ready');
    return {
      async authenticate(req) {
        const token = presentedToken(req);
        if (token === undefined) return null;
        if (token.length > opts.maxTokenBytes) throw unauthenticated(`longer than ${opts.maxTokenBytes} bytes`, 'TOO_LONG');
        const key = createHash('sha256').update(token).digest('base64url');
        const hit = active.get(key);
        if (hit) return hit;
        if (inactive.get(key)) throw unauthenticated('not active (revoked, expired or unknown)', 'INACTIVE');
        let pending = inFlight.get(key);
        if (!pending) {
          pending = check(token, key).finally(() => inFlight.delete(key));
          inFlight.set(key, pending);
        }
        return pending;
      },
    };
  },
});
