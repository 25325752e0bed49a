import { describe, expect, it } from 'vitest';
import { claimAt, claimList, claimMappingSchema, createClaimMapper } from './claims.ts';
import { TtlCache } from './ttl-cache.ts';
import { resolveSecret } from './secret-ref.ts';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('claimAt', () => {
  it('walks dotted paths, and matches a namespaced key that contains dots whole', () => {
    const claims = {
      realm_access: { roles: ['a'] },
      'https://acme.test/roles': ['b'],
      resource_access: { 'capibara-mcp': { roles: ['c'] } },
      'a.b': { c: 1 },
    };
    expect(claimAt(claims, 'realm_access.roles')).toEqual(['a']);
    expect(claimAt(claims, 'https://acme.test/roles')).toEqual(['b']);
    expect(claimAt(claims, 'resource_access.capibara-mcp.roles')).toEqual(['c']);
    expect(claimAt(claims, 'a.b.c')).toBe(1);
    expect(claimAt(claims, 'realm_access.missing')).toBeUndefined();
    expect(claimAt(claims, 'realm_access.roles.length')).toBeUndefined();
  });

  it('reads own properties only (no prototype keys)', () => {
    expect(claimAt({}, 'constructor')).toBeUndefined();
    expect(claimAt({ a: {} }, 'a.__proto__')).toBeUndefined();
    expect(claimAt({ a: {} }, 'a.toString')).toBeUndefined();
  });
});

describe('claimList', () => {
  it('reads arrays of strings and space/comma-separated strings, bounded', () => {
    expect(claimList(['a', 1, '', 'b', null])).toEqual(['a', 'b']);
    expect(claimList('openid models:read  models:write')).toEqual(['openid', 'models:read', 'models:write']);
    expect(claimList('a,b')).toEqual(['a', 'b']);
    expect(claimList(undefined)).toEqual([]);
    expect(claimList({ a: 1 })).toEqual([]);
    expect(claimList(Array.from({ length: 10_000 }, (_, i) => `r${i}`))).toHaveLength(256);
    expect(claimList(['x'.repeat(300), 'ok'])).toEqual(['ok']);
  });
});

describe('createClaimMapper', () => {
  it('Keycloak: realm roles through roleMap, default roles, models, kept claims', () => {
    const map = createClaimMapper(
      claimMappingSchema.parse({
        rolesClaim: 'realm_access.roles',
        roleMap: { 'mcp-admin': 'admin', 'mcp-dev': ['developer', 'viewer'] },
        defaultRoles: ['viewer'],
        modelsClaim: 'mcp_models',
        keepClaims: ['iss', 'azp'],
      }),
    );
    expect(
      map({ sub: 'u1', iss: 'https://kc/realms/x', azp: 'app', realm_access: { roles: ['mcp-dev', 'offline_access', 'toString'] }, mcp_models: 'm1 m2' }),
    ).toEqual({
      id: 'u1',
      roles: ['viewer', 'developer'],
      models: ['m1', 'm2'],
      claims: { iss: 'https://kc/realms/x', azp: 'app' },
    });
  });

  it('without roleMap the external names are used as they are; without the models claim every model', () => {
    const map = createClaimMapper(claimMappingSchema.parse({ rolesClaim: 'roles', modelsClaim: 'models', subjectClaim: 'client_id' }));
    expect(map({ client_id: 'svc', roles: ['operator'] })).toEqual({ id: 'svc', roles: ['operator'], claims: {} });
  });

  it('a token without a usable subject is MCP_UNAUTHENTICATED', () => {
    const map = createClaimMapper(claimMappingSchema.parse({}));
    for (const claims of [{}, { sub: '' }, { sub: 42 }, { sub: 'x'.repeat(300) }]) {
      expect(() => map(claims)).toThrow(expect.objectContaining({ code: 'MCP_UNAUTHENTICATED' }));
    }
  });
});

describe('TtlCache', () => {
  it('expires entries at their own time and evicts the least recently used when full', () => {
    let t = 1000;
    const c = new TtlCache<string>(2, () => t);
    c.set('a', 'A', 2000);
    c.set('b', 'B', 1500);
    expect(c.get('a')).toBe('A');
    c.set('c', 'C', 5000);
    expect([c.get('a'), c.get('b'), c.get('c')]).toEqual(['A', undefined, 'C']);
    t = 2000;
    expect(c.get('a')).toBeUndefined();
    c.set('d', 'D', 1999);
    expect(c.get('d')).toBeUndefined();
    expect(c.size).toBe(1);
    const off = new TtlCache<string>(0);
    off.set('x', 'X', Date.now() + 1000);
    expect(off.get('x')).toBeUndefined();
  });
});

describe('resolveSecret', () => {
  it('reads env: and file: references and takes anything else literally', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcp-secret-'));
    writeFileSync(join(dir, 's'), 'from-file\n');
    expect(resolveSecret('env:S', { S: 'from-env' })).toEqual({ value: 'from-env', literal: false });
    expect(resolveSecret(`file:${join(dir, 's')}`)).toEqual({ value: 'from-file', literal: false });
    expect(resolveSecret('plain')).toEqual({ value: 'plain', literal: true });
    expect(() => resolveSecret('env:MISSING', {})).toThrow(/env:MISSING.*not set/);
    expect(() => resolveSecret(`file:${join(dir, 'nope')}`)).toThrow(/MCP_CONFIG_INVALID|ENOENT/);
  });
});
