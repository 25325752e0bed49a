import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheControl, cacheKey, isDeterministic } from '../../src/cache/key.ts';
import { MemoryStore } from '../../src/cache/memory-store.ts';
import { RedisStore } from '../../src/cache/redis-store.ts';
import type { InferenceInput } from '../../src/inference/types.ts';
import { startOwnRedis, type OwnRedis } from '../support/redis-server.ts';

const chat = (parameters: Record<string, unknown>, extra?: Record<string, unknown>) =>
  ({ task: 'chat', messages: [{ role: 'user', content: 'hi' }], parameters, ...(extra ? { extra } : {}) }) as InferenceInput;

describe('cache keys', () => {
  it('tells deterministic requests apart', () => {
    expect(isDeterministic({ task: 'tensor', tensors: [] } as unknown as InferenceInput)).toBe(true);
    expect(isDeterministic({ task: 'embed', texts: ['a'] } as InferenceInput)).toBe(true);
    expect(isDeterministic(chat({ temperature: 0 }))).toBe(true);
    expect(isDeterministic(chat({ temperature: 1.2, seed: 7 }))).toBe(true);
    expect(isDeterministic(chat({}))).toBe(false);
    expect(isDeterministic(chat({ temperature: 0.2 }))).toBe(false);
    expect(isDeterministic(chat({ temperature: 0 }, { do_sample: true }))).toBe(false);
  });

  it('is the same for the same input whatever the key order, and differs with any part', () => {
    const base = { model: 'm', version: 'v1', generation: 'g', scope: '', stream: false };
    const a = cacheKey({ ...base, input: chat({ temperature: 0, maxTokens: 5 }) });
    expect(cacheKey({ ...base, input: chat({ maxTokens: 5, temperature: 0 }) })).toBe(a);
    expect(a).toMatch(/^m:[0-9a-f]{64}$/);
    for (const change of [{ version: 'v2' }, { generation: 'h' }, { scope: 'p:x' }, { stream: true }, { input: chat({ temperature: 0, maxTokens: 6 }) }])
      expect(cacheKey({ ...base, input: chat({ temperature: 0, maxTokens: 5 }), ...change })).not.toBe(a);
  });

  it('reads cache-control directives', () => {
    expect(cacheControl({ 'cache-control': 'No-Cache' })).toEqual({ noCache: true, noStore: false });
    expect(cacheControl({ 'cache-control': 'max-age=0, no-store' })).toEqual({ noCache: true, noStore: true });
    expect(cacheControl({})).toEqual({ noCache: false, noStore: false });
  });
});

describe('memory store', () => {
  it('is bounded in bytes, evicting the least recently used first', async () => {
    const store = new MemoryStore(300);
    const v = 'x'.repeat(90); // 90 bytes + a 2-byte key
    await store.set('k1', v, 60_000);
    await store.set('k2', v, 60_000);
    await store.set('k3', v, 60_000);
    expect(await store.get('k1')).toBe(v); // k1 is now the most recent
    await store.set('k4', v, 60_000);
    expect(store.bytes).toBeLessThanOrEqual(300);
    expect(await store.get('k2')).toBeUndefined();
    expect(await store.get('k1')).toBe(v);
    expect(await store.get('k4')).toBe(v);
    await store.set('big', 'y'.repeat(400), 60_000);
    expect(await store.get('big')).toBeUndefined();
    expect(await store.purge('k')).toBe(3);
    expect(store.bytes).toBe(0);
  });

  it('expires entries after their TTL', async () => {
    let now = 1000;
    const store = new MemoryStore(10_000, () => now);
    await store.set('a', 'value', 500);
    expect(await store.get('a')).toBe('value');
    now += 501;
    expect(await store.get('a')).toBeUndefined();
    expect(store.bytes).toBe(0);
  });
});

describe('redis store', () => {
  let redis: OwnRedis;
  beforeAll(async () => {
    redis = await startOwnRedis();
  }, 20_000);
  afterAll(async () => {
    await redis?.stop();
  });

  it('sets with a TTL, reads, purges a prefix, and fails fast while Redis is down', async () => {
    const store = new RedisStore({ url: redis.url, keyPrefix: 'test:cache:', commandTimeoutMs: 500 });
    try {
      await store.set('m1:a', 'one', 60_000);
      await store.set('m1:b', 'two', 60_000);
      await store.set('m2:a', 'three', 80);
      expect(await store.get('m1:a')).toBe('one');
      expect(await store.purge('m1:')).toBe(2);
      expect(await store.get('m1:b')).toBeUndefined();
      await new Promise((r) => setTimeout(r, 200));
      expect(await store.get('m2:a')).toBeUndefined();
      await redis.stop();
      const started = Date.now();
      await expect(store.get('m1:a')).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await store.close();
      await redis.start();
    }
  });
});
