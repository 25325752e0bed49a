/**
 * Admission per model version (see ./model-queue.ts): the router asks here once it knows the
 * version a request goes to, and releases the ticket when the answer is out. Owns the queues,
 * the tenants' weights, the priority caps and this replica's share of each version's capacity
 * (./replica-share.ts, kept current by the gateway from src/db/replica-presence.ts). A version with
 * no ready instance is not held here: admission steps aside and the router's cold-start hold
 * (src/scaling/hold.ts) decides.
 */
import type { Registry } from 'prom-client';
import type { InferenceRequest } from '../inference/types.ts';
import type { InstanceHandle, ModelView } from '../models/fleet.ts';
import { admissionPolicySchema, type AdmissionConfig, type AdmissionPolicy } from './config.ts';
import { AdmissionMetrics } from './metrics.ts';
import { ModelQueue, OUTCOMES, type Outcome, type QueueSnapshot } from './model-queue.ts';
import { PRIORITY_NAMES, effectivePriority, priorityCap, type PriorityCaps } from './priority.ts';
import { ReplicaShare, versionOffset } from './replica-share.ts';
import { TenantStats, TenantTable } from './tenant-stats.ts';
import { tenantOf } from './tenant.ts';
import { PASS, type AdmissionTicket } from './ticket.ts';

/** What admission reads of the fleet: the model's view (its versions' instance handles). */
export interface FleetView {
  view(modelId: string): ModelView | undefined;
}

/** Ready to take requests, as the router counts it: ready, loaded and not draining. */
function ready(h: InstanceHandle): boolean {
  return h.status === 'ready' && !h.draining && h.loaded !== undefined;
}

const NOOP = { inc() {} };
const level = (name: (typeof PRIORITY_NAMES)[number]) => PRIORITY_NAMES.indexOf(name);

export class AdmissionService {
  private readonly queues = new Map<string, Map<string, ModelQueue>>();
  private readonly caps: PriorityCaps;
  private readonly defaultLevel: number;
  private readonly metrics: AdmissionMetrics | undefined;
  private readonly share = new ReplicaShare();

  constructor(
    private readonly config: AdmissionConfig,
    private readonly fleet: FleetView,
    registry?: Registry,
  ) {
    const m = config.maxPriority;
    this.caps = {
      default: level(m.default),
      roles: new Map(Object.entries(m.roles).map(([k, v]) => [k, level(v)])),
      principals: new Map(Object.entries(m.principals).map(([k, v]) => [k, level(v)])),
    };
    this.defaultLevel = level(config.defaultPriority);
    this.metrics = registry ? new AdmissionMetrics(registry, () => this.snapshot()) : undefined;
  }

  /**
   * A slot for `req` on the model version: at once (synchronously) when one is free, after a wait
   * in the queue, or a refusal (McpError: MCP_ADMISSION_QUEUE_FULL, MCP_TENANT_OVER_SHARE,
   * MCP_QUEUE_TIMEOUT, MCP_DEADLINE_UNMEETABLE; whatever aborted `signal`). With no ready
   * instance it steps aside (PASS): the router decides.
   */
  admit(req: InferenceRequest, model: string, version: string, deadline: number, signal: AbortSignal): AdmissionTicket | Promise<AdmissionTicket> {
    const q = this.queue(model, version);
    if (q.idle) return PASS;
    const tenant = tenantOf(this.config, req.principal);
    const now = q.tryGrant(tenant);
    if (now) return now;
    return q.admit({
      tenant,
      weight: this.config.weights[tenant] ?? 1,
      level: this.priorityOf(req),
      deadline,
      signal,
      queueTimeoutMs: req.queueTimeoutMs,
    });
  }

  /** The level a request gets: what it asked for (or the default), capped by its principal. */
  priorityOf(req: Pick<InferenceRequest, 'priority' | 'principal'>): number {
    return effectivePriority(req.priority, this.defaultLevel, priorityCap(this.caps, req.principal));
  }

  /** Re-reads capacity now (an instance became ready or went away); queues also re-read it every 20 ms while requests wait. */
  capacityChanged(model: string): void {
    for (const q of this.queues.get(model)?.values() ?? []) q.drain();
  }

  /**
   * The live gateway replicas changed: `replicas` of them (this one included), this one at `rank` among
   * their sorted ids. Each version's capacity is shared among them; a larger share lets waiters in at once.
   */
  replicasChanged(replicas: number, rank: number): void {
    if (replicas === this.share.replicas && rank === this.share.rank) return;
    this.share.set(replicas, rank);
    for (const versions of this.queues.values()) for (const q of versions.values()) q.drain();
  }

  /** Live gateway replicas the capacities are shared among (1: this one alone). */
  get replicas(): number {
    return this.share.replicas;
  }

  /** Every queue that has been used (optionally only the models `visible` allows). */
  snapshot(visible?: (model: string) => boolean): QueueSnapshot[] {
    const out: QueueSnapshot[] = [];
    for (const [model, versions] of this.queues) {
      if (visible && !visible(model)) continue;
      for (const q of versions.values()) out.push(q.snapshot());
    }
    return out;
  }

  close(): void {
    for (const versions of this.queues.values()) for (const q of versions.values()) q.close();
  }

  /** The policy of a model version: `model@version`, else `model`, over `defaults`. */
  policyOf(model: string, version: string): AdmissionPolicy {
    const own = this.config.models[`${model}@${version}`];
    const base = this.config.models[model];
    if (!own && !base) return this.config.defaults;
    return admissionPolicySchema.parse({ ...this.config.defaults, ...base, ...own });
  }

  private queue(model: string, version: string): ModelQueue {
    let versions = this.queues.get(model);
    if (!versions) {
      versions = new Map();
      this.queues.set(model, versions);
    }
    let q = versions.get(version);
    if (!q) {
      const labels = { model, version };
      const m = this.metrics;
      const count = Object.fromEntries(OUTCOMES.map((o) => [o, m ? m.decisions.of({ ...labels, outcome: o }) : NOOP])) as Record<Outcome, { inc(): void }>;
      const tenants = new TenantTable(this.config.metricsMaxTenants, (label) => {
        const series = m?.wait.of({ ...labels, tenant: label });
        return new TenantStats(label, series ? (s) => series.observe(s) : undefined);
      });
      const fleet = this.fleet;
      const readyInstances = () => {
        const pool = fleet.view(model)?.versions.get(version);
        let n = 0;
        if (pool) for (const h of pool) if (ready(h)) n++;
        return n;
      };
      q = new ModelQueue(model, version, this.policyOf(model, version), readyInstances, tenants, count, this.share, versionOffset(model, version));
      versions.set(version, q);
    }
    return q;
  }
}
