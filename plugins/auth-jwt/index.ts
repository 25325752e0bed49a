/**
 * `jwt` auth: Bearer JWTs (jose) with pinned algorithms, issuer, audience, clock tolerance and token
 * age; keys from the config (HMAC secret as a secret reference, public keys) or a JWKS URL with a
 * cache and a refetch cooldown; claims mapped to roles and models. See README.md beside this file.
 */
import { definePlugin } from 'capibara-mcp';
import { createJwtStrategy, jwtOptions } from 'capibara-mcp/sdk';

export default definePlugin({
  name: 'jwt',
  kind: 'auth',
  apiVersion: '^1.0.0',
  description: 'JWTs verified with pinned algorithms against a secret, public keys or a JWKS URL; claims mapped to roles.',
  options: jwtOptions,
  setup: (ctx, opts) => createJwtStrategy(ctx, opts),
});
