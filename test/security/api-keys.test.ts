/**
 * API keys created at run time: createApiKey (shown once, stored as SHA-256 only), use on every entry
 * point, revocation seen by a second gateway sharing PostgreSQL (and Redis events) within 5 s, expiry,
 * model-limited keys, and the rule that a caller grants only what it holds.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema, type ConfigInput } from '../../src/config/schema.ts';
import { createGateway, type Gateway } from '../../src/gateway.ts';
import { createTestDatabase, TEST_ADMIN_PASSWORD } from '../../src/testing/gateway.ts';
import { startStack, type Stack } from '../entrypoints/harness.ts';

const CREATE = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { key apiKey { id name prefix roles models expiresAt lastUsedAt } } }`;

interface Created {
  key: string;
  apiKey: { id: string; name: string; prefix: string; roles: string[]; models: string[] | null; expiresAt: string | null; lastUsedAt: string | null };
}

async function gql<T>(url: string, query: string, variables: Record<string, unknown>, headers: Record<string, string>) {
  const r = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  return (await r.json()) as { data?: T; errors?: Array<{ message: string; extensions?: { code?: string } }> };
}

async function login(url: string, username = 'admin', password = TEST_ADMIN_PASSWORD): Promise<Record<string, string>> {
  const r = await fetch(`${url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  return { authorization: `Bearer ${((await r.json()) as { access_token: string }).access_token}` };
}

const keyStatus = async (url: string, key: string) => (await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status;

/** Polls until the key is refused on `url`; returns the ms it took (or Infinity past `limitMs`). */
async function refusedWithin(url: string, key: string, limitMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < limitMs) {
    if ((await keyStatus(url, key)) === 401) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  return Infinity;
}

