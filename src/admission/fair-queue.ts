/**
 * The waiting room of one admission queue: strict priority between levels (0 first), start-time
 * fair queuing (SFQ) between tenants within a level, and a `delayed` tier (Triton's DELAY: entries
 * whose queue timeout passed) served after everything else. Pure data structure: no timers, no I/O.
 *
 * SFQ: an entry gets the start tag max(V, tenant's last finish tag) and the tenant's finish tag
 * becomes start + 1/weight; the entry with the smallest start tag goes first and V becomes its
 * tag. A tenant sending 10× its share only queues behind itself: a newcomer of another tenant is
 * tagged at about V and passes its backlog.
 */

export interface QueueEntry {
  readonly tenant: string;
  readonly weight: number;
  /** Priority level, 0 (critical) first. */
  readonly level: number;
  /** SFQ start tag, set by push. */
  start: number;
  /** Where the entry is: waiting at its level, moved to the delayed tier, or out. */
  state: 'queued' | 'delayed' | 'out';
}

interface Lane<E> {
  entries: E[];
  head: number;
  /** Live (queued) entries. */
  count: number;
  lastFinish: number;
  weight: number;
}

class Level<E extends QueueEntry> {
  virtual = 0;
  count = 0;
  readonly lanes = new Map<string, Lane<E>>();
}

export class FairQueue<E extends QueueEntry> {
  private readonly levels: Array<Level<E>>;
  private delayed: E[] = [];
  private delayedHead = 0;
  private delayedCount = 0;

  constructor(levels: number) {
    this.levels = Array.from({ length: levels }, () => new Level<E>());
  }

  /** Entries waiting, delayed ones included. */
  get size(): number {
    let n = this.delayedCount;
    for (const l of this.levels) n += l.count;
    return n;
  }

  push(e: E): void {
    const level = this.levels[e.level]!;
    let lane = level.lanes.get(e.tenant);
    if (!lane) {
      lane = { entries: [], head: 0, count: 0, lastFinish: 0, weight: e.weight };
      level.lanes.set(e.tenant, lane);
    }
    e.start = Math.max(level.virtual, lane.lastFinish);
    lane.lastFinish = e.start + 1 / e.weight;
    lane.entries.push(e);
    lane.count++;
    level.count++;
    e.state = 'queued';
  }

  /** The next entry to serve (and takes it out), or undefined when none waits. */
  pop(): E | undefined {
    for (const level of this.levels) {
      if (level.count === 0) continue;
      let best: Lane<E> | undefined;
      let bestStart = Infinity;
      for (const lane of level.lanes.values()) {
        const h = this.headOf(lane);
        if (h && h.start < bestStart) {
          bestStart = h.start;
          best = lane;
        }
      }
      const e = best!.entries[best!.head]!;
      best!.head++;
      level.virtual = e.start;
      this.takeOut(level, best!, e);
      return e;
    }
    while (this.delayedHead < this.delayed.length) {
      const e = this.delayed[this.delayedHead++]!;
      if (e.state !== 'delayed') continue;
      this.delayedCount--;
      e.state = 'out';
      this.compactDelayed();
      return e;
    }
    return undefined;
  }

  /** Takes a waiting entry out (timed out, cancelled, displaced); nothing when it is out already. */
  remove(e: E): void {
    if (e.state === 'delayed') {
      e.state = 'out';
      this.delayedCount--;
      this.compactDelayed();
      return;
    }
    if (e.state !== 'queued') return;
    const level = this.levels[e.level]!;
    const lane = level.lanes.get(e.tenant)!;
    // The tenant's newest entry leaves: its tag goes back, so a displaced request costs the tenant nothing.
    if (lane.entries[lane.entries.length - 1] === e) {
      lane.entries.pop();
      lane.lastFinish = e.start;
    }
    this.takeOut(level, lane, e);
  }

  /** Moves a waiting entry to the delayed tier (served after every entry that has not timed out). */
  delay(e: E): void {
    if (e.state !== 'queued') return;
    this.remove(e);
    e.state = 'delayed';
    this.delayed.push(e);
    this.delayedCount++;
  }

  /** Waiting entries (not delayed) at this level or a more urgent one: those served before a newcomer at `level`. */
  ahead(level: number): number {
    let n = 0;
    for (let i = 0; i <= level && i < this.levels.length; i++) n += this.levels[i]!.count;
    return n;
  }

  /** Waiting entries per level (delayed ones not counted). */
  depthByLevel(): number[] {
    return this.levels.map((l) => l.count);
  }

  /**
   * The entry a full queue gives up first: a delayed one (oldest), else at the least urgent
   * non-empty level the newest entry of the tenant furthest over its share there (most entries per weight).
   */
  victim(): E | undefined {
    if (this.delayedCount > 0) {
      for (let i = this.delayedHead; i < this.delayed.length; i++) if (this.delayed[i]!.state === 'delayed') return this.delayed[i];
    }
    for (let i = this.levels.length - 1; i >= 0; i--) {
      const level = this.levels[i]!;
      if (level.count === 0) continue;
      let worst: Lane<E> | undefined;
      for (const lane of level.lanes.values()) if (lane.count > 0 && (!worst || lane.count / lane.weight > worst.count / worst.weight)) worst = lane;
      for (let j = worst!.entries.length - 1; j >= worst!.head; j--) if (worst!.entries[j]!.state === 'queued') return worst!.entries[j];
    }
    return undefined;
  }

  /** Entries per weight a tenant has waiting at a level (0 when none). */
  load(level: number, tenant: string): number {
    const lane = this.levels[level]?.lanes.get(tenant);
    return lane ? lane.count / lane.weight : 0;
  }

  private headOf(lane: Lane<E>): E | undefined {
    while (lane.head < lane.entries.length && lane.entries[lane.head]!.state !== 'queued') lane.head++;
    return lane.entries[lane.head];
  }

  private takeOut(level: Level<E>, lane: Lane<E>, e: E): void {
    e.state = 'out';
    lane.count--;
    level.count--;
    if (lane.count === 0) {
      lane.entries = [];
      lane.head = 0;
      // A tenant that is not backlogged keeps no credit: its lane goes once V has passed its last tag.
      if (lane.lastFinish <= level.virtual) level.lanes.delete(e.tenant);
    } else if (lane.head > 64 && lane.head * 2 > lane.entries.length) {
      lane.entries = lane.entries.slice(lane.head);
      lane.head = 0;
    }
    // A busy period ends: nobody waits at this level, so tags start over (bounded memory, no stale debts).
    if (level.count === 0) {
      level.lanes.clear();
      level.virtual = 0;
    }
  }

  private compactDelayed(): void {
    if (this.delayedCount === 0) {
      this.delayed = [];
      this.delayedHead = 0;
    } else if (this.delayedHead > 64 && this.delayedHead * 2 > this.delayed.length) {
      this.delayed = this.delayed.slice(this.delayedHead);
      this.delayedHead = 0;
    }
  }
}
