/**
 * The auth conformance suite on the first-party api-key plugin and on the test header plugin
 * (loaded by path, as a third-party plugin is).
 */
import { fileURLToPath } from 'node:url';
import type { AuthRequest } from 'capibara-mcp';
import { describeAuthConformance } from 'capibara-mcp/testing';
import apiKeyPlugin, { generateApiKey } from '../../plugins/auth-api-key/index.ts';

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
