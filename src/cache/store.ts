/** Where cached answers live: this process (MemoryStore) or Redis, shared by the gateway replicas (RedisStore). */
export interface CacheStore {
  readonly kind: 'memory' | 'redis';
  /** The value, or undefined when absent or expired; a store that cannot answer throws (the request goes on uncached). */
  get(key: string): Promise<string | undefined>;
  /** Keeps the value for ttlMs. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /** Drops every value whose key starts with `prefix` (a model's answers); how many. */
  purge(prefix: string): Promise<number>;
  close(): Promise<void>;
}
