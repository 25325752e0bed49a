/**
 * Evaluates the alert rules on the metrics tick, on one replica at a time (the holder of the
 * `alert-evaluator` lease), and keeps every alert's state in the database so it survives kill -9
 * and restart. Each state change is written with its fencing epoch, its history row and, when it
 * notifies (firing, resolved), an outbox row, all in one transaction; the outbox is then delivered
 * through the alert dispatcher and marked delivered. A new leader delivers what is left undelivered.
 * Firing alerts are sent again every `resendFiringMs` (Alertmanager resolves alerts it stops hearing about).
 */
import { logBackgroundFailure } from '../db/storage-errors.ts';
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { and, asc, eq, inArray, isNull, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/client.ts';
import { McpError } from '../errors.ts';
import { alertInstances, alertOutbox, alertTransitions } from '../db/schema.ts';
import type { MetricSource } from '../monitoring/metric-source.ts';
import type { Alert } from '../plugin/contract.ts';
import { alertToJson, type AlertJson } from '../sdk/alert-delivery.ts';
import { evaluateRule, labelKey } from './evaluate.ts';
import { LeaderLease, type LeaseGrant } from '../db/lease.ts';
import { AlertRuleStore } from './rule-store.ts';
import { ruleWindow, type AlertEvaluationConfig, type AlertRule } from './rules.ts';

export type AlertState = 'inactive' | 'pending' | 'firing' | 'resolved';
export type InstanceRow = typeof alertInstances.$inferSelect;

/** Where notifications go (the AlertDispatcher). */
export interface AlertNotifier {
  notify(alert: Alert): void;
  idle(): Promise<void>;
}

export interface AlertEvent {
  alertId: string;
  rule: string;
  from: AlertState;
  to: AlertState;
  seq: number;
  at: Date;
}

export const LEASE_NAME = 'alert-evaluator';

/** The next state of one alert given whether its condition holds now. */
export function nextState(
  prev: Pick<InstanceRow, 'state' | 'activeSince'> | undefined,
  active: boolean,
  forMs: number,
  now: number,
): { state: AlertState; activeSince: Date | null } {
  const state = (prev?.state ?? 'inactive') as AlertState;
  if (!active) {
    if (state === 'firing') return { state: 'resolved', activeSince: null };
    if (state === 'pending') return { state: 'inactive', activeSince: null };
    return { state, activeSince: null };
  }
  const since = state === 'pending' || state === 'firing' ? (prev!.activeSince ?? new Date(now)) : new Date(now);
  if (state === 'firing') return { state, activeSince: since };
  return { state: now - since.getTime() >= forMs ? 'firing' : 'pending', activeSince: since };
}

export function alertId(rule: string, labels: Readonly<Record<string, string>>): string {
  return createHash('sha256')
    .update(`${rule}\0${labelKey(labels)}`)
    .digest('hex')
    .slice(0, 24);
}

export function toAlert(rule: AlertRule, row: InstanceRow): Alert {
  const labels = { ...rule.labels, ...row.labels, alertname: rule.name, severity: rule.severity };
  return {
    id: row.id,
    rule: rule.name,
    severity: rule.severity,
    state: row.state === 'resolved' ? 'resolved' : 'firing',
    summary: rule.summary ?? `${rule.name}: ${rule.metric} ${describe(rule)}`,
    labels,
    ...(row.value !== null ? { value: row.value } : {}),
    startsAt: row.firedAt ?? new Date(),
    ...(row.state === 'resolved' && row.resolvedAt ? { endsAt: row.resolvedAt } : {}),
  };
}

function describe(rule: AlertRule): string {
  switch (rule.kind) {
    case 'threshold':
      return `${rule.reduce} over ${rule.windowMs / 1000}s ${rule.op} ${rule.value}`;
    case 'rate':
      return `changes ${rule.op} ${rule.value}/s over ${rule.windowMs / 1000}s`;
    case 'burnRate':
      return `burns the ${rule.objective} SLO error budget too fast`;
    case 'anomaly':
      return `is anomalous (${rule.method}, sensitivity ${rule.sensitivity})`;
  }
}

function fromJson(j: AlertJson): Alert {
  const { endsAt, startsAt, ...rest } = j;
  return { ...rest, startsAt: new Date(startsAt), ...(endsAt ? { endsAt: new Date(endsAt) } : {}) };
}

export interface AlertEngineOptions {
  database: Database;
  /** Without one, this replica serves rules and alerts from the database but never evaluates. */
  source?: MetricSource;
  /** Every state change this replica writes (the gateway publishes them to all replicas: `alertEvents`). */
  publish?: (e: AlertEvent) => void;
  notifier: AlertNotifier;
  evaluation: AlertEvaluationConfig;
  rules: readonly AlertRule[];
  logger: Logger;
  /** Lease holder id (default host:pid:random). */
  holder?: string;
}

export class AlertEngine {
  readonly rules: AlertRuleStore;
  private readonly lease: LeaderLease;
  private grant: LeaseGrant | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private lastEval = 0;
  private evaluating: Promise<void> | undefined;
  private delivering: Promise<void> | undefined;
  private closed = false;
  private readonly lastSent = new Map<string, number>();
  private lastRules = new Map<string, AlertRule>();
  private readonly log: Logger;

  constructor(private readonly opts: AlertEngineOptions) {
    this.rules = new AlertRuleStore(opts.database.db, opts.evaluation.maxRules);
    this.lease = new LeaderLease(
      opts.database.db,
      LEASE_NAME,
      opts.holder ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`,
      opts.evaluation.leaseTtlMs,
    );
    this.log = opts.logger;
  }

  get isLeader(): boolean {
    return this.grant !== undefined && Date.now() < this.grant.validUntil;
  }

  get epoch(): number | undefined {
    return this.grant?.epoch;
  }

  /** Stores the config file's rules; then, with a metric source, takes part in the leader election and evaluates. */
  async start(): Promise<void> {
    if (this.opts.rules.length > this.opts.evaluation.maxRules) {
      throw new McpError('MCP_CONFIG_INVALID', `alerts.rules: at most ${this.opts.evaluation.maxRules} rules (alerts.evaluation.maxRules)`, {
        details: { paths: ['alerts.rules'] },
      });
    }
    await this.rules.syncConfig(this.opts.rules);
    const source = this.opts.source;
    if (!source) return;
    await this.renew();
    this.renewTimer = setInterval(() => void this.renew(), this.opts.evaluation.leaseRenewMs);
    this.renewTimer.unref();
    this.unsubscribe = source.onTick((at) => {
      if (at - this.lastEval < this.opts.evaluation.intervalMs || this.evaluating) return;
      this.lastEval = at;
      this.evaluating = this.tick(at)
        .catch((err) => logBackgroundFailure(this.log, err, {}, 'alert evaluation failed'))
        .finally(() => (this.evaluating = undefined));
    });
  }

  private async renew(): Promise<void> {
    if (this.closed) return;
    try {
      const before = this.grant?.epoch;
      this.grant = await this.lease.acquire();
      if (this.grant && this.grant.epoch !== before) {
        this.log.info({ epoch: this.grant.epoch }, 'alert evaluation: this replica is the leader');
        this.lastSent.clear();
        this.kickDelivery();
      } else if (!this.grant && before !== undefined) this.log.info('alert evaluation: leadership lost');
    } catch (err) {
      logBackgroundFailure(this.log, err, {}, 'alert lease renewal failed');
    }
  }

  /** One evaluation of every rule (leader only); resolves when its changes are stored. */
  async tick(now = Date.now()): Promise<void> {
    const grant = this.grant;
    const source = this.opts.source;
    if (!grant || !source || Date.now() >= grant.validUntil) return;
    const stored = await this.rules.list();
    const rows = await this.opts.database.db.select().from(alertInstances);
    const byId = new Map(rows.map((r) => [r.id, r]));
    const byRule = new Map<string, InstanceRow[]>();
    for (const r of rows) (byRule.get(r.rule) ?? byRule.set(r.rule, []).get(r.rule)!).push(r);
    const changes: Array<{ rule: AlertRule; prev: InstanceRow | undefined; next: InstanceRow }> = [];
    const { intervalMs, maxAlertsPerRule } = this.opts.evaluation;
    const ruleNames = new Set<string>();
    for (const { rule } of stored) {
      ruleNames.add(rule.name);
      const { windowMs, stepMs } = ruleWindow(rule, intervalMs);
      const series = source.range({ metric: rule.metric, labels: rule.match }, windowMs, stepMs);
      const verdicts = evaluateRule(rule, series, now);
      const seen = new Set<string>();
      let count = 0;
      for (const v of verdicts) {
        const id = alertId(rule.name, v.labels);
        seen.add(id);
        const prev = byId.get(id);
        if (!prev && (!v.active || ++count > maxAlertsPerRule)) continue;
        this.step(rule, id, v.labels, prev, v.active, v.value, now, grant.epoch, changes);
      }
      // A series that went away no longer holds its condition.
      for (const prev of byRule.get(rule.name) ?? [])
        if (!seen.has(prev.id)) this.step(rule, prev.id, prev.labels, prev, false, prev.value ?? undefined, now, grant.epoch, changes);
    }
    // A deleted rule's alerts resolve (firing) or go inactive (pending); its severity and labels are no longer known.
    for (const [name, list] of byRule) {
      if (ruleNames.has(name)) continue;
      const gone = {
        ...this.lastRules.get(name),
        name,
        kind: 'threshold',
        metric: '',
        severity: this.lastRules.get(name)?.severity ?? 'warning',
        labels: this.lastRules.get(name)?.labels ?? {},
      } as AlertRule;
      for (const prev of list) this.step(gone, prev.id, prev.labels, prev, false, prev.value ?? undefined, now, grant.epoch, changes);
    }
    this.lastRules = new Map(stored.map((s) => [s.rule.name, s.rule]));
    if (changes.length > 0) await this.store(changes, grant.epoch, now);
    await this.resend(stored, rows, now, ruleNames);
    this.kickDelivery();
  }

  private step(
    rule: AlertRule,
    id: string,
    labels: Record<string, string>,
    prev: InstanceRow | undefined,
    active: boolean,
    value: number | undefined,
    now: number,
    epoch: number,
    changes: Array<{ rule: AlertRule; prev: InstanceRow | undefined; next: InstanceRow }>,
  ): void {
    const n = nextState(prev, active, rule.forMs, now);
    const state = (prev?.state ?? 'inactive') as AlertState;
    if (n.state === state) return;
    const at = new Date(now);
    const silenced = prev?.silencedUntil ? prev.silencedUntil.getTime() > now : false;
    const next: InstanceRow = {
      id,
      rule: rule.name,
      labels,
      state: n.state,
      seq: (prev?.seq ?? 0) + 1,
      value: value ?? null,
      activeSince: n.activeSince,
      firedAt: n.state === 'firing' ? at : (prev?.firedAt ?? null),
      resolvedAt: n.state === 'resolved' ? at : null,
      notified: n.state === 'firing' ? !silenced : n.state === 'resolved' ? (prev?.notified ?? false) : false,
      silencedUntil: prev?.silencedUntil ?? null,
      acknowledgedBy: n.state === 'firing' || n.state === 'pending' ? null : (prev?.acknowledgedBy ?? null),
      acknowledgedAt: n.state === 'firing' || n.state === 'pending' ? null : (prev?.acknowledgedAt ?? null),
      epoch,
      updatedAt: at,
    };
    changes.push({ rule, prev, next });
  }

  /** Writes the changes, their history and their notifications in one fenced transaction. */
  private async store(changes: Array<{ rule: AlertRule; prev: InstanceRow | undefined; next: InstanceRow }>, epoch: number, now: number): Promise<void> {
    const ok = await this.opts.database.db.transaction(async (tx) => {
      if (!(await this.lease.fence(tx, epoch))) return false;
      for (const { rule, prev, next } of changes) {
        const { id: _id, ...set } = next;
        await tx
          .insert(alertInstances)
          .values(next)
          .onConflictDoUpdate({ target: alertInstances.id, set, setWhere: sql`${alertInstances.epoch} <= ${epoch}` });
        await tx.insert(alertTransitions).values({
          alertId: next.id,
          seq: next.seq,
          rule: rule.name,
          fromState: prev?.state ?? 'inactive',
          toState: next.state,
          value: next.value,
          epoch,
        });
        const notifies = (next.state === 'firing' || next.state === 'resolved') && next.notified;
        if (notifies)
          await tx
            .insert(alertOutbox)
            .values({ alertId: next.id, seq: next.seq, alert: alertToJson(toAlert(rule, next)) as unknown as Record<string, unknown> });
      }
      return true;
    });
    if (!ok) {
      this.log.warn({ epoch }, 'alert evaluation: lease lost; changes not written');
      this.grant = undefined;
      return;
    }
    for (const { rule, prev, next } of changes) {
      if (next.state === 'firing') this.lastSent.set(next.id, now);
      const e: AlertEvent = {
        alertId: next.id,
        rule: rule.name,
        from: (prev?.state ?? 'inactive') as AlertState,
        to: next.state as AlertState,
        seq: next.seq,
        at: new Date(now),
      };
      this.opts.publish?.(e);
    }
  }

  /** Firing, notified, unsilenced alerts not sent for resendFiringMs are sent again (not through the outbox: a lost repeat is harmless). */
  private async resend(stored: Array<{ rule: AlertRule }>, rows: InstanceRow[], now: number, ruleNames: Set<string>): Promise<void> {
    const every = this.opts.evaluation.resendFiringMs;
    if (every === 0) return;
    const rules = new Map(stored.map((s) => [s.rule.name, s.rule]));
    for (const row of rows) {
      if (row.state !== 'firing' || !row.notified || !ruleNames.has(row.rule)) continue;
      if (row.silencedUntil && row.silencedUntil.getTime() > now) continue;
      const last = this.lastSent.get(row.id) ?? row.firedAt?.getTime() ?? now;
      if (now - last < every) {
        if (!this.lastSent.has(row.id)) this.lastSent.set(row.id, last);
        continue;
      }
      this.lastSent.set(row.id, now);
      this.opts.notifier.notify(toAlert(rules.get(row.rule)!, row));
    }
  }

  private kickDelivery(): void {
    if (this.delivering || this.closed) return;
    this.delivering = this.deliverOutbox()
      .catch((err) => logBackgroundFailure(this.log, err, {}, 'alert outbox delivery failed'))
      .finally(() => (this.delivering = undefined));
  }

  /**
   * Delivers undelivered outbox rows in order while this replica leads: hands each to the dispatcher,
   * waits until the sinks took it (or dead-lettered it), then marks it delivered.
   */
  private async deliverOutbox(): Promise<void> {
    const db = this.opts.database.db;
    while (this.isLeader && !this.closed) {
      const batch = await db.select().from(alertOutbox).where(isNull(alertOutbox.deliveredAt)).orderBy(asc(alertOutbox.id)).limit(50);
      if (batch.length === 0) return;
      for (const row of batch) {
        if (!this.isLeader || this.closed) return;
        this.opts.notifier.notify(fromJson(row.alert as unknown as AlertJson));
        await this.opts.notifier.idle();
        await db.update(alertOutbox).set({ deliveredAt: new Date() }).where(eq(alertOutbox.id, row.id));
      }
    }
  }

  /** Undelivered outbox rows (tests, health). */
  async pendingNotifications(): Promise<number> {
    return (await this.opts.database.db.select({ id: alertOutbox.id }).from(alertOutbox).where(isNull(alertOutbox.deliveredAt))).length;
  }

  /** Alerts in the given states (all when none), by rule then id, at most `limit`. */
  async alerts(states?: readonly AlertState[], limit = 1_000): Promise<InstanceRow[]> {
    const db = this.opts.database.db;
    const where = states && states.length > 0 ? inArray(alertInstances.state, [...states]) : undefined;
    return db.select().from(alertInstances).where(where).orderBy(asc(alertInstances.rule), asc(alertInstances.id)).limit(limit);
  }

  async silence(id: string, untilMs: number): Promise<InstanceRow | undefined> {
    const [row] = await this.opts.database.db
      .update(alertInstances)
      .set({ silencedUntil: new Date(untilMs) })
      .where(eq(alertInstances.id, id))
      .returning();
    return row;
  }

  async acknowledge(id: string, by: string): Promise<InstanceRow | undefined> {
    const [row] = await this.opts.database.db
      .update(alertInstances)
      .set({ acknowledgedBy: by, acknowledgedAt: new Date() })
      .where(and(eq(alertInstances.id, id), eq(alertInstances.state, 'firing')))
      .returning();
    return row;
  }

  async history(id: string, limit = 100): Promise<Array<typeof alertTransitions.$inferSelect>> {
    return this.opts.database.db
      .select()
      .from(alertTransitions)
      .where(eq(alertTransitions.alertId, id))
      .orderBy(asc(alertTransitions.seq))
      .limit(Math.min(limit, 1000));
  }

  /** Stops evaluating; waits for the evaluation and delivery in progress; hands the lease on. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    clearInterval(this.renewTimer);
    await this.evaluating;
    // Delivery waits on the sinks (retries included): what is not marked delivered is sent by the next leader.
    await Promise.race([this.delivering, new Promise((r) => setTimeout(r, 2_000).unref())]);
    if (this.grant) await this.lease.release().catch(() => {});
    this.grant = undefined;
  }
}
