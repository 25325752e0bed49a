/**
 * A bounded cache whose entries expire at their own time: for verified credentials on the request
 * path (JWTs, introspection results). At most `maxEntries` entries; when full, the least recently
 * used one goes (a Map keeps insertion order; a hit moves the entry to the end).
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();

  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The value, while `until` (epoch ms) is in the future. */
  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    this.entries.delete(key);
    if (e.until <= this.now()) return undefined;
    this.entries.set(key, e);
    return e.value;
  }

  /** Keeps `value` until `until` (epoch ms); a past time or a zero-size cache keeps nothing. */
  set(key: string, value: V, until: number): void {
    if (this.maxEntries <= 0 || until <= this.now()) return;
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { value, until });
  }

  clear(): void {
    this.entries.clear();
  }
}
