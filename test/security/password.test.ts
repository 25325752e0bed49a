/**
 * Strategy `password` against the real server on PGlite and PostgreSQL: first-start admin, login over
 * GraphQL and REST, refresh-token rotation with reuse detection, logout, one message for every wrong
 * credential, brute-force lockout per user and per address, the audit trail, user management.
 */
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AuditEntry } from '../../src/audit/types.ts';
import { configSchema } from '../../src/config/schema.ts';
import { loginLockouts, users } from '../../src/db/schema.ts';
import { createGateway } from '../../src/gateway.ts';
import { createTestDatabase, startTestGateway, STORAGES, TEST_ADMIN_PASSWORD, type TestGateway } from '../../src/testing/gateway.ts';

/** No model backends: these tests need none (and start faster without tfjs). */
const LEAN = { defaultPlugins: false, plugins: [{ use: 'p2c-ewma' }] };

type Tokens = { access_token: string; refresh_token: string; token_type: string; expires_in: number };

async function post(gw: TestGateway, path: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return {
    status: r.status,
    headers: r.headers,
    body: (await r.json()) as Tokens & { error?: { code: string; message: string; details?: Record<string, unknown> } },
  };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const me = async (gw: TestGateway, headers: Record<string, string>) =>
  await gw.gql<{ me: { id: string; roles: string[] } }>('{ me { id roles } }', {}, headers);

describe.each(STORAGES)('password strategy (%s)', (storageKind) => {
  let gw: TestGateway;
  const audit: AuditEntry[] = [];
  beforeAll(async () => {
    gw = await startTestGateway({
      ...LEAN,
      storageKind,
      auth: { lockout: { maxFailuresPerUser: 3, baseMs: 60_000 } },
      limits: { failedAuth: { requests: 1000, period: 60_000 } },
    });
    // Every entry also reaches the real audit log; the test reads what was recorded.
    const log = gw.services.audit;
    const record = log.record.bind(log);
    log.record = async (e, ...rest) => {
      audit.push(e);
      return record(e, ...rest);
    };
  });
  afterAll(async () => gw?.close());

  it('logs in over REST and GraphQL; the access token works on every entry point', async () => {
    const rest = await post(gw, '/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD });
    expect(rest.status).toBe(200);
    expect(rest.body).toMatchObject({ token_type: 'Bearer', expires_in: 900 });
    expect(rest.body.access_token.split('.')).toHaveLength(3);
    expect(rest.body.refresh_token).toMatch(/^mcp_rt_/);
    expect((await me(gw, bearer(rest.body.access_token))).data?.me).toMatchObject({ roles: ['admin'] });
    expect((await fetch(`${gw.url}/v1/models`, { headers: bearer(rest.body.access_token) })).status).toBe(200);

    const q = await gw.gql<{ login: { accessToken: string; refreshToken: string; expiresIn: number; tokenType: string } }>(
      'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken refreshToken expiresIn tokenType } }',
      { u: 'admin', p: TEST_ADMIN_PASSWORD },
    );
    expect(q.data?.login).toMatchObject({ expiresIn: 900, tokenType: 'Bearer' });
    expect((await me(gw, bearer(q.data!.login.accessToken))).data?.me.roles).toEqual(['admin']);
    expect(audit.filter((e) => e.action === 'auth.login' && e.outcome === 'ok').length).toBeGreaterThanOrEqual(2);
  });

  it('refuses an access token past its expiry on every entry point (the server checks exp, not only the client)', async () => {
    const { body } = await post(gw, '/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD });
    expect((await me(gw, bearer(body.access_token))).data?.me).toMatchObject({ roles: ['admin'] });
    // The gateway's clock moves past the token's 900 s (only Date: timers and I/O run as usual).
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + (body.expires_in + 5) * 1000 });
    try {
      expect((await me(gw, bearer(body.access_token))).errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
      const models = await fetch(`${gw.url}/v1/models`, { headers: bearer(body.access_token) });
      expect(models.status).toBe(401);
    } finally {
      vi.useRealTimers();
    }
    expect((await me(gw, bearer(body.access_token))).data?.me).toMatchObject({ roles: ['admin'] });
  });
  it('a wrong password and an unknown user get the same 401, and the password never reaches the audit log', async () => {
    const wrong = await post(gw, '/api/v1/auth/login', { username: 'admin', password: 'not-the-password-at-all' });
    const unknown = await post(gw, '/api/v1/auth/login', { username: 'nobody', password: 'not-the-password-at-all' });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.body.error).toEqual(unknown.body.error);
    expect(wrong.body.error?.code).toBe('MCP_UNAUTHENTICATED');
    const failed = audit.filter((e) => e.action === 'auth.login' && e.outcome === 'failed');
    expect(failed.map((e) => e.actor)).toEqual(expect.arrayContaining(['admin', 'nobody']));
    expect(JSON.stringify(audit)).not.toContain('not-the-password-at-all');
    expect(JSON.stringify(audit)).not.toContain(TEST_ADMIN_PASSWORD);
    // A later success clears admin's failures (the lockout test below uses its own user).
    expect((await post(gw, '/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD })).status).toBe(200);
  });

  it('refresh rotates the token; reusing a spent one revokes the whole session', async () => {
    const first = (await post(gw, '/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD })).body;
    const second = await post(gw, '/api/v1/auth/refresh', { refresh_token: first.refresh_token });
    expect(second.status).toBe(200);
    expect(second.body.refresh_token).not.toBe(first.refresh_token);
    const third = await post(gw, '/api/v1/auth/refresh', { refresh_token: second.body.refresh_token });
    expect(third.status).toBe(200);
    expect((await me(gw, bearer(third.body.access_token))).data?.me.roles).toEqual(['admin']);
    // The spent first token again: refused, and the family (third's refresh and access tokens too) is revoked.
    const reuse = await post(gw, '/api/v1/auth/refresh', { refresh_token: first.refresh_token });
    expect(reuse.status).toBe(401);
    expect(reuse.body.error?.code).toBe('MCP_UNAUTHENTICATED');
    expect((await post(gw, '/api/v1/auth/refresh', { refresh_token: third.body.refresh_token })).status).toBe(401);
    expect((await me(gw, bearer(third.body.access_token))).errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
    // GraphQL refresh of a garbage token.
    const g = await gw.gql('mutation { refresh(refreshToken: "mcp_rt_nope") { accessToken } }');
    expect(g.errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
  });

  it('logout ends the session: its refresh and access tokens are refused', async () => {
    const t = (await post(gw, '/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD })).body;
    expect((await me(gw, bearer(t.access_token))).data?.me).toBeDefined();
    expect((await post(gw, '/api/v1/auth/logout', { refresh_token: t.refresh_token })).status).toBe(200);
    expect((await post(gw, '/api/v1/auth/refresh', { refresh_token: t.refresh_token })).status).toBe(401);
    expect((await me(gw, bearer(t.access_token))).errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
    const g = await gw.gql<{ logout: boolean }>('mutation($t: String!) { logout(refreshToken: $t) }', { t: t.refresh_token });
    expect(g.data).toEqual({ logout: true });
  });

  it('a tampered or foreign access token is 401, never 5xx', async () => {
    const t = (await post(gw, '/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD })).body.access_token;
    const [h, p, sig] = t.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, roles: ['admin', 'x'] })).toString('base64url')}.${sig}`;
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${p}.`;
    for (const token of [forged, `${h}.${p}.${sig!.slice(0, -2)}AA`, none]) {
      const r = await fetch(`${gw.url}/v1/models`, { headers: bearer(token) });
      expect(r.status, token.slice(0, 20)).toBe(401);
    }
  });

  it('locks a user out after repeated failures (429 with retryAfterMs, even with the right password), and audits it', async () => {
    const admin = await gw.login();
    const created = await gw.gql(
      'mutation { createUser(input: { username: "mallory-target", password: "a-long-enough-password", roles: ["viewer"] }) { id } }',
      {},
      admin,
    );
    expect(created.errors).toBeUndefined();
    for (let i = 0; i < 3; i++)
      expect((await post(gw, '/api/v1/auth/login', { username: 'mallory-target', password: `guess-number-${i}-xx` })).status).toBe(401);
    const locked = await post(gw, '/api/v1/auth/login', { username: 'mallory-target', password: 'a-long-enough-password' });
    expect(locked.status).toBe(429);
    expect(locked.body.error?.code).toBe('MCP_RATE_LIMITED');
    expect(Number(locked.body.error?.details?.retryAfterMs)).toBeGreaterThan(1000);
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
    const g = await gw.gql('mutation { login(username: "mallory-target", password: "a-long-enough-password") { accessToken } }');
    expect(g.errors?.[0]?.extensions?.code).toBe('MCP_RATE_LIMITED');
    expect(audit.some((e) => e.action === 'auth.login' && e.outcome === 'denied' && e.actor === 'mallory-target')).toBe(true);
    // Another user is not affected.
    expect((await post(gw, '/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD })).status).toBe(200);
  });

  it('users: create (password policy, known roles), update (disable: tokens refused at once), delete; users:manage only', async () => {
    const admin = await gw.login();
    const weak = await gw.gql('mutation { createUser(input: { username: "dev", password: "short", roles: ["developer"] }) { id } }', {}, admin);
    expect(weak.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const badRole = await gw.gql('mutation { createUser(input: { username: "dev", password: "long-enough-secret", roles: ["root"] }) { id } }', {}, admin);
    expect(badRole.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const dev = await gw.gql<{ createUser: { id: string; roles: string[] } }>(
      'mutation { createUser(input: { username: "dev", password: "long-enough-secret", roles: ["developer"] }) { id roles } }',
      {},
      admin,
    );
    expect(dev.data?.createUser.roles).toEqual(['developer']);
    const dup = await gw.gql('mutation { createUser(input: { username: "dev", password: "long-enough-secret", roles: [] }) { id } }', {}, admin);
    expect(dup.errors?.[0]?.extensions?.code).toBe('MCP_DUPLICATE_ID');
    const devHeaders = await gw.login('dev', 'long-enough-secret');
    expect((await gw.gql('{ users { id } }', {}, devHeaders)).errors?.[0]?.extensions?.code).toBe('MCP_FORBIDDEN');
    expect((await gw.gql('{ models { totalCount } }', {}, devHeaders)).data).toBeDefined();
    const id = dev.data!.createUser.id;
    const off = await gw.gql('mutation($id: ID!) { updateUser(id: $id, input: { disabled: true }) { disabled } }', { id }, admin);
    expect(off.data).toEqual({ updateUser: { disabled: true } });
    expect((await gw.gql('{ models { totalCount } }', {}, devHeaders)).errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
    expect((await post(gw, '/api/v1/auth/login', { username: 'dev', password: 'long-enough-secret' })).status).toBe(401);
    // Enabled again: a new sign-in works at once (only credentials issued before the change are void).
    await gw.gql('mutation($id: ID!) { updateUser(id: $id, input: { disabled: false }) { disabled } }', { id }, admin);
    expect((await me(gw, await gw.login('dev', 'long-enough-secret'))).data?.me.roles).toEqual(['developer']);
    const lastAdmin = await gw.gql<{ users: Array<{ id: string; username: string }> }>('{ users { id username } }', {}, admin);
    const adminId = lastAdmin.data!.users.find((u) => u.username === 'admin')!.id;
    expect((await gw.gql('mutation($id: ID!) { deleteUser(id: $id) { id } }', { id: adminId }, admin)).errors?.[0]?.extensions?.code).toBe('MCP_CONFLICT');
    expect((await gw.gql('mutation($id: ID!) { deleteUser(id: $id) { username } }', { id }, admin)).data).toEqual({ deleteUser: { username: 'dev' } });
    expect(audit.map((e) => e.action)).toEqual(expect.arrayContaining(['user.create', 'user.update', 'user.delete']));
    expect(JSON.stringify(audit)).not.toContain('long-enough-secret');
  });
});

describe('sign-in routes refuse bad input with a 4xx', () => {
  it('missing fields, wrong types, wrong method, oversized body', async () => {
    const gw = await startTestGateway({ ...LEAN, auth: {} });
    try {
      expect((await post(gw, '/api/v1/auth/login', { username: 'admin' })).body.error?.code).toBe('MCP_VALIDATION_FAILED');
      expect((await post(gw, '/api/v1/auth/login', { username: 1, password: 2 })).status).toBe(400);
      expect((await post(gw, '/api/v1/auth/refresh', {})).status).toBe(400);
      expect((await fetch(`${gw.url}/api/v1/auth/login`)).status).toBe(405);
      const big = await fetch(`${gw.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'admin', password: 'x'.repeat(100_000) }),
      });
      expect(big.status).toBe(413);
      const long = await post(gw, '/api/v1/auth/login', { username: 'admin', password: 'y'.repeat(2000) });
      expect(long.status).toBe(401);
    } finally {
      await gw.close();
    }
  });
});

describe('brute force per address', () => {
  it('locks an address out after failures across many user names (limits.failedAuth: one count with failed tokens and keys)', async () => {
    const gw = await startTestGateway({
      ...LEAN,
      auth: { lockout: { maxFailuresPerUser: 100, baseMs: 60_000 } },
      limits: { failedAuth: { requests: 4, period: 60_000 } },
    });
    try {
      for (let i = 0; i < 3; i++) expect((await post(gw, '/api/v1/auth/login', { username: `user${i}`, password: 'wrong-password-123' })).status).toBe(401);
      // A refused API key spends the same allowance as a failed sign-in.
      expect((await fetch(`${gw.url}/api/v1/models`, { headers: bearer('mcp_sk_not-a-real-key') })).status).toBe(401);
      const locked = await post(gw, '/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD });
      expect(locked.status).toBe(429);
      expect(locked.body.error?.code).toBe('MCP_RATE_LIMITED');
      expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
    } finally {
      await gw.close();
    }
  });

  it('refuses the replaced auth.lockout.maxFailuresPerIp with a message naming limits.failedAuth', () => {
    const r = configSchema.safeParse({ auth: { lockout: { maxFailuresPerIp: 20 } } });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain('limits.failedAuth');
  });
});

describe.runIf(process.env.DATABASE_URL)('lockout across replicas (PostgreSQL)', () => {
  it('failures on one replica lock the name on every replica; deleting the row (an operator) clears it', async () => {
    const db = await createTestDatabase();
    const opts = { ...LEAN, auth: { lockout: { maxFailuresPerUser: 2, baseMs: 60_000 } }, limits: { failedAuth: false as const }, storage: { url: db.url } };
    const a = await startTestGateway(opts);
    const b = await startTestGateway(opts);
    try {
      const user = { username: 'admin', password: 'wrong-password-123' };
      expect((await post(a, '/api/v1/auth/login', user)).status).toBe(401);
      expect((await post(b, '/api/v1/auth/login', user)).status).toBe(401);
      // Two failures, one on each replica: the name is locked on both, even for the right password.
      for (const gw of [a, b]) {
        const locked = await post(gw, '/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD });
        expect(locked.status).toBe(429);
        expect(Number(locked.body.error?.details?.retryAfterMs)).toBeGreaterThan(50_000);
      }
      // Another name is not affected, and the lock is a row any replica can clear (an operator deleting it).
      expect((await post(b, '/api/v1/auth/login', { username: 'nobody', password: 'x-long-password-1' })).status).toBe(401);
      await a.services.database.db.delete(loginLockouts);
      expect((await post(b, '/api/v1/auth/login', { username: 'admin', password: TEST_ADMIN_PASSWORD })).status).toBe(200);
      expect(await a.services.database.db.select().from(loginLockouts)).toEqual([]);
    } finally {
      await a.close();
      await b.close();
      await db.drop();
    }
  });
});

describe('first start', () => {
  it('creates admin from MCP_ADMIN_PASSWORD (the adminPassword option) and stores only a scrypt hash', async () => {
    const gw = await startTestGateway({ ...LEAN, auth: {} }, { adminPassword: 'from-the-environment-42' });
    try {
      expect(await gw.login('admin', 'from-the-environment-42')).toHaveProperty('authorization');
    } finally {
      await gw.close();
    }
  });

  it('generates a password when none is given and hands it over once (the default prints it on stderr, not in the log)', async () => {
    const shown: string[] = [];
    const gw = await startTestGateway({ ...LEAN, auth: {} }, { adminPassword: null, announceAdmin: ({ password }) => void shown.push(password) });
    try {
      expect(shown).toHaveLength(1);
      expect(await gw.login('admin', shown[0]!)).toHaveProperty('authorization');
      // The whole users table, as a dump would show it.
      const rows = await gw.services.database.db.select().from(users);
      expect(rows).toHaveLength(1);
      expect(rows[0]!.passwordHash).toMatch(/^scrypt\$/);
      expect(JSON.stringify(rows)).not.toContain(shown[0]!);
    } finally {
      await gw.close();
    }
  });

  it.runIf(process.env.DATABASE_URL)(
    'two replicas starting together on one PostgreSQL create one admin, print the generated password once, store no plaintext',
    async () => {
      const db = await createTestDatabase();
      const shown: string[] = [];
      const config = configSchema.parse({
        server: { port: 0, host: '127.0.0.1' },
        storage: { url: db.url },
        demo: { enabled: false },
        defaultPlugins: false,
        plugins: [{ use: 'p2c-ewma' }],
      });
      const logs: string[] = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
      const start = () => createGateway({ config, logger, announceAdmin: ({ password }) => void shown.push(password) });
      const gws = await Promise.all([start(), start()]);
      try {
        expect(shown).toHaveLength(1);
        const password = shown[0]!;
        expect(password.length).toBeGreaterThanOrEqual(20);
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        const { rows } = await client.query('select * from users');
        const { rows: state } = await client.query('select * from auth_state');
        await client.end();
        expect(rows).toHaveLength(1);
        expect(rows[0].username).toBe('admin');
        expect(rows[0].password_hash).toMatch(/^scrypt\$32768\$8\$1\$/);
        expect(JSON.stringify(rows)).not.toContain(password);
        expect(JSON.stringify(state)).not.toContain(password);
        expect(logs.join('\n')).not.toContain(password);
        const r = await fetch(`${gws[1]!.url}/api/v1/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username: 'admin', password }),
        });
        expect(r.status).toBe(200);
      } finally {
        await Promise.all(gws.map((g) => g.close()));
        await db.drop();
      }
      // A later start on the same database prints nothing.
    },
  );
});
