/**
 * One model version's admission queue: capacity = ready instances × maxConcurrentPerInstance,
 * followed as instances come and go, counted across the gateway replicas (this replica admits its
 * share of it, ./replica-share.ts); requests beyond the share wait in a FairQueue (priority levels,
 * SFQ across tenants) bounded in size and time, and are refused at once when their deadline
 * cannot be met. With no capacity (no ready instance) admission steps aside: the router decides
 * (it holds the request for a cold start, src/scaling/hold.ts, then comes back here for a slot).
 */
import { McpError, type ErrorCode } from '../errors.ts';
import type { AdmissionPolicy } from './config.ts';
import { FairQueue, type QueueEntry } from './fair-queue.ts';
import { PRIORITY_LEVELS } from './priority.ts';
import type { ReplicaShare } from './replica-share.ts';
import { PASS, type AdmissionTicket } from './ticket.ts';
import type { TenantStats, TenantTable } from './tenant-stats.ts';

export const OUTCOMES = ['admitted', 'queued', 'full', 'over_share', 'displaced', 'timeout', 'delayed', 'unmeetable', 'cancelled', 'shutdown'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface AdmitRequest {
  tenant: string;
  weight: number;
  /** Priority level, 0 (critical) first. */
  level: number;
  /** Absolute deadline, ms since epoch. */
  deadline: number;
  /** Aborts when the client goes away or the deadline passes: the request leaves the queue. */
  signal: AbortSignal;
  /** The request's own queue timeout, ms (at most the policy's). */
  queueTimeoutMs?: number;
}

/** How often a queue with waiters re-reads its capacity (instances becoming ready need no release to be used). */
const POLL_MS = 20;
/** Service-time samples before the wait estimate is trusted for deadline shedding. */
const MIN_SAMPLES = 5;

interface Waiter extends QueueEntry {
  readonly stats: TenantStats;
  readonly enqueuedAt: number;
  readonly signal: AbortSignal;
  resolve(t: AdmissionTicket): void;
  reject(e: unknown): void;
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;
}

class Slot implements AdmissionTicket {
  private done = false;
  constructor(
    private readonly queue: ModelQueue,
    readonly stats: TenantStats,
    readonly grantedAt: number,
  ) {}
  release(): void {
    if (this.done) return;
    this.done = true;
    this.queue.released(this);
  }
}

export interface QueueSnapshot {
  model: string;
  version: string;
  /** Requests that may run at once across the fleet (ready instances × maxConcurrentPerInstance); null without a limit (maxConcurrentPerInstance 0) and a ready instance. */
  capacity: number | null;
  /** Of `capacity`, what this gateway replica may run at once (its share); null without a limit. */
  replicaCapacity: number | null;
  /** Live gateway replicas the capacity is shared among (this one included). */
  replicas: number;
  inFlight: number;
  queued: number;
  queuedByPriority: number[];
  maxConcurrentPerInstance: number;
  maxQueueSize: number;
  /** Moving average of how long a request holds its slot, ms (undefined before the first). */
  serviceMs: number | undefined;
  /** What a normal-priority newcomer would wait now, ms (0 when a slot is free). */
  estimatedWaitMs: number;
  tenants: Array<{ tenant: string; queued: number; inFlight: number; admitted: number; refused: number; meanWaitMs: number }>;
}

export class ModelQueue {
  inFlight = 0;
  private readonly waiting = new FairQueue<Waiter>(PRIORITY_LEVELS);
  private serviceMs = 0;
  private samples = 0;
  private poll: NodeJS.Timeout | undefined;

  constructor(
    readonly model: string,
    readonly version: string,
    readonly policy: AdmissionPolicy,
    /** Ready instances of the version now. */
    private readonly readyInstances: () => number,
    readonly tenants: TenantTable,
    private readonly count: Readonly<Record<Outcome, { inc(): void }>>,
    /** The replicas the capacity is shared among, and `offset` (versionOffset) saying which get the remainder. */
    private readonly share?: ReplicaShare,
    private readonly offset = 0,
  ) {}

  get limited(): boolean {
    return this.policy.maxConcurrentPerInstance > 0;
  }

  /** Requests that may run at once across the fleet: ready instances × the per-instance limit (no limit: unbounded once one instance is ready). */
  fleetCapacity(): number {
    const ready = this.readyInstances();
    if (this.limited) return ready * this.policy.maxConcurrentPerInstance;
    return ready > 0 ? Infinity : 0;
  }

  /** Requests this replica may run at once: its share of the fleet capacity (all of it on a single replica). */
  capacity(): number {
    const cap = this.fleetCapacity();
    return this.share ? this.share.of(cap, this.offset) : cap;
  }

  /** Nothing to do for this request: no limit, nobody waiting (the fast path of unlimited models). */
  get idle(): boolean {
    return !this.limited && this.waiting.size === 0;
  }

  /** A slot now when one is free and nobody waits (the uncontended path: no priority or deadline needed); else undefined. */
  tryGrant(tenant: string): AdmissionTicket | undefined {
    if (this.waiting.size !== 0 || this.inFlight >= this.capacity()) return undefined;
    return this.grant(this.tenants.of(tenant), performance.now());
  }

  /** A slot now (synchronously) when one is free and nobody waits; otherwise a wait in the queue, or a refusal. */
  admit(r: AdmitRequest): AdmissionTicket | Promise<AdmissionTicket> {
    const stats = this.tenants.of(r.tenant);
    const cap = this.capacity();
    if (this.inFlight < cap && this.waiting.size === 0) return this.grant(stats, performance.now());
    // No capacity: admission steps aside, the router decides (cold-start hold, or MCP_NO_HEALTHY_INSTANCE).
    if (cap === 0) return PASS;
    const now = Date.now();
    if (cap > 0 && this.limited && this.policy.deadlineShedding && this.samples >= MIN_SAMPLES) {
      const wait = this.estimateWait(r.level, cap);
      if (now + wait + this.serviceMs > r.deadline) {
        throw this.refuse(
          stats,
          'unmeetable',
          'MCP_DEADLINE_UNMEETABLE',
          `the deadline is ${r.deadline - now} ms away; the expected queue wait is ${Math.round(wait)} ms plus ${Math.round(this.serviceMs)} ms of service`,
          wait,
        );
      }
    }
    if (this.waiting.size >= this.policy.maxQueueSize) this.makeRoom(r, stats);
    return this.enqueue(r, stats);
  }

  /** Re-reads the capacity and lets waiters in (an instance became ready). */
  drain(): void {
    const cap = this.capacity();
    if (cap === 0) {
      // The capacity went away under the waiters: the router decides (the cold-start hold, or MCP_NO_HEALTHY_INSTANCE).
      for (let w = this.waiting.pop(); w; w = this.waiting.pop()) this.leave(w).resolve(PASS);
    } else {
      const now = performance.now();
      while (this.inFlight < cap) {
        const w = this.waiting.pop();
        if (!w) break;
        this.leave(w).resolve(this.grant(w.stats, now, w.enqueuedAt));
      }
    }
    this.watch();
  }

  /** A slot came back: its service time feeds the estimate, and the next waiter gets it. */
  released(slot: Slot): void {
    this.inFlight--;
    slot.stats.inFlight--;
    const ms = performance.now() - slot.grantedAt;
    this.serviceMs = this.samples === 0 ? ms : this.serviceMs + (ms - this.serviceMs) * 0.2;
    this.samples++;
    if (this.waiting.size > 0) this.drain();
  }

  snapshot(): QueueSnapshot {
    const fleet = this.fleetCapacity();
    const cap = this.capacity();
    return {
      model: this.model,
      version: this.version,
      capacity: Number.isFinite(fleet) ? fleet : null,
      replicaCapacity: Number.isFinite(cap) ? cap : null,
      replicas: this.share?.replicas ?? 1,
      inFlight: this.inFlight,
      queued: this.waiting.size,
      queuedByPriority: this.waiting.depthByLevel(),
      maxConcurrentPerInstance: this.policy.maxConcurrentPerInstance,
      maxQueueSize: this.policy.maxQueueSize,
      serviceMs: this.samples ? this.serviceMs : undefined,
      estimatedWaitMs: this.inFlight < cap && this.waiting.size === 0 ? 0 : Math.round(this.estimateWait(2, cap)),
      tenants: this.tenants.all().map((t) => ({
        tenant: t.label,
        queued: t.queued,
        inFlight: t.inFlight,
        admitted: t.admitted,
        refused: t.refused,
        meanWaitMs: Math.round(t.waitMs * 10) / 10,
      })),
    };
  }

  /** The gateway is closing: waiters get 503 MCP_SHUTTING_DOWN (never ran; another replica may take them). */
  close(): void {
    this.failAll('shutdown', 'MCP_SHUTTING_DOWN', `model "${this.model}" version ${this.version}: the gateway is shutting down`);
  }

  private grant(stats: TenantStats, now: number, enqueuedAt = now): Slot {
    this.inFlight++;
    stats.granted(now - enqueuedAt);
    this.count.admitted.inc();
    return new Slot(this, stats, now);
  }

  /** Expected wait of a newcomer at `level`: the entries served before it, at the rate slots come back. */
  private estimateWait(level: number, cap: number): number {
    if (cap === 0 || !Number.isFinite(cap) || this.samples === 0) return 0;
    return ((this.waiting.ahead(level) + 1) * this.serviceMs) / cap;
  }

  /** The queue is full: a less urgent waiter, or one of a tenant further over its share, makes room; else the newcomer is refused. */
  private makeRoom(r: AdmitRequest, stats: TenantStats): void {
    const victim = this.waiting.victim();
    if (victim) {
      const displaced = victim.state === 'delayed' || victim.level > r.level;
      const fairer =
        victim.level === r.level &&
        victim.tenant !== r.tenant &&
        this.waiting.load(r.level, r.tenant) + 1 / r.weight < this.waiting.load(r.level, victim.tenant);
      if (displaced || fairer) {
        this.waiting.remove(victim);
        const [outcome, code] = displaced ? (['displaced', 'MCP_ADMISSION_QUEUE_FULL'] as const) : (['over_share', 'MCP_TENANT_OVER_SHARE'] as const);
        const why = displaced ? 'displaced by a more urgent request' : `displaced: tenant "${victim.tenant}" is over its share of the full queue`;
        this.leave(victim).reject(this.refuse(victim.stats, outcome, code, why, undefined));
        return;
      }
      if (victim.tenant === r.tenant && victim.level === r.level) {
        throw this.refuse(stats, 'over_share', 'MCP_TENANT_OVER_SHARE', `tenant "${r.tenant}" is over its share of the full queue`, undefined);
      }
    }
    throw this.refuse(stats, 'full', 'MCP_ADMISSION_QUEUE_FULL', `the admission queue is full (${this.policy.maxQueueSize} waiting)`, undefined);
  }

  private enqueue(r: AdmitRequest, stats: TenantStats): Promise<AdmissionTicket> {
    return new Promise<AdmissionTicket>((resolve, reject) => {
      const w: Waiter = {
        tenant: r.tenant,
        weight: r.weight,
        level: r.level,
        start: 0,
        state: 'out',
        stats,
        enqueuedAt: performance.now(),
        signal: r.signal,
        resolve,
        reject,
        timer: undefined,
        onAbort: undefined,
      };
      if (r.signal.aborted) {
        reject(r.signal.reason ?? new McpError('MCP_CANCELLED'));
        return;
      }
      this.waiting.push(w);
      stats.queued++;
      this.count.queued.inc();
      const timeout = Math.min(r.queueTimeoutMs ?? Infinity, this.policy.queueTimeoutMs);
      w.timer = setTimeout(() => this.timedOut(w), timeout);
      w.onAbort = () => {
        this.waiting.remove(w);
        this.leave(w);
        this.count.cancelled.inc();
        reject(r.signal.reason ?? new McpError('MCP_CANCELLED'));
        this.drain();
      };
      r.signal.addEventListener('abort', w.onAbort, { once: true });
      this.watch();
    });
  }

  private timedOut(w: Waiter): void {
    w.timer = undefined;
    if (w.state !== 'queued') return;
    if (this.policy.timeoutAction === 'delay') {
      // Triton's DELAY: keeps waiting, behind every request that has not timed out, until its deadline.
      this.waiting.delay(w);
      this.count.delayed.inc();
      return;
    }
    this.waiting.remove(w);
    const cap = this.capacity();
    this.leave(w).reject(
      this.refuse(
        w.stats,
        'timeout',
        'MCP_QUEUE_TIMEOUT',
        `waited ${Math.round(performance.now() - w.enqueuedAt)} ms in the admission queue`,
        this.estimateWait(w.level, cap),
      ),
    );
    this.watch();
  }

  /** The waiter is out of the queue: its timer and abort listener go. */
  private leave(w: Waiter): Waiter {
    clearTimeout(w.timer);
    w.timer = undefined;
    if (w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
    w.onAbort = undefined;
    w.stats.queued--;
    return w;
  }

  private failAll(outcome: Outcome, code: ErrorCode, message: string): void {
    for (let w = this.waiting.pop(); w; w = this.waiting.pop()) this.leave(w).reject(this.refuse(w.stats, outcome, code, message, undefined));
    this.watch();
  }

  /** The refusal of one request, counted, with Retry-After (the expected wait, at least 1 s). */
  private refuse(stats: TenantStats, outcome: Outcome, code: ErrorCode, message: string, waitMs: number | undefined): McpError {
    stats.refused++;
    this.count[outcome].inc();
    const cap = this.capacity();
    const drainMs = cap > 0 && Number.isFinite(cap) && this.samples > 0 ? (this.waiting.size * this.serviceMs) / cap : 0;
    const retryAfterMs = Math.min(60_000, Math.max(1000, Math.ceil(waitMs ?? drainMs)));
    return new McpError(code, message, {
      details: { model: this.model, version: this.version, retryAfterMs },
      mayHaveExecuted: false,
    });
  }

  /** Polls the capacity while requests wait (instances that become ready are used without waiting for a release). */
  private watch(): void {
    if (this.waiting.size > 0) {
      if (!this.poll) {
        this.poll = setInterval(() => this.drain(), POLL_MS);
        this.poll.unref();
      }
    } else if (this.poll) {
      clearInterval(this.poll);
      this.poll = undefined;
    }
  }
}
