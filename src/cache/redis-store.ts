import { Redis } from 'ioredis';
import type { CacheStore } from './store.ts';

export interface RedisStoreOptions {
  url: string;
  keyPrefix: string;
  /** A command without an answer after this long fails (the caller treats it as a miss), ms. */
  commandTimeoutMs: number;
  onError?: (err: Error) => void;
}

/**
 * Cached answers in Redis, shared by every gateway replica: `SET key value PX ttl`, `GET key`.
 * Commands fail at once while disconnected (no offline queue): a dead Redis makes every request a
 * miss that goes on uncached, never a wait.
 */
export class RedisStore implements CacheStore {
  readonly kind = 'redis';
  private readonly client: Redis;
  private readonly connecting: Promise<void>;
  private readonly keyPrefix: string;

  constructor(o: RedisStoreOptions) {
    this.keyPrefix = o.keyPrefix;
    this.client = new Redis(o.url, {
      lazyConnect: true,
      keyPrefix: o.keyPrefix,
      commandTimeout: o.commandTimeoutMs,
      connectTimeout: Math.max(1000, o.commandTimeoutMs),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (times) => Math.min(times * 50, 1000),
    });
    this.client.on('error', (err: Error) => o.onError?.(err));
    this.connecting = this.client.connect().catch(() => {
      /* reported by 'error'; the client keeps reconnecting */
    });
  }

  private async ready(): Promise<Redis> {
    if (this.client.status !== 'ready') await this.connecting;
    return this.client;
  }

  async get(key: string): Promise<string | undefined> {
    return (await (await this.ready()).get(key)) ?? undefined;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await (await this.ready()).set(key, value, 'PX', Math.max(1, Math.round(ttlMs)));
  }

  /** SCAN for the prefix (keys are `<model>:<hash>`; model ids hold no glob characters) and DEL what it finds, in batches. */
  async purge(prefix: string): Promise<number> {
    const c = await this.ready();
    let n = 0;
    let cursor = '0';
    do {
      const [next, keys] = await c.scan(cursor, 'MATCH', `${this.keyPrefix}${prefix}*`, 'COUNT', 500);
      cursor = next;
      // DEL adds the client's keyPrefix itself: give it the keys without it.
      if (keys.length) n += await c.del(...keys.map((k) => k.slice(this.keyPrefix.length)));
    } while (cursor !== '0');
    return n;
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
