import type { CacheStore } from './store.ts';

interface Entry {
  value: string;
  bytes: number;
  expiresAt: number;
}

/**
 * An LRU of cached answers in this process, bounded in bytes (a value's UTF-8 length plus its key's):
 * a Map in recency order (oldest first); each get moves the entry to the end, each set evicts from
 * the front until the total fits. Expired entries are dropped when read or evicted.
 */
export class MemoryStore implements CacheStore {
  readonly kind = 'memory';
  private readonly entries = new Map<string, Entry>();
  private total = 0;

  constructor(
    private readonly maxBytes: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Bytes held now. */
  get bytes(): number {
    return this.total;
  }

  get size(): number {
    return this.entries.size;
  }

  async get(key: string): Promise<string | undefined> {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.entries.delete(key);
    if (e.expiresAt <= this.now()) {
      this.total -= e.bytes;
      return undefined;
    }
    this.entries.set(key, e);
    return e.value;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    const bytes = Buffer.byteLength(value) + key.length;
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.total -= old.bytes;
    }
    if (bytes > this.maxBytes) return;
    for (const [k, e] of this.entries) {
      if (this.total + bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.total -= e.bytes;
    }
    this.entries.set(key, { value, bytes, expiresAt: this.now() + ttlMs });
    this.total += bytes;
  }

  async purge(prefix: string): Promise<number> {
    let n = 0;
    for (const [k, e] of this.entries) {
      if (!k.startsWith(prefix)) continue;
      this.entries.delete(k);
      this.total -= e.bytes;
      n++;
    }
    return n;
  }

  async close(): Promise<void> {
    this.entries.clear();
    this.total = 0;
  }
}
