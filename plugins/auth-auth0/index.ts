/**
 * `auth0` auth: Auth0 access tokens. Takes @envelop/auth0's option names (`domain`, `audience`; a
 * `useAuth0({ domain, audience })` setting carries over as it is) and verifies with the `jwt`
 * strategy under Auth0's rules: issuer `https://<domain>/`, keys from
 * `https://<domain>/.well-known/jwks.json`, RS256. Why not @envelop/auth0's own verifier: see
 * docs/security/strategies.md. Claims (a namespaced roles claim set by an Action, or `permissions`
 * with Auth0 RBAC) map to roles like the jwt plugin's. See README.md beside this file.
 */
import { z } from 'zod';
import { definePlugin } from 'capibara-mcp';
import { ASYMMETRIC_ALGORITHMS, claimMappingShape, createJwtStrategy, jwtOptions, jwtOptionsShape, keyServerUrl } from 'capibara-mcp/sdk';

export const auth0Options = z.strictObject({
  /** The tenant's domain (`example.eu.auth0.com`) or custom domain; the issuer is `https://<domain>/`. */
  domain: z.string().regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i, 'a host name such as example.eu.auth0.com'),
  /** The API identifier the tokens are issued for (`aud`). */
  audience: z.union([z.string().min(1).max(1024), z.array(z.string().min(1).max(1024)).min(1).max(16)]),
  /** Where the key set is fetched from instead of `https://<domain>` (a proxy, or a local stand-in in tests); https unless loopback. */
  baseUrl: keyServerUrl.optional(),
  /** Auth0 signs access tokens with RS256 (PS256 when configured so). */
  algorithms: z.array(z.enum(ASYMMETRIC_ALGORITHMS)).min(1).default(['RS256']),
  clockToleranceSec: jwtOptionsShape.clockToleranceSec,
  maxTokenAgeSec: jwtOptionsShape.maxTokenAgeSec,
  jwks: jwtOptionsShape.jwks,
  maxTokenBytes: jwtOptionsShape.maxTokenBytes,
  cache: jwtOptionsShape.cache,
  ...claimMappingShape,
});
export type Auth0Options = z.output<typeof auth0Options>;

/** The jwt plugin's options for an Auth0 tenant. */
export function auth0JwtOptions(o: Auth0Options): z.output<typeof jwtOptions> {
  const { domain, baseUrl, ...rest } = o;
  const base = (baseUrl ?? `https://${domain}`).replace(/\/+$/, '');
  return jwtOptions.parse({ ...rest, issuer: `https://${domain}/`, jwksUrl: `${base}/.well-known/jwks.json`, audience: o.audience });
}

export default definePlugin({
  name: 'auth0',
  kind: 'auth',
  apiVersion: '^1.0.0',
  description: 'Auth0 access tokens (issuer https://<domain>/, the tenant JWKS, RS256); claims mapped to roles.',
  options: auth0Options,
  setup: (ctx, opts) => createJwtStrategy(ctx, auth0JwtOptions(opts)),
});
