import { randomBytes } from 'node:crypto';
import { describeRateLimitStoreConformance } from '../../src/testing/rate-limit-store.ts';
import { MemoryRateLimitStore } from '../../src/limits/memory-store.ts';
import { createRedisRateLimitStore } from '../../plugins/ratelimit-redis/index.ts';
import { REDIS_URL, dropRedisKeys } from '../support/redis.ts';

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
