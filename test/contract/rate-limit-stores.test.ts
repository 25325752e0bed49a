import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { describeRateLimitStoreConformance } from '../../src/testing/rate-limit-store.ts';
import { MemoryRateLimitStore } from '../../src/limits/memory-store.ts';
import { createRedisRateLimitStore } from '../../plugins/ratelimit-redis/index.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Deletes a test's keys from the shared Redis. */
export async function dropRedisKeys(prefix: string): Promise<void> {
  const r = new Redis(REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length) await r.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
}

describeRateLimitStoreConformance('memory (built in)', { create: (now) => ({ store: new MemoryRateLimitStore({ now }) }) });

describeRateLimitStoreConformance('ratelimit-redis', {
  create: (now) => {
    const keyPrefix = `test:rl:${randomBytes(6).toString('hex')}:`;
    const store = createRedisRateLimitStore({ url: REDIS_URL, keyPrefix, now, commandTimeoutMs: 5000 });
    return {
      store,
      close: async () => {
        await store.close();
        await dropRedisKeys(keyPrefix);
      },
    };
  },
});
