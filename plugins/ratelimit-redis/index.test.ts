import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { testPluginContext } from 'capibara-mcp/testing';
import plugin, { createRedisRateLimitStore, optionsSchema } from './index.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `test:rlplugin:${randomBytes(6).toString('hex')}:`;

describe('ratelimit-redis plugin', () => {
  const redis = new Redis(REDIS_URL);
  afterAll(async () => {
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it('options: defaults, and bounds that keep a dead Redis from holding requests', () => {
    expect(optionsSchema.parse({})).toEqual({ keyPrefix: 'mcp:rl:', commandTimeoutMs: 250, connectTimeoutMs: 1000, maxReconnectDelayMs: 1000 });
    expect(() => optionsSchema.parse({ url: 'not a url' })).toThrow();
    expect(() => optionsSchema.parse({ commandTimeoutMs: 60_000 })).toThrow();
    expect(() => optionsSchema.parse({ extra: 1 })).toThrow();
  });

  it('set up by the host, it connects only on first use, decides on Redis TIME, keeps keys under its prefix, and closes', async () => {
    const ctx = testPluginContext('shared-limits');
    const health: Array<() => unknown> = [];
    const store = await plugin.setup({ ...ctx, onHealth: (fn) => health.push(fn) }, optionsSchema.parse({ url: REDIS_URL, keyPrefix: PREFIX }));
    expect(await health[0]!()).toEqual({ ok: true, detail: 'not connected (the gateway applies limits.failurePolicy)' });
    const charge = { key: 'k', cost: 1, intervalMs: 60_000, burst: 2 };
    expect(await store.spend([charge])).toEqual([{ allowed: true, remaining: 1, retryAfterMs: 0, resetMs: 60_000 }]);
    await store.spend([charge]);
    const [refused] = await store.spend([charge]);
    expect(refused!.allowed).toBe(false);
    // Redis TIME moves on between calls: the wait is one interval, less the few ms since the first spend.
    expect(refused!.retryAfterMs).toBeGreaterThan(50_000);
    expect(refused!.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(await health[0]!()).toEqual({ ok: true, detail: 'connected' });
    const ttl = await redis.pttl(`${PREFIX}k`);
    expect(ttl).toBeGreaterThan(100_000);
    expect(ttl).toBeLessThanOrEqual(121_000);
    await ctx.close();
    await expect(store.spend([charge])).resolves.toBeDefined(); // a closed store reopens on use
    await (store as ReturnType<typeof createRedisRateLimitStore>).close();
  });

  it('an unreachable Redis fails fast, never hangs', async () => {
    const store = createRedisRateLimitStore({ url: 'redis://127.0.0.1:9', connectTimeoutMs: 300, commandTimeoutMs: 100 });
    const t0 = performance.now();
    await expect(store.spend([{ key: 'k', cost: 1, intervalMs: 1000, burst: 1 }])).rejects.toThrow();
    await expect(store.spend([{ key: 'k', cost: 1, intervalMs: 1000, burst: 1 }])).rejects.toThrow(/not ready/);
    expect(performance.now() - t0).toBeLessThan(5000);
    await store.close();
  });
});
