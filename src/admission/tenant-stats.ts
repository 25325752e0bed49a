/** What one tenant did on one admission queue (a bounded set of tenants per queue; the rest share `other`). */
export class TenantStats {
  queued = 0;
  inFlight = 0;
  admitted = 0;
  refused = 0;
  /** Moving average of the queue wait of its admitted requests, ms. */
  waitMs = 0;
  constructor(
    /** The tenant id, or `other`. */
    readonly label: string,
    /** Records one admitted request's wait, seconds (the metrics histogram series); undefined without metrics. */
    readonly observeWait: ((seconds: number) => void) | undefined,
  ) {}

  granted(waitedMs: number): void {
    this.admitted++;
    this.inFlight++;
    this.waitMs += (waitedMs - this.waitMs) * 0.1;
    this.observeWait?.(waitedMs / 1000);
  }
}

/** Tenant → stats, at most `max` own entries; further tenants share the `other` entry. */
export class TenantTable {
  private readonly own = new Map<string, TenantStats>();
  readonly other: TenantStats;

  constructor(
    private readonly max: number,
    private readonly make: (label: string) => TenantStats,
  ) {
    this.other = make('other');
  }

  of(tenant: string): TenantStats {
    const s = this.own.get(tenant);
    if (s) return s;
    if (this.own.size >= this.max) return this.other;
    const created = this.make(tenant);
    this.own.set(tenant, created);
    return created;
  }

  all(): TenantStats[] {
    const list = [...this.own.values()];
    if (this.other.admitted || this.other.refused || this.other.queued || this.other.inFlight) list.push(this.other);
    return list;
  }
}
