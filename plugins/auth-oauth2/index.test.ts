/**
 * The oauth2 strategy against a real RFC 7662 introspection server on loopback: client authentication
 * (basic and post), active/inactive answers, scope → roles, the cache bounded by the token's exp and
 * maxTtlSec, the negative cache, one call for concurrent requests with one token, and an endpoint that
 * is down, slow or talks nonsense → 503 (never a 401 for everyone, never a 5xx crash), then recovery.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthRequest, Principal } from 'capibara-mcp';
import { listenOnLoopback, startTestGateway, testPluginContext, type LoopbackServer, type TestGateway } from 'capibara-mcp/testing';
import plugin from './index.ts';

interface Seen {
  authorization: string | undefined;
  form: URLSearchParams;
}

/** A loopback authorization server's introspection endpoint: answers from `tokens`, or misbehaves as `mode` says. */
async function startIntrospection() {
  const tokens = new Map<string, Record<string, unknown>>();
  const seen: Seen[] = [];
  const state = { mode: 'ok' as 'ok' | 'down' | 'slow' | 'garbage' | 'unauthorized' };
  const server: LoopbackServer = await listenOnLoopback((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(parts).toString());
      seen.push({ authorization: req.headers.authorization, form });
      if (state.mode === 'down') return void res.socket?.destroy();
      if (state.mode === 'slow') return void setTimeout(() => res.writeHead(200).end('{"active":false}'), 3000).unref();
      if (state.mode === 'garbage') return void res.writeHead(200, { 'content-type': 'application/json' }).end('<html>');
      if (state.mode === 'unauthorized') return void res.writeHead(401).end('{"error":"invalid_client"}');
      const answer = tokens.get(form.get('token') ?? '') ?? { active: false };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  return { url: `${server.origin}/oauth2/introspect`, tokens, seen, state, close: () => server.close() };
}

type Introspection = Awaited<ReturnType<typeof startIntrospection>>;

const bearer = (token: string): AuthRequest => ({ headers: { authorization: `Bearer ${token}` }, entry: 'rest' });
const now = () => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function outcome(s: { authenticate(r: AuthRequest): unknown }, token: string): Promise<{ principal?: Principal | null; code?: string; status?: number }> {
  try {
    return { principal: (await s.authenticate(bearer(token))) as Principal | null };
  } catch (e) {
    return { code: (e as { code?: string }).code, status: (e as { status?: number }).status };
  }
}

describe('oauth2: token introspection on loopback', () => {
  let idp: Introspection;
  beforeAll(async () => {
    idp = await startIntrospection();
    process.env.MCP_TEST_OAUTH2_SECRET = 'client s3cret:with/odd chars';
  });
  afterAll(() => idp?.close());

  const strategyOf = (extra: Record<string, unknown> = {}) =>
    plugin.setup(
      testPluginContext('oauth2'),
      plugin.options.parse({
        introspectionUrl: idp.url,
        clientId: 'capibara gateway',
        clientSecret: 'env:MCP_TEST_OAUTH2_SECRET',
        roleMap: { 'models:admin': 'admin', 'models:infer': 'developer' },
        timeoutMs: 500,
        ...extra,
      }),
    ) as { authenticate(r: AuthRequest): Promise<Principal | null> };

  it('authenticates with client_secret_basic (form-encoded id and secret), maps scopes to roles, expiresAt = exp', async () => {
    const exp = now() + 300;
    idp.tokens.set('tok-basic', { active: true, sub: 'svc-1', scope: 'models:infer openid', client_id: 'app', exp, iss: 'https://as.test' });
    const s = strategyOf();
    expect((await outcome(s, 'tok-basic')).principal).toEqual({
      id: 'svc-1',
      via: 'oauth2',
      roles: ['developer'],
      expiresAt: exp * 1000,
      claims: { iss: 'https://as.test', client_id: 'app', scope: 'models:infer openid' },
    });
    const last = idp.seen.at(-1)!;
    expect(last.form.get('token')).toBe('tok-basic');
    expect(last.form.get('token_type_hint')).toBe('access_token');
    expect(last.form.has('client_secret')).toBe(false);
    const [id, secret] = Buffer.from(last.authorization!.replace(/^Basic /, ''), 'base64')
      .toString()
      .split(':') as [string, string];
    expect([decodeURIComponent(id.replace(/\+/g, ' ')), decodeURIComponent(secret.replace(/\+/g, ' '))]).toEqual([
      'capibara gateway',
      'client s3cret:with/odd chars',
    ]);
  });

  it('authenticates with client_secret_post', async () => {
    idp.tokens.set('tok-post', { active: true, sub: 'svc-2', scope: 'models:admin', exp: now() + 300 });
    const s = strategyOf({ authMethod: 'client_secret_post' });
    expect((await outcome(s, 'tok-post')).principal).toMatchObject({ id: 'svc-2', roles: ['admin'] });
    const last = idp.seen.at(-1)!;
    expect(last.authorization).toBeUndefined();
    expect([last.form.get('client_id'), last.form.get('client_secret')]).toEqual(['capibara gateway', 'client s3cret:with/odd chars']);
  });

  it('active: false, expired, wrong aud/iss, no subject → 401; API keys and other schemes → null', async () => {
    idp.tokens.set('tok-exp', { active: true, sub: 'x', exp: now() - 5 });
    idp.tokens.set('tok-aud', { active: true, sub: 'x', aud: ['other'], iss: 'https://as.test' });
    idp.tokens.set('tok-iss', { active: true, sub: 'x', aud: 'mcp', iss: 'https://evil.test' });
    idp.tokens.set('tok-nosub', { active: true, aud: 'mcp', iss: 'https://as.test' });
    const s = strategyOf({ audience: 'mcp', issuer: 'https://as.test' });
    for (const t of ['tok-unknown', 'tok-exp', 'tok-aud', 'tok-iss', 'tok-nosub', 'x'.repeat(9000)]) {
      expect(await outcome(s, t), t.slice(0, 20)).toEqual({ code: 'MCP_UNAUTHENTICATED', status: 401 });
    }
    expect(await s.authenticate({ headers: { authorization: 'Bearer mcp_sk_abc_def' }, entry: 'rest' })).toBeNull();
    expect(await s.authenticate({ headers: { authorization: 'Basic dXNlcjpwYXNz' }, entry: 'rest' })).toBeNull();
    expect(await s.authenticate({ headers: {}, entry: 'rest' })).toBeNull();
  });

  it('caches an active token no longer than its exp, and concurrent requests share one call', async () => {
    idp.tokens.set('tok-short', { active: true, sub: 'short', exp: now() + 2 });
    const s = strategyOf();
    const before = idp.seen.length;
    const all = await Promise.all(Array.from({ length: 50 }, () => outcome(s, 'tok-short')));
    expect(all.every((r) => r.principal?.id === 'short')).toBe(true);
    expect(idp.seen.length - before).toBe(1);
    for (let i = 0; i < 20; i++) await outcome(s, 'tok-short');
    expect(idp.seen.length - before).toBe(1);
    await sleep(2600);
    expect(await outcome(s, 'tok-short')).toEqual({ code: 'MCP_UNAUTHENTICATED', status: 401 });
    expect(idp.seen.length - before).toBe(2);
  });

  it('caches no longer than maxTtlSec: a revoked token is refused after it', async () => {
    idp.tokens.set('tok-revoke', { active: true, sub: 'r', exp: now() + 3600 });
    const s = strategyOf({ cache: { maxTtlSec: 1, negativeTtlSec: 1 } });
    expect((await outcome(s, 'tok-revoke')).principal).toMatchObject({ id: 'r' });
    idp.tokens.set('tok-revoke', { active: false });
    expect((await outcome(s, 'tok-revoke')).principal).toMatchObject({ id: 'r' });
    await sleep(1100);
    expect((await outcome(s, 'tok-revoke')).code).toBe('MCP_UNAUTHENTICATED');
    // The refusal is cached briefly (negativeTtlSec), then asked again.
    const calls = idp.seen.length;
    idp.tokens.set('tok-revoke', { active: true, sub: 'r', exp: now() + 3600 });
    expect((await outcome(s, 'tok-revoke')).code).toBe('MCP_UNAUTHENTICATED');
    expect(idp.seen.length).toBe(calls);
    await sleep(1100);
    expect((await outcome(s, 'tok-revoke')).principal).toMatchObject({ id: 'r' });
  });

  it('endpoint down, slow, answering garbage or refusing our client → 503 MCP_UPSTREAM_UNAVAILABLE, nothing cached; recovers', async () => {
    idp.tokens.set('tok-outage', { active: true, sub: 'o', exp: now() + 300 });
    const s = strategyOf();
    for (const mode of ['down', 'slow', 'garbage', 'unauthorized'] as const) {
      idp.state.mode = mode;
      const started = Date.now();
      expect(await outcome(s, 'tok-outage'), mode).toEqual({ code: 'MCP_UPSTREAM_UNAVAILABLE', status: 503 });
      expect(Date.now() - started, `${mode}: bounded by timeoutMs`).toBeLessThan(2500);
    }
    idp.state.mode = 'ok';
    expect((await outcome(s, 'tok-outage')).principal).toMatchObject({ id: 'o' });
  });

  it('counts introspection calls by outcome (mcp_auth_introspections_total)', async () => {
    const ctx = testPluginContext('oauth2-metrics');
    const s = plugin.setup(ctx, plugin.options.parse({ introspectionUrl: idp.url, clientId: 'c', clientSecret: 'literal', timeoutMs: 500 })) as {
      authenticate(r: AuthRequest): Promise<Principal | null>;
    };
    idp.tokens.set('tok-metric', { active: true, sub: 'm', exp: now() + 300 });
    await outcome(s, 'tok-metric');
    await outcome(s, 'tok-metric-unknown');
    idp.state.mode = 'down';
    await outcome(s, 'tok-metric-outage');
    idp.state.mode = 'ok';
    const text = await ctx.metrics.getSingleMetricAsString('mcp_auth_introspections_total');
    for (const outcomeName of ['active', 'refused', 'error']) {
      expect(text).toContain(`mcp_auth_introspections_total{plugin="oauth2-metrics",outcome="${outcomeName}"} 1`);
    }
    await ctx.close();
  });
});

describe('oauth2 in a gateway (auth on)', () => {
  let idp: Introspection;
  let gw: TestGateway;
  beforeAll(async () => {
    idp = await startIntrospection();
    gw = await startTestGateway({
      defaultPlugins: false,
      auth: { enabled: true },
      plugins: [
        { use: 'p2c-ewma' },
        { use: 'oauth2', options: { introspectionUrl: idp.url, clientId: 'gw', clientSecret: 'literal-secret-for-the-test', timeoutMs: 500 } },
      ],
    });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
    await idp?.close();
  });

  it('an active token passes, an inactive one is 401, an outage is 503 and the gateway recovers', async () => {
    idp.tokens.set('good', { active: true, sub: 'u', scope: 'developer', exp: now() + 300 });
    const get = async (token: string) => {
      const r = await fetch(`${gw.url}/api/v1/models`, { headers: { authorization: `Bearer ${token}` } });
      return { status: r.status, code: ((await r.json()) as { error?: { code?: string } }).error?.code };
    };
    expect(await get('good')).toEqual({ status: 200, code: undefined });
    expect(await get('bad')).toEqual({ status: 401, code: 'MCP_UNAUTHENTICATED' });
    idp.state.mode = 'down';
    expect(await get('new-token')).toEqual({ status: 503, code: 'MCP_UPSTREAM_UNAVAILABLE' });
    expect(await get('good')).toEqual({ status: 200, code: undefined });
    idp.state.mode = 'ok';
    // A token without a role would be authenticated but forbidden (403): this one may read models.
    idp.tokens.set('new-token', { active: true, sub: 'n', scope: 'viewer', exp: now() + 300 });
    expect(await get('new-token')).toEqual({ status: 200, code: undefined });
  });
});
