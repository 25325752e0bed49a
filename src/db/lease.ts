/**
 * A leader lease in the database, shared by everything that must run on one gateway replica at a
 * time (the alert evaluator `alert-evaluator`, the scaling controller `scaling-controller`; the table
 * keeps its first user's name, alert_leases): one row per lease name with its holder, expiry and epoch. A
 * replica takes the lease when it has expired (or renews its own) in one atomic statement; the epoch
 * grows whenever the holder changes, and writers check it (fencing) so a deposed leader's late
 * writes are refused. Times are the database's, so replica clocks do not matter. Shared by every
 * run-once job (the alert evaluator, the placement reconciler), each under its own lease name.
 * The table also holds the replicas' presence rows (`gateway-replica:<id>`, owned by ./replica-presence.ts).
 */
import { sql } from 'drizzle-orm';
import type { Db } from './client.ts';

export function rowsOf<T>(result: unknown): T[] {
  return ((result as { rows?: T[] }).rows ?? (result as T[])) as T[];
}

export interface LeaseGrant {
  epoch: number;
  /** Local time (ms) after which this replica no longer counts on the lease. */
  validUntil: number;
}

export class LeaderLease {
  constructor(
    private readonly db: Db,
    readonly name: string,
    readonly holder: string,
    private readonly ttlMs: number,
  ) {}

  /** Takes or renews the lease; undefined when another replica holds it. */
  async acquire(): Promise<LeaseGrant | undefined> {
    const asked = Date.now();
    const rows = rowsOf<{ epoch: number }>(
      await this.db.execute(sql`
        insert into alert_leases (name, holder, epoch, expires_at)
        values (${this.name}, ${this.holder}, 1, now() + make_interval(secs => ${this.ttlMs / 1000}))
        on conflict (name) do update set
          epoch = case when alert_leases.holder = excluded.holder and alert_leases.expires_at >= now() then alert_leases.epoch else alert_leases.epoch + 1 end,
          holder = excluded.holder,
          expires_at = excluded.expires_at
        where alert_leases.expires_at < now() or alert_leases.holder = excluded.holder
        returning epoch`),
    );
    if (rows.length === 0) return undefined;
    // Counted from before the statement was sent: the local view never outlives the database's.
    return { epoch: Number(rows[0]!.epoch), validUntil: asked + this.ttlMs };
  }

  /** Gives the lease up (at shutdown) so another replica takes over at once. */
  async release(): Promise<void> {
    await this.db.execute(sql`update alert_leases set expires_at = now() - interval '1 second' where name = ${this.name} and holder = ${this.holder}`);
  }

  /**
   * Inside a transaction: locks the lease row and checks it is still ours at `epoch` and unexpired.
   * The lock makes a takeover wait for the transaction, so nothing is written after a takeover by the old epoch.
   */
  async fence(tx: Pick<Db, 'execute'>, epoch: number): Promise<boolean> {
    const rows = rowsOf<{ epoch: number }>(
      await tx.execute(
        sql`select epoch from alert_leases where name = ${this.name} and holder = ${this.holder} and epoch = ${epoch} and expires_at > now() for update`,
      ),
    );
    return rows.length === 1;
  }
}

/**
 * Keeps a lease: tries to take or renew it every `renewMs` and says whether this replica leads now
 * (a grant not yet past its local `validUntil`). For loops that act only on the leader.
 */
export class LeaseKeeper {
  private grant: LeaseGrant | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly lease: LeaderLease,
    private readonly renewMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Takes the lease now if free, then keeps renewing it. */
  async start(): Promise<void> {
    await this.renew();
    this.timer = setInterval(() => void this.renew(), this.renewMs);
    this.timer.unref();
  }

  /** The current grant while this replica leads. */
  leading(): LeaseGrant | undefined {
    return this.grant && Date.now() < this.grant.validUntil ? this.grant : undefined;
  }

  async renew(): Promise<LeaseGrant | undefined> {
    try {
      this.grant = await this.lease.acquire();
    } catch (err) {
      this.onError(err);
    }
    return this.leading();
  }

  /** Stops renewing and hands the lease on. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    if (this.grant) await this.lease.release().catch(() => {});
    this.grant = undefined;
  }
}
