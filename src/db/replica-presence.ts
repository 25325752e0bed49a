/**
 * Which gateway replicas are alive, for state that must hold across them (admission's per-instance
 * concurrency limits, src/admission/replica-share.ts). Each replica keeps a presence row in the
 * shared database — a lease of its own, `gateway-replica:<id>` in the lease table (./lease.ts) —
 * renewed every `beatMs` with an expiry `expiryMs` ahead, in the database's time (replica clocks do
 * not matter), and reads the unexpired rows at each beat. A replica that stops deletes its row; one
 * that dies drops out once its row expires (its share of the capacities then returns to the others).
 * Joining and leaving are also announced on the event bus, so the others re-read at once rather
 * than at their next beat. Nothing here runs on the request path: readers get the last list read.
 * Not started on the embedded database (PGlite: one process, one replica).
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { Gauge, type Registry } from 'prom-client';
import { sql } from 'drizzle-orm';
import type { EventBus } from '../events/bus.ts';
import type { Db } from './client.ts';
import { rowsOf } from './lease.ts';

const PREFIX = 'gateway-replica:';

export interface PresenceOptions {
  beatMs: number;
  expiryMs: number;
  /** This replica's id (default host:pid:random); replicas are ranked by id. */
  id?: string;
  events?: EventBus;
  registry?: Registry;
  onError?: (err: unknown) => void;
}

export class ReplicaPresence {
  readonly id: string;
  private ids: readonly string[];
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(live: readonly string[]) => void>();
  private readonly watch = new AbortController();
  private beating: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly opts: PresenceOptions,
  ) {
    this.id = opts.id ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.ids = [this.id];
    if (opts.registry) {
      const self = this;
      new Gauge({
        name: 'mcp_gateway_replicas',
        help: 'Live gateway replicas this one sees (presence rows not expired), itself included.',
        registers: [opts.registry],
        collect() {
          this.set(self.ids.length);
        },
      });
    }
  }

  /** Live replica ids, sorted (this one always among them). */
  get live(): readonly string[] {
    return this.ids;
  }

  /** This replica's place among the live ones (sorted ids), 0-based. */
  get rank(): number {
    return this.ids.indexOf(this.id);
  }

  /** Calls `listener` with the live ids each time they change. */
  onChange(listener: (live: readonly string[]) => void): void {
    this.listeners.add(listener);
  }

  /** Writes this replica's row and reads the others, then keeps beating; announces the join on the bus. */
  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => void this.beat(), this.opts.beatMs);
    this.timer.unref();
    const events = this.opts.events;
    if (events) {
      void (async () => {
        for await (const e of events.subscribe('replicaPresence', this.watch.signal)) if (e.id !== this.id) void this.beat();
      })();
      events.onReconnect?.(() => void this.beat(), this.watch.signal);
      events.publish('replicaPresence', { id: this.id, state: 'joined', at: new Date() });
    }
  }

  /** Renews this replica's row and re-reads the live ones (one at a time: a beat asked for during one waits for it). */
  beat(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const run = (this.beating ?? Promise.resolve()).then(() => this.renew());
    this.beating = run;
    return run;
  }

  /** Stops beating and deletes this replica's row: the others take its share back at once (bus) or at their next beat. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.watch.abort();
    await this.beating?.catch(() => {});
    try {
      await this.db.execute(sql`delete from alert_leases where name = ${PREFIX + this.id}`);
      this.opts.events?.publish('replicaPresence', { id: this.id, state: 'left', at: new Date() });
    } catch (err) {
      this.opts.onError?.(err);
    }
  }

  private async renew(): Promise<void> {
    if (this.closed) return;
    try {
      const name = PREFIX + this.id;
      const secs = this.opts.expiryMs / 1000;
      await this.db.execute(sql`
        insert into alert_leases (name, holder, epoch, expires_at)
        values (${name}, ${this.id}, 1, now() + make_interval(secs => ${secs}))
        on conflict (name) do update set expires_at = excluded.expires_at`);
      const rows = rowsOf<{ holder: string }>(
        await this.db.execute(sql`
          with gone as (delete from alert_leases where name like ${PREFIX + '%'} and expires_at < now() - interval '1 minute')
          select holder from alert_leases where name like ${PREFIX + '%'} and expires_at > now()`),
      );
      if (this.closed) return;
      // A database that cannot be read keeps the last list (see the catch): shares do not grow on an outage.
      this.update(rows.map((r) => r.holder));
    } catch (err) {
      this.opts.onError?.(err);
    }
  }

  private update(holders: string[]): void {
    const ids = [...new Set([...holders, this.id])].sort();
    if (ids.length === this.ids.length && ids.every((id, i) => id === this.ids[i])) return;
    this.ids = ids;
    for (const l of this.listeners) l(ids);
  }
}
