import { describe, expect, it } from 'vitest';
import { limitRuleSchema } from '../../src/limits/config.ts';
import { compileRule, ipBucket } from '../../src/limits/rules.ts';

const rule = (r: Record<string, unknown>) => compileRule(limitRuleSchema.parse({ name: 'r', requests: 10, period: '1m', ...r }));
const alice = { id: 'alice', via: 'password', roles: ['developer'] };
const key = { id: 'key-1', via: 'api-key', roles: ['viewer'] };

describe('limit rules: buckets and matching', () => {
  it('one bucket per scope value, combinations per pair', () => {
    expect(rule({ scope: 'principal' }).keyOf({ principal: alice, entry: 'rest' })).toBe('r:p=alice');
    expect(rule({ scope: ['principal', 'model'] }).keyOf({ principal: alice, model: 'm/1', entry: 'rest' })).toBe('r:p=alice,m=m%2F1');
    expect(rule({ scope: 'global' }).keyOf({ entry: 'rest' })).toBe('r:*');
    expect(rule({ scope: 'ip' }).keyOf({ ip: '::ffff:10.1.2.3', entry: 'rest' })).toBe('r:ip=10.1.2.3');
  });

  it('apiKey applies to API-key principals only; anonymous principals count per address', () => {
    expect(rule({ scope: 'apiKey' }).keyOf({ principal: key, entry: 'rest' })).toBe('r:k=key-1');
    expect(rule({ scope: 'apiKey' }).keyOf({ principal: alice, entry: 'rest' })).toBeUndefined();
    expect(rule({ scope: 'principal' }).keyOf({ principal: { id: 'anonymous', via: 'none', roles: ['admin'] }, ip: '10.0.0.9', entry: 'rest' })).toBe(
      'r:anon=10.0.0.9',
    );
    expect(rule({ scope: 'principal' }).keyOf({ entry: 'rest' })).toBe('r:anon=unknown');
  });

  it('IPv6 counts per /64; junk is one "unknown" bucket; long ids are hashed into a bounded key', () => {
    expect(ipBucket('2001:db8:a:b:1:2:3:4')).toBe('2001:db8:a:b::/64');
    expect(ipBucket('2001:db8:a:b::ffff')).toBe('2001:db8:a:b::/64');
    expect(ipBucket('not-an-ip')).toBe('unknown');
    const k = rule({ scope: 'principal' }).keyOf({ principal: { ...alice, id: 'x'.repeat(5000) }, entry: 'rest' })!;
    expect(k.length).toBeLessThanOrEqual(120);
  });

  it('match: roles (any), models and entries must all hold', () => {
    const r = rule({ scope: 'principal', match: { roles: ['developer', 'operator'], models: ['m'], entries: ['openai'] } });
    expect(r.matches({ principal: alice, model: 'm', entry: 'openai' })).toBe(true);
    expect(r.matches({ principal: alice, model: 'm', entry: 'rest' })).toBe(false);
    expect(r.matches({ principal: alice, model: 'other', entry: 'openai' })).toBe(false);
    expect(r.matches({ principal: key, model: 'm', entry: 'openai' })).toBe(false);
    expect(r.matches({ model: 'm', entry: 'openai' })).toBe(false);
  });

  it('GCRA shape: N per period → one unit every period / N, burst N unless given', () => {
    expect(rule({ scope: 'ip', requests: 100, period: '1m' }).requests).toEqual({ intervalMs: 600, burst: 100, quota: 100 });
    expect(rule({ scope: 'ip', requests: 100, period: '1m', burst: 5, tokens: 1_000_000 }).requests!.burst).toBe(5);
  });
});
