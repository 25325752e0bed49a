import { describe, expect, it } from 'vitest';
import type { Principal } from '../inference/types.ts';
import { AdmissionService } from './admission-service.ts';
import { admissionConfigSchema } from './config.ts';
import { parsePriority } from './priority.ts';
import { tenantOf } from './tenant.ts';

const p = (id: string, roles: string[], extra: Partial<Principal> = {}): Principal => ({ id, via: 'api-key', roles, ...extra });

describe('priorities and tenants', () => {
  it('parses names and numbers; anything else is MCP_VALIDATION_FAILED naming the path', () => {
    expect(parsePriority('critical', 'x')).toBe(0);
    expect(parsePriority(' LOW ', 'x')).toBe(3);
    expect(parsePriority('1', 'x')).toBe(1);
    expect(parsePriority(2, 'x')).toBe(2);
    for (const bad of ['urgent', '4', 7, -1, 1.5, '', null]) expect(() => parsePriority(bad, 'x-mcp-priority')).toThrow(/x-mcp-priority: one of critical/);
  });

  it('caps what a request asks for by its principal: the key’s own cap, else the best of its roles, else the default', () => {
    const config = admissionConfigSchema.parse({
      maxPriority: { default: 'normal', roles: { ops: 'high', admin: 'critical' }, principals: { 'batch-key': 'low', 'pager-key': 'critical' } },
    });
    const svc = new AdmissionService(config, { view: () => undefined });
    expect(svc.priorityOf({ priority: 0, principal: p('dev', ['developer']) })).toBe(2);
    expect(svc.priorityOf({ priority: 0, principal: p('op', ['developer', 'ops']) })).toBe(1);
    expect(svc.priorityOf({ priority: 0, principal: p('root', ['admin']) })).toBe(0);
    expect(svc.priorityOf({ priority: 0, principal: p('pager-key', ['developer']) })).toBe(0);
    expect(svc.priorityOf({ priority: 1, principal: p('batch-key', ['admin']) })).toBe(3);
    // Asking for less than the cap is always allowed; no ask is the default.
    expect(svc.priorityOf({ priority: 3, principal: p('root', ['admin']) })).toBe(3);
    expect(svc.priorityOf({ principal: p('root', ['admin']) })).toBe(2);
    expect(svc.priorityOf({ priority: 0 })).toBe(2);
  });

  it('a tenant is the principal, the API key, or the team claim', () => {
    const user = p('u1', [], { via: 'password', claims: { team: 'search' } });
    const key = p('k1', [], { claims: { team: 'search' } });
    expect(tenantOf({ tenantBy: 'principal', teamClaim: 'team' }, user)).toBe('u1');
    expect(tenantOf({ tenantBy: 'apiKey', teamClaim: 'team' }, key)).toBe('key:k1');
    expect(tenantOf({ tenantBy: 'apiKey', teamClaim: 'team' }, user)).toBe('u1');
    expect(tenantOf({ tenantBy: 'team', teamClaim: 'team' }, user)).toBe('team:search');
    expect(tenantOf({ tenantBy: 'team', teamClaim: 'org' }, user)).toBe('u1');
    expect(tenantOf({ tenantBy: 'team', teamClaim: 'team' }, undefined)).toBe('anonymous');
  });

  it('policies: model@version over model over defaults', () => {
    const config = admissionConfigSchema.parse({
      defaults: { maxQueueSize: 10 },
      models: { m: { maxConcurrentPerInstance: 4 }, 'm@v2': { timeoutAction: 'delay' } },
    });
    const svc = new AdmissionService(config, { view: () => undefined });
    expect(svc.policyOf('m', 'v2')).toMatchObject({ maxConcurrentPerInstance: 4, maxQueueSize: 10, timeoutAction: 'delay' });
    expect(svc.policyOf('m', 'v1')).toMatchObject({ maxConcurrentPerInstance: 4, timeoutAction: 'reject' });
    expect(svc.policyOf('other', 'v1')).toMatchObject({ maxConcurrentPerInstance: 0, maxQueueSize: 10 });
  });
});
