/**
 * The jwt strategy: the attacks of the security issue's JWT list, each refused with 401 (plugin level and through
 * a real gateway, never a 5xx); the JWKS cache (a flood of unknown kids → one fetch per cooldown, a kid
 * that looks like a path or URL is just unknown, key rotation, an outage of the key server); claim mapping.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, base64url, type JWK, type JWTPayload } from 'jose';
import type { AuthRequest, Principal } from 'capibara-mcp';
import { startJwksServer, startTestGateway, testPluginContext, type JwksServer, type TestGateway } from 'capibara-mcp/testing';
import type { JwtStrategy } from 'capibara-mcp/sdk';
import plugin from './index.ts';

const ISS = 'https://idp.example.test/realms/acme';
const AUD = 'capibara-mcp';
const SECRET = 'a-test-hmac-secret-that-is-long-enough-for-hs256!';
const now = () => Math.floor(Date.now() / 1000);

async function rsaPair(kid: string) {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } as JWK;
  return { privateKey, publicKey, jwk, pem: await exportSPKI(publicKey), kid };
}

type Key = Awaited<ReturnType<typeof rsaPair>>;

function sign(key: Key['privateKey'] | Uint8Array, header: { alg: string; kid?: string }, claims: JWTPayload = {}) {
  return new SignJWT({ sub: 'alice', iss: ISS, aud: AUD, ...claims })
    .setProtectedHeader(header)
    .setIssuedAt()
    .setExpirationTime(claims.exp ?? now() + 600)
    .sign(key);
}

/** The unsigned `alg: none` token (jose refuses to make one). */
function unsigned(claims: JWTPayload = {}): string {
  const enc = (o: object) => base64url.encode(JSON.stringify(o));
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ sub: 'alice', iss: ISS, aud: AUD, exp: now() + 600, ...claims })}.`;
}

function tamper(token: string): string {
  const [h, p, s] = token.split('.') as [string, string, string];
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  return `${h}.${base64url.encode(JSON.stringify({ ...payload, sub: 'mallory', roles: ['admin'] }))}.${s}`;
}

const bearer = (token: string, entry = 'rest'): AuthRequest => ({ headers: { authorization: `Bearer ${token}` }, entry });

async function outcome(strategy: JwtStrategy, token: string): Promise<{ principal?: Principal | null; code?: string; status?: number }> {
  try {
    return { principal: await strategy.authenticate(bearer(token)) };
  } catch (e) {
    return { code: (e as { code?: string }).code, status: (e as { status?: number }).status };
  }
}

function strategyOf(options: Record<string, unknown>, name = 'jwt', ctx = testPluginContext(name)): JwtStrategy {
  return plugin.setup(ctx, plugin.options.parse(options)) as JwtStrategy;
}

/** The attacks of the JWT list, given the RS256 key the gateway trusts and a JWKS server. */
async function attackTokens(good: Key, jwks: JwksServer) {
  const stranger = await rsaPair(good.kid);
  return {
    'alg: none': unsigned(),
    'alg: none with a kid': `${base64url.encode(JSON.stringify({ alg: 'none', kid: good.kid }))}.${unsigned().split('.')[1]}.`,
    'HS256 signed with the RSA public key (PEM)': await sign(new TextEncoder().encode(good.pem), { alg: 'HS256', kid: good.kid }),
    'HS256 signed with the RSA public key (JWK n)': await sign(Buffer.from(good.jwk.n!, 'base64url'), { alg: 'HS256', kid: good.kid }),
    'wrong aud': await sign(good.privateKey, { alg: 'RS256', kid: good.kid }, { aud: 'another-api' }),
    'no aud': await sign(good.privateKey, { alg: 'RS256', kid: good.kid }, { aud: undefined }),
    expired: await sign(good.privateKey, { alg: 'RS256', kid: good.kid }, { exp: now() - 3600 }),
    'future nbf': await sign(good.privateKey, { alg: 'RS256', kid: good.kid }, { nbf: now() + 3600 }),
    'tampered signature': (() => undefined)(),
    'tampered payload': '',
    'signed by another key with the same kid': await sign(stranger.privateKey, { alg: 'RS256', kid: good.kid }),
    'kid used as a path': await sign(stranger.privateKey, { alg: 'RS256', kid: '../../../../etc/passwd' }),
    'kid used as a URL': await sign(stranger.privateKey, { alg: 'RS256', kid: `${jwks.origin}/evil.json` }),
    'kid used as a file URL': await sign(stranger.privateKey, { alg: 'RS256', kid: 'file:///etc/passwd' }),
    'kid with an encoded path and NUL': await sign(stranger.privateKey, { alg: 'RS256', kid: '%2e%2e%2f%00..\\..\\x' }),
  } as Record<string, string | undefined>;
}

async function completeAttacks(good: Key, jwks: JwksServer): Promise<Array<[string, string]>> {
  const list = await attackTokens(good, jwks);
  const valid = await sign(good.privateKey, { alg: 'RS256', kid: good.kid });
  const [h, p, s] = valid.split('.') as [string, string, string];
  list['tampered signature'] = `${h}.${p}.${s.slice(0, -4)}${s.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
  list['tampered payload'] = tamper(valid);
  return Object.entries(list).map(([k, v]) => [k, v!]);
}

