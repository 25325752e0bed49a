/**
 * The auth conformance suite on the first-party auth plugins (api-key, jwt, auth0, oauth2) and on the
 * test header plugin (loaded by path, as a third-party plugin is).
 */
import { fileURLToPath } from 'node:url';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type JWTPayload } from 'jose';
import type { AuthRequest } from 'capibara-mcp';
import { describeAuthConformance, listenOnLoopback, MemoryCredentialStore, startJwksServer, testPluginContext } from 'capibara-mcp/testing';
import { hashPassword } from 'capibara-mcp/sdk';
import apiKeyPlugin, { generateApiKey } from '../../plugins/auth-api-key/index.ts';
import passwordPlugin from '../../plugins/auth-password/index.ts';
import jwtPlugin from '../../plugins/auth-jwt/index.ts';
import auth0Plugin from '../../plugins/auth-auth0/index.ts';
import oauth2Plugin from '../../plugins/auth-oauth2/index.ts';

const req = (headers: Record<string, string>, entry = 'rest'): AuthRequest => ({ headers, entry });

describeAuthConformance('api-key', () => {
  const good = generateApiKey();
  const other = generateApiKey();
  const revoked = generateApiKey();
  const unknown = generateApiKey();
  const badChecksum = `${good.key.slice(0, -1)}${good.key.endsWith('A') ? 'B' : 'A'}`;
  return {
    plugin: apiKeyPlugin,
    options: {
      keys: [
        { id: 'team-a', sha256: good.sha256, roles: ['infer', 'admin'], name: 'Team A' },
        { id: 'team-b', sha256: other.sha256 },
        { id: 'old', sha256: revoked.sha256, revoked: true },
      ],
    },
    none: [req({}), req({ 'content-type': 'application/json' }), req({ authorization: 'Bearer ' }, 'graphql')],
    mine: [
      { request: req({ authorization: `Bearer ${good.key}` }), id: 'team-a', roles: ['infer', 'admin'] },
      { request: req({ 'x-api-key': good.key }, 'openai'), id: 'team-a', roles: ['infer', 'admin'] },
      { request: req({ authorization: `bearer ${other.key}` }, 'kserve'), id: 'team-b', roles: [] },
    ],
    invalid: [
      req({ authorization: `Bearer ${unknown.key}` }),
      req({ authorization: `Bearer ${revoked.key}` }),
      req({ authorization: `Bearer ${badChecksum}` }),
      req({ 'x-api-key': 'not-a-key-at-all-1234' }, 'openai'),
      req({ 'x-api-key': unknown.key }, 'websocket'),
    ],
    foreign: [req({ authorization: 'Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl' }), req({ authorization: 'Basic dXNlcjpwYXNzd29yZA==' })],
    secrets: [unknown.key, revoked.key, badChecksum],
  };
});

describeAuthConformance('api-key (keys created at run time, from the credential store)', () => {
  const credentials = new MemoryCredentialStore();
  const stored = generateApiKey();
  const revoked = generateApiKey();
  const expired = generateApiKey();
  const base = { roles: ['developer'], models: ['m1'], worker: null, expiresAt: null, revokedAt: null };
  credentials.apiKeys.set(stored.sha256, { id: 'k1', name: 'stored', ...base });
  credentials.apiKeys.set(revoked.sha256, { id: 'k2', name: 'revoked', ...base, revokedAt: new Date() });
  credentials.apiKeys.set(expired.sha256, { id: 'k3', name: 'expired', ...base, expiresAt: new Date(Date.now() - 1000) });
  return {
    plugin: apiKeyPlugin,
    credentials,
    none: [req({}), req({ authorization: 'Bearer ' }, 'graphql')],
    mine: [
      { request: req({ authorization: `Bearer ${stored.key}` }), id: 'k1', roles: ['developer'] },
      { request: req({ 'x-api-key': stored.key }, 'openai'), id: 'k1', roles: ['developer'] },
    ],
    invalid: [req({ authorization: `Bearer ${revoked.key}` }), req({ authorization: `Bearer ${expired.key}` }), req({ 'x-api-key': generateApiKey().key })],
    foreign: [req({ authorization: 'Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJl' })],
    secrets: [revoked.key, expired.key],
  };
});

