/**
 * This gateway replica's share of a model version's capacity (ready instances × maxConcurrentPerInstance
 * counts across the fleet): with N live replicas (src/db/replica-presence.ts) each admits at most
 * ⌊C/N⌋, plus one for C mod N of them, so the shares add up to C exactly. Which replicas get the extra
 * slot turns with the version (a hash of `model@version` shifts the rank), so one replica does not get
 * every remainder. Never less than 1 while C > 0: with fewer slots than replicas the fleet may then
 * run up to N at once. One replica (the embedded default): the share is the capacity, and costs one comparison.
 */
export class ReplicaShare {
  /** Live gateway replicas, this one included (1 until presence says otherwise). */
  replicas = 1;
  /** This replica's place among them (ids sorted), 0-based. */
  rank = 0;

  /** Called when replicas come or go. */
  set(replicas: number, rank: number): void {
    this.replicas = Math.max(1, replicas);
    this.rank = Math.min(Math.max(0, rank), this.replicas - 1);
  }

  /** This replica's slots of `capacity` for the version whose offset is `offset` (versionOffset). */
  of(capacity: number, offset: number): number {
    const n = this.replicas;
    if (n === 1 || capacity === 0 || !Number.isFinite(capacity)) return capacity;
    const extra = (this.rank + offset) % n < capacity % n ? 1 : 0;
    return Math.max(1, Math.floor(capacity / n) + extra);
  }
}

/** A stable offset per model version (FNV-1a of `model@version`): every replica computes the same. */
export function versionOffset(model: string, version: string): number {
  const s = `${model}@${version}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