describe('jwt: options', () => {
  it('pins algorithms and keeps HMAC away from public keys (algorithm confusion), none impossible', () => {
    const pem = '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----';
    expect(plugin.options.safeParse({ algorithms: ['RS256'], publicKeys: [pem] }).success).toBe(true);
    expect(plugin.options.safeParse({ publicKeys: [pem] }).success).toBe(false);
    expect(plugin.options.safeParse({ algorithms: [], publicKeys: [pem] }).success).toBe(false);
    expect(plugin.options.safeParse({ algorithms: ['none'], publicKeys: [pem] }).success).toBe(false);
    expect(plugin.options.safeParse({ algorithms: ['RS256', 'HS256'], publicKeys: [pem] }).success).toBe(false);
    expect(plugin.options.safeParse({ algorithms: ['HS256'], jwksUrl: 'https://idp.test/jwks' }).success).toBe(false);
    expect(plugin.options.safeParse({ algorithms: ['RS256'], secret: 'env:X' }).success).toBe(false);
    expect(plugin.options.safeParse({ algorithms: ['RS256'], publicKeys: [pem], jwksUrl: 'https://idp.test/jwks' }).success).toBe(false);
    expect(plugin.options.safeParse({ algorithms: ['RS256'] }).success).toBe(false);
    expect(plugin.options.safeParse({ algorithms: ['RS256'], jwksUrl: 'http://idp.example.com/jwks' }).success).toBe(false);
    expect(plugin.options.safeParse({ algorithms: ['RS256'], jwksUrl: 'http://127.0.0.1:9/jwks' }).success).toBe(true);
    expect(plugin.options.safeParse({ algorithms: ['RS256'], publicKeys: [{ kty: 'RSA', n: 'x', e: 'AQAB', d: 'private' }] }).success).toBe(false);
    expect(plugin.options.safeParse({ algorithms: ['RS256'], publicKeys: [{ kty: 'oct', k: 'c2VjcmV0' }] }).success).toBe(false);
  });

  it('reads the HMAC secret from env:/file: references and refuses one shorter than the hash', () => {
    process.env.MCP_TEST_JWT_SECRET = SECRET;
    expect(() => strategyOf({ algorithms: ['HS256'], secret: 'env:MCP_TEST_JWT_SECRET' })).not.toThrow();
    expect(() => strategyOf({ algorithms: ['HS256'], secret: 'env:MCP_TEST_JWT_UNSET' })).toThrow(/MCP_TEST_JWT_UNSET.*not set/);
    expect(() => strategyOf({ algorithms: ['HS512'], secret: 'env:MCP_TEST_JWT_SECRET' })).toThrow(/needs at least 64/);
    expect(() => strategyOf({ algorithms: ['HS256'], secret: 'short' })).toThrow(/needs at least 32/);
  });
});

