/**
 * The failed-authentication limit per client IP, end to end: refused credentials spend the IP's
 * allowance (limits.failedAuth), then every credential from that address waits (429 with
 * Retry-After) before any strategy runs; requests without credentials spend nothing; a valid
 * user's own quota is untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from 'capibara-mcp/testing';

describe('failed authentication is limited per IP', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ auth: { enabled: true }, limits: { failedAuth: { requests: 3, period: '1h' } } });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
  });

  const models = (headers: Record<string, string> = {}) => fetch(`${gw.url}/api/v1/models`, { headers });

  it('anonymous calls spend nothing; three bad keys do, then the address waits with Retry-After', async () => {
    const login = await gw.login();
    for (let i = 0; i < 5; i++) expect((await models()).status).toBe(401);
    for (let i = 0; i < 3; i++) {
      const r = await models({ authorization: 'Bearer mcp_sk_0000000000000000000000000000000000000000000_AAAAAA' });
      expect(r.status).toBe(401);
    }
    const blocked = await models({ authorization: 'Bearer mcp_sk_0000000000000000000000000000000000000000000_AAAAAA' });
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await blocked.json()) as { error: { code: string } }).error.code).toBe('MCP_RATE_LIMITED');
    // The same address with a valid credential waits too (the limit is per address, before any strategy runs).
    expect((await models(login)).status).toBe(429);
    // GraphQL answers with the code and the wait.
    const g = await gw.gql('{ models { totalCount } }', undefined, login);
    expect(g.errors?.[0]?.extensions?.code).toBe('MCP_RATE_LIMITED');
    expect(Number((g.errors?.[0]?.extensions?.details as { retryAfterMs?: number })?.retryAfterMs)).toBeGreaterThan(0);
  });
});

describe('rules on every request (`on: all`)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      auth: { enabled: true },
      limits: { rules: [{ name: 'calls', scope: 'principal', on: 'all', requests: 3, period: '1h' }] },
    });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
  });

  it('every authenticated request spends the rule, whatever the entry point; the fourth waits', async () => {
    const admin = await gw.login();
    expect((await fetch(`${gw.url}/api/v1/models`, { headers: admin })).status).toBe(200);
    expect((await fetch(`${gw.url}/v1/models`, { headers: admin })).status).toBe(200);
    expect((await gw.gql('{ models { totalCount } }', undefined, admin)).errors).toBeUndefined();
    const r = await fetch(`${gw.url}/v2`, { headers: admin });
    expect(r.status).toBe(429);
    expect(r.headers.get('ratelimit-policy')).toBe('"calls";q=3;w=3600');
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});
