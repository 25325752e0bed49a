import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryCredentialStore, startFakeOpenAI, type FakeOpenAIServer, startTestGateway, type TestGateway, testPluginContext } from 'capibara-mcp/testing';
import plugin, { checksumOf, generateApiKey, looksLikeApiKey, sha256Hex } from './index.ts';

describe('api-key auth: key format', () => {
  it('generates mcp_sk_<43 base62>_<6 checksum> keys with a valid checksum and their SHA-256', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const { key, sha256 } = generateApiKey();
      expect(key).toMatch(/^mcp_sk_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$/);
      expect(looksLikeApiKey(key)).toBe(true);
      expect(sha256).toBe(sha256Hex(key));
      seen.add(key);
    }
    expect(seen.size).toBe(200);
  });

  it('the checksum catches typos without a lookup', () => {
    const { key } = generateApiKey();
    const body = key.slice(0, key.lastIndexOf('_'));
    expect(checksumOf(body)).toBe(key.slice(-6));
    const typo = `${body.slice(0, 10)}${body[10] === 'a' ? 'b' : 'a'}${body.slice(11)}${key.slice(body.length)}`;
    expect(looksLikeApiKey(typo)).toBe(false);
    expect(looksLikeApiKey('mcp_sk_short_abcdef')).toBe(false);
    expect(looksLikeApiKey('sk-something-else')).toBe(false);
  });
});

describe('api-key auth: strategy', () => {
  const good = generateApiKey();
  const revoked = generateApiKey();
  const ctx = testPluginContext('api-key');
  const opts = plugin.options.parse({
    keys: [
      { id: 'team-a', sha256: good.sha256, roles: ['infer'], name: 'Team A' },
      { id: 'old', sha256: revoked.sha256, revoked: true },
    ],
  });
  const strategy = plugin.setup(ctx, opts) as Awaited<ReturnType<typeof plugin.setup>>;
  const auth = (headers: Record<string, string>) => {
    try {
      return { principal: strategy.authenticate({ headers, entry: 'rest' }) };
    } catch (e) {
      return { code: (e as { code?: string }).code };
    }
  };

  it('accepts the key as Bearer or x-api-key and returns its principal', () => {
    expect(auth({ authorization: `Bearer ${good.key}` })).toEqual({
      principal: { id: 'team-a', via: ctx.name, roles: ['infer'], claims: { keyName: 'Team A' } },
    });
    expect(auth({ 'x-api-key': good.key }).principal).toMatchObject({ id: 'team-a' });
    expect(auth({ authorization: `bearer ${good.key}` }).principal).toMatchObject({ id: 'team-a' });
  });

  it("no credentials, or another scheme's token → null (the next strategy may accept it)", () => {
    expect(auth({})).toEqual({ principal: null });
    expect(auth({ authorization: 'Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig' })).toEqual({ principal: null });
    expect(auth({ authorization: 'Basic dXNlcjpwYXNz' })).toEqual({ principal: null });
  });

  it('bad, unknown or revoked keys → MCP_UNAUTHENTICATED', async () => {
    // The last character changed (to one it is not: the key is random and may end in 'x').
    const altered = `${good.key.slice(0, -1)}${good.key.endsWith('x') ? 'y' : 'x'}`;
    expect(auth({ authorization: `Bearer ${altered}` })).toEqual({ code: 'MCP_UNAUTHENTICATED' });
    expect(auth({ 'x-api-key': 'nope' })).toEqual({ code: 'MCP_UNAUTHENTICATED' });
    expect(auth({ 'x-api-key': revoked.key })).toEqual({ code: 'MCP_UNAUTHENTICATED' });
    // A well-formed key not in the config is looked up in the credential store (empty here).
    await expect(Promise.resolve(auth({ authorization: `Bearer ${generateApiKey().key}` }).principal)).rejects.toMatchObject({ code: 'MCP_UNAUTHENTICATED' });
  });

  it('stored keys: cached after the first lookup (no store call on the hot path), dropped at once on revocation', async () => {
    const credentials = new MemoryCredentialStore();
    const k = generateApiKey();
    credentials.apiKeys.set(k.sha256, { id: 'k1', name: 'n', roles: ['viewer'], models: ['m'], worker: null, expiresAt: null, revokedAt: null });
    const s = await plugin.setup(testPluginContext('api-key', credentials), plugin.options.parse({}));
    const req = { headers: { authorization: `Bearer ${k.key}` }, entry: 'rest' };
    expect(await s.authenticate(req)).toMatchObject({ id: 'k1', roles: ['viewer'], models: ['m'] });
    const lookups = credentials.lookups;
    for (let i = 0; i < 100; i++) expect(s.authenticate(req)).toMatchObject({ id: 'k1' });
    expect(credentials.lookups).toBe(lookups);
    expect(credentials.touched.length).toBe(101);
    credentials.apiKeys.get(k.sha256)!.revokedAt = new Date();
    credentials.revoke({ kind: 'apiKey', id: 'k1' });
    await expect(Promise.resolve().then(() => s.authenticate(req))).rejects.toMatchObject({ code: 'MCP_UNAUTHENTICATED' });
  });

  it('rejects options with bad hashes or duplicate ids', () => {
    expect(plugin.options.safeParse({ keys: [{ id: 'a', sha256: 'abc' }] }).success).toBe(false);
    expect(
      plugin.options.safeParse({
        keys: [
          { id: 'a', sha256: good.sha256 },
          { id: 'a', sha256: revoked.sha256 },
        ],
      }).success,
    ).toBe(false);
    expect(plugin.options.safeParse({ keys: [{ id: 'a', sha256: good.sha256, plaintext: good.key }] }).success).toBe(false);
  });
});