describeAuthConformance('password (access tokens)', async () => {
  const credentials = new MemoryCredentialStore();
  credentials.users.set('u1', {
    id: 'u1',
    username: 'alice',
    passwordHash: await hashPassword('alice-password-1'),
    roles: ['viewer'],
    models: null,
    disabled: false,
  });
  // A second instance on the same store issues the tokens (as another replica would).
  const issuer = testPluginContext('password', credentials);
  const sessions = (await passwordPlugin.setup(issuer, passwordPlugin.options.parse({}))).sessions!;
  const { accessToken, refreshToken } = await sessions.login('alice', 'alice-password-1');
  await issuer.close();
  const [h, p, sig] = accessToken.split('.');
  const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
  const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, roles: ['admin'] })).toString('base64url')}.${sig}`;
  const expiredClaims = `${h}.${Buffer.from(JSON.stringify({ ...claims, exp: 1 })).toString('base64url')}.${sig}`;
  return {
    plugin: passwordPlugin,
    credentials,
    none: [req({}), req({ authorization: 'Bearer mcp_sk_x' }), req({ authorization: 'Basic dXNlcjpwYXNzd29yZA==' })],
    mine: [{ request: req({ authorization: `Bearer ${accessToken}` }), id: 'u1', roles: ['viewer'] }],
    invalid: [req({ authorization: `Bearer ${forged}` }), req({ authorization: `Bearer ${expiredClaims}` }), req({ authorization: `Bearer ${h}.${p}.AAAA` })],
    foreign: [
      req({ authorization: `Bearer ${generateApiKey().key}` }),
      req({ authorization: 'Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL290aGVyIiwic3ViIjoidSJ9.c2lnbmF0dXJl' }),
    ],
    secrets: [refreshToken],
  };
});

describeAuthConformance('test-header-auth (test/support/header-auth-plugin.ts, loaded by path)', {
  plugin: fileURLToPath(new URL('../support/header-auth-plugin.ts', import.meta.url)),
  options: { defaultUser: null },
  none: [req({}), req({ authorization: 'Bearer something' })],
  mine: [
    { request: req({ 'x-test-user': 'alice' }), id: 'alice', roles: ['admin'] },
    { request: req({ 'x-test-user': 'bob@example.test' }, 'graphql'), id: 'bob@example.test' },
  ],
  invalid: [req({ 'x-test-user': '' }), req({ 'x-test-user': 'not a user name!' }), req({ 'x-test-user': 'x'.repeat(129) })],
});

// ───────────── jwt, auth0, oauth2 (tokens signed here; keys and introspection served on loopback) ─────────────

const ISS = 'https://idp.example.test/';
const AUD = 'capibara-mcp';
const now = () => Math.floor(Date.now() / 1000);

async function rsaKey(kid: string) {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { privateKey, pem: await exportSPKI(publicKey), jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256' } };
}

const jwt = (key: CryptoKey | Uint8Array, alg: string, claims: JWTPayload = {}, kid?: string) =>
  new SignJWT({ iss: ISS, aud: AUD, ...claims })
    .setProtectedHeader(kid ? { alg, kid } : { alg })
    .setIssuedAt()
    .setExpirationTime(typeof claims.exp === 'number' ? claims.exp : now() + 3600)
    .sign(key);

const apiKey = generateApiKey().key;

describeAuthConformance('jwt (HS256, secret from env:)', async () => {
  const secret = 'conformance-hmac-secret-of-at-least-32-bytes';
  process.env.MCP_CONFORMANCE_JWT_SECRET = secret;
  const key = new TextEncoder().encode(secret);
  const wrongKey = new TextEncoder().encode(`${secret}-but-another-one`);
  return {
    plugin: jwtPlugin,
    options: { algorithms: ['HS256'], secret: 'env:MCP_CONFORMANCE_JWT_SECRET', issuer: ISS, audience: AUD, rolesClaim: 'roles' },
    none: [req({}), req({ authorization: 'Bearer not-a-jwt' }), req({ 'x-api-key': apiKey })],
    mine: [
      { request: req({ authorization: `Bearer ${await jwt(key, 'HS256', { sub: 'alice', roles: ['developer'] })}` }), id: 'alice', roles: ['developer'] },
      { request: req({ authorization: `bearer ${await jwt(key, 'HS256', { sub: 'bob' })}` }, 'websocket'), id: 'bob', roles: [] },
    ],
    invalid: [
      req({ authorization: `Bearer ${await jwt(wrongKey, 'HS256', { sub: 'alice' })}` }),
      req({ authorization: `Bearer ${await jwt(key, 'HS256', { sub: 'alice', exp: now() - 3600 })}` }),
      req({ authorization: `Bearer ${await jwt(key, 'HS256', { sub: 'alice', aud: 'other' })}` }, 'openai'),
      req({ authorization: `Bearer ${await jwt(key, 'HS384', { sub: 'alice' })}` }),
      req({ authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.' }),
    ],
    foreign: [req({ authorization: `Bearer ${apiKey}` }), req({ authorization: 'Basic dXNlcjpwYXNzd29yZA==' })],
    secrets: [secret],
  };
});

describeAuthConformance('jwt (RS256, JWKS on loopback)', async () => {
  const good = await rsaKey('k1');
  const stranger = await rsaKey('k1');
  const jwks = await startJwksServer([good.jwk]);
  return {
    plugin: jwtPlugin,
    options: { algorithms: ['RS256'], jwksUrl: jwks.url, issuer: ISS, audience: AUD, rolesClaim: 'realm_access.roles', roleMap: { ops: 'operator' } },
    none: [req({}), req({ authorization: 'Bearer opaque' })],
    mine: [
      {
        request: req({ authorization: `Bearer ${await jwt(good.privateKey, 'RS256', { sub: 'ops-1', realm_access: { roles: ['ops', 'x'] } }, 'k1')}` }),
        id: 'ops-1',
        roles: ['operator'],
      },
    ],
    invalid: [
      req({ authorization: `Bearer ${await jwt(stranger.privateKey, 'RS256', { sub: 'ops-1' }, 'k1')}` }),
      req({ authorization: `Bearer ${await jwt(new TextEncoder().encode(good.pem), 'HS256', { sub: 'ops-1' }, 'k1')}` }),
      req({ authorization: `Bearer ${await jwt(stranger.privateKey, 'RS256', { sub: 'ops-1' }, '../../etc/passwd')}` }),
    ],
    foreign: [
      req({ authorization: `Bearer ${await jwt(good.privateKey, 'RS256', { sub: 'x', iss: 'https://another.idp/' }, 'k1')}` }),
      req({ authorization: `Bearer ${apiKey}` }),
    ],
    close: () => jwks.close(),
  };
});

describeAuthConformance('auth0 (tenant JWKS on loopback)', async () => {
  const good = await rsaKey('tenant');
  const jwks = await startJwksServer([good.jwk]);
  const iss = 'https://acme.auth0.com/';
  return {
    plugin: auth0Plugin,
    options: { domain: 'acme.auth0.com', audience: AUD, baseUrl: jwks.origin, rolesClaim: 'https://acme.test/roles' },
    none: [req({}), req({ authorization: 'Bearer opaque' })],
    mine: [
      {
        request: req({
          authorization: `Bearer ${await jwt(good.privateKey, 'RS256', { iss, sub: 'auth0|1', 'https://acme.test/roles': ['viewer'] }, 'tenant')}`,
        }),
        id: 'auth0|1',
        roles: ['viewer'],
      },
    ],
    invalid: [
      req({ authorization: `Bearer ${await jwt(good.privateKey, 'RS256', { iss, sub: 'auth0|1', aud: 'other' }, 'tenant')}` }),
      req({ authorization: `Bearer ${await jwt(new TextEncoder().encode(good.pem), 'HS256', { iss, sub: 'auth0|1' }, 'tenant')}` }),
    ],
    foreign: [req({ authorization: `Bearer ${apiKey}` })],
    close: () => jwks.close(),
  };
});

describeAuthConformance('oauth2 (introspection on loopback)', async () => {
  const answers: Record<string, Record<string, unknown>> = {
    'opaque-good-token': { active: true, sub: 'svc', scope: 'developer', exp: now() + 3600 },
    'opaque-other-token': { active: true, sub: 'svc-2', exp: now() + 3600 },
  };
  const server = await listenOnLoopback((rq, res) => {
    const parts: Buffer[] = [];
    rq.on('data', (c: Buffer) => parts.push(c));
    rq.on('end', () => {
      const token = new URLSearchParams(Buffer.concat(parts).toString()).get('token') ?? '';
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answers[token] ?? { active: false }));
    });
  });
  return {
    plugin: oauth2Plugin,
    options: { introspectionUrl: `${server.origin}/introspect`, clientId: 'gw', clientSecret: 'conformance-client-secret' },
    none: [req({}), req({ authorization: 'Basic dXNlcjpwYXNz' })],
    mine: [
      { request: req({ authorization: 'Bearer opaque-good-token' }), id: 'svc', roles: ['developer'] },
      { request: req({ authorization: 'bearer opaque-other-token' }, 'kserve'), id: 'svc-2', roles: [] },
    ],
    invalid: [req({ authorization: 'Bearer opaque-unknown-token' }), req({ authorization: `Bearer ${'x'.repeat(9000)}` })],
    foreign: [req({ authorization: `Bearer ${apiKey}` })],
    secrets: ['conformance-client-secret'],
    close: () => server.close(),
  };
});
