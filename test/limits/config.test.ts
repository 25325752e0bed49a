import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';

const limits = (l: unknown) => configSchema.safeParse({ limits: l });

describe('limits config', () => {
  it('defaults: memory store, fail closed, no rules, 10 failed authentications a minute per IP', () => {
    expect(configSchema.parse({}).limits).toEqual({
      store: 'memory',
      failurePolicy: 'closed',
      rules: [],
      failedAuth: { requests: 10, period: 60_000 },
      tokenEstimate: { charsPerToken: 4, messageOverheadTokens: 4, defaultCompletionTokens: 512, maxReservation: 65_536 },
    });
  });

  it('periods from 1s to a month, as strings or ms; scopes normalised', () => {
    const parsed = limits({
      rules: [
        { name: 'a', scope: 'apiKey', requests: 100, period: '1m' },
        { name: 'b', scope: ['model', 'principal'], tokens: 1_000_000, period: '30d' },
        { name: 'c', scope: 'ip', requests: 5, period: 1000, burst: 10 },
        { name: 'd', scope: 'global', requests: 5, period: '1h', on: 'all', match: { entries: ['rest'] } },
      ],
    });
    expect(parsed.success).toBe(true);
    const rules = parsed.data!.limits.rules;
    expect(rules.map((r) => r.period)).toEqual([60_000, 2_592_000_000, 1000, 3_600_000]);
    expect(rules[1]!.scope).toEqual(['principal', 'model']);
  });

  it('refuses what cannot work, naming the path', () => {
    const bad = [
      { rules: [{ name: 'x', scope: 'ip', requests: 1, period: '500ms' }] }, // under 1 s
      { rules: [{ name: 'x', scope: 'ip', requests: 1, period: '40d' }] }, // over a month
      { rules: [{ name: 'x', scope: 'ip', period: '1m' }] }, // neither requests nor tokens
      { rules: [{ name: 'x', scope: 'user', requests: 1, period: '1m' }] },
      { rules: [{ name: 'x', scope: 'ip', tokens: 1, period: '1m', on: 'all' }] },
      { rules: [{ name: 'failed-auth', scope: 'ip', requests: 1, period: '1m' }] },
      {
        rules: [
          { name: 'x', scope: 'ip', requests: 1, period: '1m' },
          { name: 'x', scope: 'ip', requests: 2, period: '1m' },
        ],
      },
      { failurePolicy: 'maybe' },
      { store: '' },
    ];
    for (const l of bad) {
      const r = limits(l);
      expect(r.success, JSON.stringify(l)).toBe(false);
      expect(r.error!.issues[0]!.path[0]).toBe('limits');
    }
  });
});

describe('limits.store at boot', () => {
  it('a store that is not a configured rateLimitStore plugin stops the boot with MCP_CONFIG_INVALID', async () => {
    const { startTestGateway } = await import('../../src/testing/gateway.ts');
    await expect(startTestGateway({ limits: { store: 'nope' } })).rejects.toMatchObject({
      code: 'MCP_CONFIG_INVALID',
      message: expect.stringContaining('limits.store: no rateLimitStore plugin named "nope" (memory, or one of: ratelimit-redis)'),
    });
  }, 60_000);
});