describe('api-key auth in a gateway', () => {
  const admin = generateApiKey();
  let gw: TestGateway;
  let up: FakeOpenAIServer;
  beforeAll(async () => {
    up = await startFakeOpenAI();
    gw = await startTestGateway({
      auth: { strategies: ['api-key'] },
      defaultPlugins: false,
      plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }, { use: 'api-key', options: { keys: [{ id: 'ops', sha256: admin.sha256, roles: ['admin'] }] } }],
      models: [
        { id: 'm', task: 'chat', versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: up.url, options: { model: 'fake-model' } }] }] },
      ],
    });
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
  });

  it('REST, OpenAI and GraphQL need a valid key', async () => {
    const rest = (headers: Record<string, string>) =>
      fetch(`${gw.url}/api/v1/models/m/inference`, { method: 'POST', headers, body: '{"messages":[{"role":"user","content":"x"}]}' });
    const none = await rest({});
    expect(none.status).toBe(401);
    expect((await none.json()).error.code).toBe('MCP_UNAUTHENTICATED');
    expect((await rest({ 'x-api-key': 'mcp_sk_bad' })).status).toBe(401);
    const okRest = await rest({ authorization: `Bearer ${admin.key}` });
    expect({ status: okRest.status, body: await okRest.json() }).toMatchObject({ status: 200 });

    const ok = await new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: admin.key, maxRetries: 0 }).chat.completions.create({
      model: 'm',
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(ok.choices[0]!.message.content).toBe('Hello, world!');
    const denied = await new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: generateApiKey().key, maxRetries: 0 }).models.list().catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(APIError);
    expect((denied as APIError).status).toBe(401);
    expect((denied as APIError).code).toBe('MCP_UNAUTHENTICATED');

    const q = 'mutation { infer(model: "m", input: { messages: [{ role: "user", content: "x" }] }) { text } }';
    expect((await gw.gql(q)).errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
    expect((await gw.gql(q, {}, { authorization: `Bearer ${admin.key}` })).data).toEqual({ infer: { text: 'Hello, world!' } });
    const bad = await gw.gql(q, {}, { 'x-api-key': generateApiKey().key });
    expect(bad.errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
  });

  // Last: the plain gateway loads every default plugin (tfjs too), which keeps the event loop busy for a while.
  it('is set up only when auth.strategies names it: with auth off, defaultPlugins loads every first-party plugin but auth ones', async () => {
    const plain = await startTestGateway({});
    try {
      const kinds = plain.services.plugins.list().map((p) => p.kind);
      expect(kinds).toContain('backend');
      expect(kinds).not.toContain('auth');
      expect(plain.services.auth.enabled).toBe(false);
    } finally {
      await plain.close();
    }
    expect(
      gw.services.plugins
        .list()
        .filter((p) => p.kind === 'auth')
        .map((p) => p.name),
    ).toEqual(['api-key']);
  });
});
