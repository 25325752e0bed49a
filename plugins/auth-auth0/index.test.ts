/**
 * The auth0 strategy against a loopback JWKS server standing in for the tenant: Auth0's defaults
 * (issuer https://<domain>/, the tenant's JWKS, RS256), the audience, a namespaced roles claim and
 * Auth0 RBAC `permissions` mapped to roles, and the refusals (HS256 with the public key, another tenant).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type JWTPayload } from 'jose';
import type { AuthRequest, AuthStrategy, Principal } from 'capibara-mcp';
import { startJwksServer, testPluginContext, type JwksServer } from 'capibara-mcp/testing';
import plugin, { auth0JwtOptions } from './index.ts';

const DOMAIN = 'acme.eu.auth0.com';
const AUD = 'https://api.acme.test/mcp';
const ROLES = 'https://acme.test/roles';
const now = () => Math.floor(Date.now() / 1000);

describe('auth0', () => {
  let jwks: JwksServer;
  let privateKey: CryptoKey;
  let pem: string;
  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    privateKey = pair.privateKey;
    pem = await exportSPKI(pair.publicKey);
    jwks = await startJwksServer([{ ...(await exportJWK(pair.publicKey)), kid: 'tenant-key', alg: 'RS256', use: 'sig' }]);
  });
  afterAll(() => jwks?.close());

  const token = (
    claims: JWTPayload = {},
    header: { alg: string; kid?: string } = { alg: 'RS256', kid: 'tenant-key' },
    key: CryptoKey | Uint8Array = privateKey,
  ) =>
    new SignJWT({ sub: 'auth0|123', iss: `https://${DOMAIN}/`, aud: [AUD, `https://${DOMAIN}/userinfo`], ...claims })
      .setProtectedHeader(header)
      .setIssuedAt()
      .setExpirationTime(now() + 600)
      .sign(key);

  const strategyOf = (extra: Record<string, unknown> = {}): AuthStrategy =>
    plugin.setup(testPluginContext('auth0'), plugin.options.parse({ domain: DOMAIN, audience: AUD, baseUrl: jwks.origin, ...extra })) as AuthStrategy;

  const outcome = async (s: AuthStrategy, t: string): Promise<{ principal?: Principal | null; code?: string; status?: number }> => {
    try {
      return { principal: await s.authenticate({ headers: { authorization: `Bearer ${t}` }, entry: 'graphql' } satisfies AuthRequest) };
    } catch (e) {
      return { code: (e as { code?: string }).code, status: (e as { status?: number }).status };
    }
  };

  it("uses Auth0's rules: issuer https://<domain>/, the tenant JWKS over https, RS256", () => {
    const o = auth0JwtOptions(plugin.options.parse({ domain: DOMAIN, audience: AUD }));
    expect({ issuer: o.issuer, jwksUrl: o.jwksUrl, algorithms: o.algorithms, audience: o.audience }).toEqual({
      issuer: `https://${DOMAIN}/`,
      jwksUrl: `https://${DOMAIN}/.well-known/jwks.json`,
      algorithms: ['RS256'],
      audience: AUD,
    });
    expect(plugin.options.safeParse({ domain: 'https://acme.auth0.com/', audience: AUD }).success).toBe(false);
    expect(plugin.options.safeParse({ domain: DOMAIN, audience: AUD, baseUrl: 'http://acme.test' }).success).toBe(false);
    expect(plugin.options.safeParse({ domain: DOMAIN, audience: AUD, algorithms: ['HS256'] }).success).toBe(false);
    expect(plugin.options.safeParse({ domain: DOMAIN }).success).toBe(false);
  });

  it('maps a namespaced roles claim (an Auth0 Action) through roleMap', async () => {
    const s = strategyOf({ rolesClaim: ROLES, roleMap: { 'MCP Admin': 'admin', 'MCP User': 'developer' } });
    const p = (await outcome(s, await token({ [ROLES]: ['MCP User', 'Billing'] }))).principal;
    expect(p).toMatchObject({ id: 'auth0|123', via: 'auth0', roles: ['developer'], claims: { iss: `https://${DOMAIN}/` } });
    expect(p!.expiresAt).toBeGreaterThan(Date.now());
  });

  it('maps Auth0 RBAC permissions to roles, with default roles', async () => {
    const s = strategyOf({ rolesClaim: 'permissions', roleMap: { 'write:models': 'operator' }, defaultRoles: ['viewer'] });
    expect((await outcome(s, await token({ permissions: ['read:models', 'write:models'] }))).principal?.roles).toEqual(['viewer', 'operator']);
  });

  it('refuses another audience, HS256 signed with the public key, an unknown kid; leaves another tenant to the next strategy', async () => {
    const s = strategyOf();
    expect(await outcome(s, await token({ aud: 'https://other.api' }))).toEqual({ code: 'MCP_UNAUTHENTICATED', status: 401 });
    expect(await outcome(s, await token({}, { alg: 'HS256', kid: 'tenant-key' }, new TextEncoder().encode(pem)))).toEqual({
      code: 'MCP_UNAUTHENTICATED',
      status: 401,
    });
    const stranger = await generateKeyPair('RS256');
    expect(await outcome(s, await token({}, { alg: 'RS256', kid: 'nope' }, stranger.privateKey))).toEqual({ code: 'MCP_UNAUTHENTICATED', status: 401 });
    expect((await outcome(s, await token({ iss: 'https://other.auth0.com/' }))).principal).toBeNull();
    expect(jwks.otherRequests).toEqual([]);
  });
});