describe('jwt: HS256 from a secret reference', () => {
  process.env.MCP_TEST_JWT_SECRET = SECRET;
  const key = new TextEncoder().encode(SECRET);
  const strategy = strategyOf({
    algorithms: ['HS256'],
    secret: 'env:MCP_TEST_JWT_SECRET',
    issuer: ISS,
    audience: AUD,
    rolesClaim: 'realm_access.roles',
    roleMap: { 'mcp-admin': 'admin', 'mcp-dev': ['developer', 'viewer'] },
    defaultRoles: ['viewer'],
    modelsClaim: 'models',
    keepClaims: ['iss', 'tenant'],
  });

  it('maps sub, mapped roles, models and kept claims; expiresAt is exp in ms', async () => {
    const exp = now() + 300;
    const token = await sign(key, { alg: 'HS256' }, { exp, realm_access: { roles: ['mcp-dev', 'offline_access'] }, models: ['m1'], tenant: 't1' });
    expect((await outcome(strategy, token)).principal).toEqual({
      id: 'alice',
      via: 'jwt',
      roles: ['viewer', 'developer'],
      models: ['m1'],
      expiresAt: exp * 1000,
      claims: { iss: ISS, tenant: 't1' },
    });
  });

  it("leaves what is not a JWT, or another issuer's JWT, to the next strategy (null)", async () => {
    for (const headers of [{}, { authorization: 'Bearer mcp_sk_abc' }, { authorization: 'Bearer opaque-token-123' }, { authorization: 'Basic dXNlcjpwYXNz' }]) {
      expect(await strategy.authenticate({ headers, entry: 'rest' })).toBeNull();
    }
    expect((await outcome(strategy, await sign(key, { alg: 'HS256' }, { iss: 'https://other.test/' }))).principal).toBeNull();
  });

  it('refuses expired, future nbf, wrong aud, tampered, alg none, a missing exp, and an oversized token with 401', async () => {
    const bad = {
      expired: await sign(key, { alg: 'HS256' }, { exp: now() - 120 }),
      nbf: await sign(key, { alg: 'HS256' }, { nbf: now() + 600 }),
      aud: await sign(key, { alg: 'HS256' }, { aud: 'nope' }),
      tampered: tamper(await sign(key, { alg: 'HS256' })),
      none: unsigned(),
      noExp: await new SignJWT({ sub: 'alice', iss: ISS, aud: AUD }).setProtectedHeader({ alg: 'HS256' }).sign(key),
      oversized: await sign(key, { alg: 'HS256' }, { pad: 'x'.repeat(9000) }),
      noSub: await sign(key, { alg: 'HS256' }, { sub: undefined }),
    };
    for (const [what, token] of Object.entries(bad)) {
      expect(await outcome(strategy, token), what).toEqual({ code: 'MCP_UNAUTHENTICATED', status: 401 });
    }
  });

  it('accepts a token within the clock tolerance and refuses it after', async () => {
    const strict = strategyOf({ algorithms: ['HS256'], secret: SECRET, clockToleranceSec: 0, cache: { maxEntries: 0 } });
    const lenient = strategyOf({ algorithms: ['HS256'], secret: SECRET, clockToleranceSec: 120, cache: { maxEntries: 0 } });
    const token = await sign(key, { alg: 'HS256' }, { exp: now() - 30 });
    expect((await outcome(strict, token)).code).toBe('MCP_UNAUTHENTICATED');
    expect((await outcome(lenient, token)).principal).toMatchObject({ id: 'alice' });
    const old = await new SignJWT({ sub: 'a' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt(now() - 600)
      .setExpirationTime(now() + 600)
      .sign(key);
    const young = strategyOf({ algorithms: ['HS256'], secret: SECRET, maxTokenAgeSec: 300, cache: { maxEntries: 0 } });
    expect((await outcome(young, old)).code).toBe('MCP_UNAUTHENTICATED');
  });

  it('the cache keeps a verified token no longer than its exp', async () => {
    const cached = strategyOf({ algorithms: ['HS256'], secret: SECRET, clockToleranceSec: 0 });
    const token = await sign(key, { alg: 'HS256' }, { exp: now() + 2 });
    const first = (await outcome(cached, token)).principal;
    expect(first).toMatchObject({ id: 'alice' });
    expect((await outcome(cached, token)).principal).toBe(first);
    await new Promise((r) => setTimeout(r, first!.expiresAt! - Date.now() + 1100));
    expect(await outcome(cached, token)).toEqual({ code: 'MCP_UNAUTHENTICATED', status: 401 });
  });
});

describe('jwt: RS256 with a JWKS URL', () => {
  let good: Key;
  let jwks: JwksServer;
  let strategy: JwtStrategy;
  beforeAll(async () => {
    good = await rsaPair('key-1');
    jwks = await startJwksServer([good.jwk]);
    strategy = strategyOf({ algorithms: ['RS256'], jwksUrl: jwks.url, issuer: ISS, audience: AUD, jwks: { cooldownSec: 30 } });
  });
  afterAll(() => jwks?.close());

  it('accepts a token signed by a key of the set', async () => {
    expect((await outcome(strategy, await sign(good.privateKey, { alg: 'RS256', kid: good.kid }))).principal).toMatchObject({ id: 'alice', via: 'jwt' });
  });

  it("refuses every attack of the issue's list with 401 and fetches nothing but the key set", async () => {
    for (const [what, token] of await completeAttacks(good, jwks)) {
      expect(await outcome(strategy, token), what).toEqual({ code: 'MCP_UNAUTHENTICATED', status: 401 });
    }
    expect(jwks.otherRequests).toEqual([]);
  });

  it('a flood of unknown kids causes at most one JWKS fetch per cooldown', async () => {
    const stranger = await rsaPair('x');
    const before = jwks.fetches;
    const tokens = await Promise.all(Array.from({ length: 300 }, (_, i) => sign(stranger.privateKey, { alg: 'RS256', kid: `unknown-${i}-${Math.random()}` })));
    const results = await Promise.all(tokens.map((t) => outcome(strategy, t)));
    expect(results.every((r) => r.code === 'MCP_UNAUTHENTICATED')).toBe(true);
    for (const t of tokens.slice(0, 50)) expect((await outcome(strategy, t)).code).toBe('MCP_UNAUTHENTICATED');
    // The set was fetched for the first test less than a cooldown ago: no fetch at all; allow one.
    expect(jwks.fetches - before).toBeLessThanOrEqual(1);
  });

  it('with a short cooldown: one fetch per cooldown over a 3 s flood, including while the key server fails', async () => {
    const server = await startJwksServer([good.jwk]);
    try {
      const ctx = testPluginContext('jwt-flood');
      const s = strategyOf({ algorithms: ['RS256'], jwksUrl: server.url, jwks: { cooldownSec: 1 } }, 'jwt-flood', ctx);
      const stranger = await rsaPair('x');
      const started = Date.now();
      let i = 0;
      while (Date.now() - started < 3000) {
        if (Date.now() - started > 1500) server.setStatus(500);
        const batch = await Promise.all(
          Array.from({ length: 20 }, async () => outcome(s, await sign(stranger.privateKey, { alg: 'RS256', kid: `flood-${i++}` }))),
        );
        expect(batch.every((r) => r.status === 401)).toBe(true);
        await new Promise((r) => setTimeout(r, 20));
      }
      const windows = Math.ceil((Date.now() - started) / 1000);
      expect(server.fetches).toBeGreaterThanOrEqual(2);
      expect(server.fetches).toBeLessThanOrEqual(windows + 1);
      // Every attempt is counted, failed ones too.
      const counted = (await ctx.metrics.getSingleMetric('mcp_auth_jwks_fetches_total')!.get()).values.reduce((n, v) => n + v.value, 0);
      expect(counted).toBe(server.fetches);
      expect(s.keySet?.fetches).toBe(server.fetches);
    } finally {
      await server.close();
    }
  });

  it('key rotation: a new kid in the JWKS is accepted after a refetch; a removed key stops working after maxAge', async () => {
    const server = await startJwksServer([good.jwk]);
    try {
      const s = strategyOf({ algorithms: ['RS256'], jwksUrl: server.url, jwks: { cooldownSec: 0.3, maxAgeSec: 1 }, cache: { maxEntries: 0 } });
      const next = await rsaPair('key-2');
      expect((await outcome(s, await sign(good.privateKey, { alg: 'RS256', kid: good.kid }))).principal).toMatchObject({ id: 'alice' });
      const rotated = await sign(next.privateKey, { alg: 'RS256', kid: next.kid });
      expect((await outcome(s, rotated)).code).toBe('MCP_UNAUTHENTICATED');
      server.setKeys([good.jwk, next.jwk]);
      await new Promise((r) => setTimeout(r, 400));
      expect((await outcome(s, rotated)).principal).toMatchObject({ id: 'alice' });
      server.setKeys([next.jwk]);
      await new Promise((r) => setTimeout(r, 1100));
      expect((await outcome(s, await sign(good.privateKey, { alg: 'RS256', kid: good.kid }))).code).toBe('MCP_UNAUTHENTICATED');
      expect((await outcome(s, rotated)).principal).toMatchObject({ id: 'alice' });
    } finally {
      await server.close();
    }
  });

  it('key server down: 503 before any key was fetched (and recovers), known keys keep working after', async () => {
    const server = await startJwksServer([good.jwk]);
    try {
      server.setStatus(503);
      const s = strategyOf({ algorithms: ['RS256'], jwksUrl: server.url, jwks: { cooldownSec: 0.3, maxAgeSec: 1 }, cache: { maxEntries: 0 } });
      const token = await sign(good.privateKey, { alg: 'RS256', kid: good.kid });
      expect(await outcome(s, token)).toEqual({ code: 'MCP_UPSTREAM_UNAVAILABLE', status: 503 });
      server.setStatus(200);
      await new Promise((r) => setTimeout(r, 400));
      expect((await outcome(s, token)).principal).toMatchObject({ id: 'alice' });
      server.setStatus(500);
      await new Promise((r) => setTimeout(r, 1100));
      expect((await outcome(s, token)).principal).toMatchObject({ id: 'alice' });
    } finally {
      await server.close();
    }
  });
});

describe('jwt: the attack list through a real gateway (auth on): each 401, never a 5xx', () => {
  let good: Key;
  let jwks: JwksServer;
  let gw: TestGateway;
  beforeAll(async () => {
    good = await rsaPair('gw-key');
    jwks = await startJwksServer([good.jwk]);
    gw = await startTestGateway({
      defaultPlugins: false,
      // Dozens of refused tokens from one address: the failed-authentication limit per IP would answer 429 first.
      limits: { failedAuth: false },
      auth: { enabled: true },
      plugins: [
        { use: 'p2c-ewma' },
        {
          use: 'jwt',
          options: { algorithms: ['RS256', 'ES256'], jwksUrl: jwks.url, issuer: ISS, audience: AUD, rolesClaim: 'roles', roleMap: { reader: 'viewer' } },
        },
      ],
    });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await jwks?.close();
  });

  const call = async (token: string | undefined) => {
    const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
    const rest = await fetch(`${gw.url}/api/v1/models`, { headers });
    const openai = await fetch(`${gw.url}/v1/models`, { headers });
    const gql = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ models { totalCount } }' }),
    });
    return {
      rest: rest.status,
      restCode: ((await rest.json()) as { error?: { code?: string } }).error?.code,
      openai: openai.status,
      graphql: ((await gql.json()) as { errors?: Array<{ extensions?: { code?: string } }> }).errors?.[0]?.extensions?.code ?? 'ok',
    };
  };

  it('a valid token passes on REST, OpenAI and GraphQL', async () => {
    expect(await call(await sign(good.privateKey, { alg: 'RS256', kid: good.kid }, { roles: ['reader'] }))).toEqual({
      rest: 200,
      restCode: undefined,
      openai: 200,
      graphql: 'ok',
    });
  });

  it('each attack → 401 MCP_UNAUTHENTICATED everywhere', async () => {
    const refused = { rest: 401, restCode: 'MCP_UNAUTHENTICATED', openai: 401, graphql: 'MCP_UNAUTHENTICATED' };
    const attacks = [
      ...(await completeAttacks(good, jwks)),
      ['wrong iss', await sign(good.privateKey, { alg: 'RS256', kid: good.kid }, { iss: 'https://evil.test/' })],
    ];
    for (const [what, token] of attacks) expect(await call(token), what).toEqual(refused);
    expect(await call(undefined), 'no token').toEqual(refused);
    expect(jwks.otherRequests).toEqual([]);
  });
});