describe.runIf(process.env.DATABASE_URL)('API key revocation across two gateways on one PostgreSQL', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  async function pair(events: ConfigInput['events']): Promise<[Gateway, Gateway]> {
    const config = configSchema.parse({
      server: { port: 0, host: '127.0.0.1' },
      storage: { url: db.url },
      events,
      demo: { enabled: false },
      defaultPlugins: false,
      plugins: [{ use: 'p2c-ewma' }],
      log: { level: 'silent' },
    });
    const logger = pino({ level: 'silent' });
    const a = await createGateway({ config, logger, adminPassword: TEST_ADMIN_PASSWORD });
    const b = await createGateway({ config, logger, adminPassword: TEST_ADMIN_PASSWORD }).catch(async (err) => {
      await a.close();
      throw err;
    });
    return [a, b];
  }

  it('with Redis events: a key created on A works on B; revoked on A, B refuses it within 5 s; no plaintext in the database', async () => {
    const [a, b] = await pair({ redisUrl: 'redis://127.0.0.1:6379', channel: `mcp-test-${randomBytes(6).toString('hex')}` });
    try {
      const admin = await login(a.url);
      const created = await gql<{ createApiKey: Created }>(a.url, CREATE, { input: { name: 'ci', roles: ['developer'] } }, admin);
      expect(created.errors).toBeUndefined();
      const { key, apiKey } = created.data!.createApiKey;
      expect(key).toMatch(/^mcp_sk_/);
      expect(apiKey).toMatchObject({ name: 'ci', roles: ['developer'], models: null, prefix: key.slice(0, 12) });
      expect(await keyStatus(b.url, key)).toBe(200);
      expect(await keyStatus(a.url, key)).toBe(200);
      const revoked = await gql(a.url, 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }', { id: apiKey.id }, admin);
      expect(revoked.errors).toBeUndefined();
      expect(await refusedWithin(b.url, key, 5000)).toBeLessThan(5000);
      expect(await keyStatus(a.url, key)).toBe(401);

      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      const dump = JSON.stringify((await client.query('select * from api_keys')).rows);
      await client.end();
      expect(dump).not.toContain(key);
      expect(dump).toContain(apiKey.prefix);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('without a shared event bus the cache bound still holds: B refuses a revoked key within 5 s; lastUsedAt is recorded lazily', async () => {
    const [a, b] = await pair({});
    try {
      const admin = await login(a.url);
      const { key, apiKey } = (await gql<{ createApiKey: Created }>(a.url, CREATE, { input: { name: 'lazy', roles: ['viewer'] } }, admin)).data!.createApiKey;
      expect(await keyStatus(b.url, key)).toBe(200);
      // The key is now cached on B: revocation reaches B only through the staleness bound.
      await gql(a.url, 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }', { id: apiKey.id }, admin);
      // B checked the key before the revocation, so it re-reads it within maxStaleMs (5 s) of it; 0.5 s for polling.
      expect(await refusedWithin(b.url, key, 5500)).toBeLessThan(5500);
      await b.close();
      const list = await gql<{ apiKeys: Array<{ id: string; lastUsedAt: string | null }> }>(a.url, '{ apiKeys { id lastUsedAt } }', {}, admin);
      expect(list.data!.apiKeys.find((k) => k.id === apiKey.id)?.lastUsedAt).not.toBeNull();
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('API keys on one gateway', () => {
  let s: Stack;
  let admin: Record<string, string>;
  beforeAll(async () => {
    s = await startStack({ auth: { roles: { keymaster: ['keys:manage', 'models:read', 'inference:invoke'] } } });
    admin = await s.gw.login();
  });
  afterAll(async () => s?.close());

  const create = async (input: Record<string, unknown>, headers = admin) => gql<{ createApiKey: Created }>(s.gw.url, CREATE, { input }, headers);

  it('an expired key is refused', async () => {
    const c = await create({ name: 'short-lived', roles: ['viewer'], expiresAt: new Date(Date.now() + 1500).toISOString() });
    const { key } = c.data!.createApiKey;
    expect(await keyStatus(s.gw.url, key)).toBe(200);
    await new Promise((r) => setTimeout(r, 1700));
    const r = await fetch(`${s.gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    expect(r.status).toBe(401);
    expect(JSON.stringify(await r.json())).toContain('expired');
    const past = await create({ name: 'past', roles: ['viewer'], expiresAt: new Date(Date.now() - 1000).toISOString() });
    expect(past.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
  });

  it('a model-limited key calls its model and gets MCP_FORBIDDEN for another, on every entry point, and sees only its model', async () => {
    const { key } = (await create({ name: 'chat-only', roles: ['developer'], models: ['chat-model'] })).data!.createApiKey;
    const h = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const chat = (model: string) => ({ model, messages: [{ role: 'user', content: 'hi' }] });
    const ok = await fetch(`${s.gw.url}/v1/chat/completions`, { method: 'POST', headers: h, body: JSON.stringify(chat('chat-model')) });
    expect(ok.status).toBe(200);
    const calls: Array<[string, string, unknown]> = [
      ['POST', '/v1/chat/completions', chat('gen-model')],
      ['POST', '/v1/completions', { model: 'gen-model', prompt: 'hi' }],
      ['POST', '/v1/embeddings', { model: 'embed-model', input: 'hi' }],
      ['GET', '/v1/models/gen-model', undefined],
      ['POST', '/api/v1/models/gen-model/inference', { prompt: 'hi' }],
      ['GET', '/api/v1/models/gen-model', undefined],
      ['POST', '/v2/models/doubler/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] }],
      ['GET', '/v2/models/doubler', undefined],
    ];
    for (const [method, path, body] of calls) {
      const r = await fetch(`${s.gw.url}${path}`, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(await r.text()).toContain('MCP_FORBIDDEN');
    }
    const g = await gql(s.gw.url, 'mutation { infer(model: "gen-model", input: { prompt: "hi" }) { text } }', {}, h);
    expect(g.errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
    const listed = (await (await fetch(`${s.gw.url}/v1/models`, { headers: h })).json()) as { data: Array<{ id: string }> };
    expect(listed.data.map((m) => m.id)).toEqual(['chat-model']);
    const rest = (await (await fetch(`${s.gw.url}/api/v1/models`, { headers: h })).json()) as { models: Array<{ id: string }>; total: number };
    expect({ ids: rest.models.map((m) => m.id), total: rest.total }).toEqual({ ids: ['chat-model'], total: 1 });
    const models = await gql<{ models: { totalCount: number; nodes: Array<{ id: string }> } }>(s.gw.url, '{ models { totalCount nodes { id } } }', {}, h);
    expect(models.data?.models).toEqual({ totalCount: 1, nodes: [{ id: 'chat-model' }] });
    expect((await gql(s.gw.url, '{ model(id: "gen-model") { id } }', {}, h)).errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
  });

  it('a caller grants only what it holds; only admins create worker credentials; keys are never listed in full', async () => {
    const { key: km } = (await create({ name: 'keymaster', roles: ['keymaster'] })).data!.createApiKey;
    const h = { authorization: `Bearer ${km}` };
    expect((await create({ name: 'up', roles: ['admin'] }, h)).errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
    // developer includes metrics:read, which keymaster lacks.
    expect((await create({ name: 'dev', roles: ['developer'] }, h)).errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
    expect((await create({ name: 'same', roles: ['keymaster'] }, h)).data?.createApiKey.apiKey.roles).toEqual(['keymaster']);
    expect((await create({ name: 'w', roles: [], worker: 'worker-1' }, h)).errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
    const w = await create({ name: 'w', roles: [], worker: 'worker-1' });
    expect(w.data?.createApiKey.apiKey.roles).toEqual(['worker']);
    const list = await gql<{ apiKeys: Array<{ prefix: string }> }>(s.gw.url, '{ apiKeys { id name prefix } }', {}, h);
    expect(list.data!.apiKeys.length).toBeGreaterThanOrEqual(4);
    expect(JSON.stringify(list)).not.toContain(km);
    // A key-limited keymaster cannot widen the model list.
    const { key: limited } = (await create({ name: 'limited-km', roles: ['keymaster'], models: ['chat-model'] })).data!.createApiKey;
    const wide = await create({ name: 'wide', roles: ['keymaster'], models: ['gen-model'] }, { authorization: `Bearer ${limited}` });
    expect(wide.errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
    const inherits = await create({ name: 'inherits', roles: ['keymaster'] }, { authorization: `Bearer ${limited}` });
    expect(inherits.data?.createApiKey.apiKey.models).toEqual(['chat-model']);
  });

  it('keys from the config keep working next to stored ones', async () => {
    expect((await fetch(`${s.gw.url}/v1/models`, { headers: { authorization: 'Bearer mcp_sk_notakey_abcdef' } })).status).toBe(401);
  });
});
