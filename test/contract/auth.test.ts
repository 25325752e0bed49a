/**
 * The auth conformance suite on the first-party api-key plugin and on the test header plugin
 * (loaded by path, as a third-party plugin is).
 */
import { fileURLToPath } from 'node:url';
import type { AuthRequest } from 'capibara-mcp';
import { describeAuthConformance, MemoryCredentialStore, testPluginContext } from 'capibara-mcp/testing';
import { hashPassword } from 'capibara-mcp/sdk';
import apiKeyPlugin, { generateApiKey } from '../../plugins/auth-api-key/index.ts';
import passwordPlugin from '../../plugins/auth-password/index.ts';

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

describeAuthConformance('test-header-auth (test/router/header-auth-plugin.ts, loaded by path)', {
  plugin: fileURLToPath(new URL('../router/header-auth-plugin.ts', import.meta.url)),
  options: { defaultUser: null },
  none: [req({}), req({ authorization: 'Bearer something' })],
  mine: [
    { request: req({ 'x-test-user': 'alice' }), id: 'alice', roles: ['admin'] },
    { request: req({ 'x-test-user': 'bob@example.test' }, 'graphql'), id: 'bob@example.test' },
  ],
  invalid: [req({ 'x-test-user': '' }), req({ 'x-test-user': 'not a user name!' }), req({ 'x-test-user': 'x'.repeat(129) })],
});
