/**
 * The scaling controller: per model version with a policy, every `scaling.intervalMs` it samples the
 * version (in flight on its instances, requests held at zero, latency, queue wait, time to first token),
 * asks the policy's scaler, bounds and stabilises the answer (stabilise.ts) and has the policy's actuator
 * apply a change; each change is recorded with its reason (scaling_decisions) and published on
 * `modelEvents` (SCALING_DECISION). Decisions run on one gateway replica at a time (the
 * `scaling-controller` lease); every replica keeps the policies for its cold-start hold.
 */
import { randomUUID } from 'node:crypto';
import { logBackgroundFailure } from '../db/storage-errors.ts';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Database } from '../db/client.ts';
import { LeaderLease, LeaseKeeper } from '../db/lease.ts';
import { McpError, toMcpError } from '../errors.ts';
import type { EventBus, ScalingReport } from '../events/bus.ts';
import type { InferenceObserver, InferenceOutcome } from '../inference/service.ts';
import type { InferenceRequest } from '../inference/types.ts';
import type { Fleet } from '../models/fleet.ts';
import type { ModelRegistry } from '../models/registry.ts';
import type { ScalingSample, ScalingSignal } from '../plugin/contract.ts';
import type { PluginHost } from '../plugin/host.ts';
import { parseInput } from '../validation.ts';
import type { Actuator, ScalingTarget } from './actuator.ts';
import type { ScalingConfig } from './config.ts';
import { ColdStartHold } from './hold.ts';
import { scalingPolicySchema } from './policy.ts';
import { stabilise, type Recommendation } from './stabilise.ts';
import { ScalingStore, type ScalingDecision, type StoredPolicy } from './store.ts';
import { RecentSamples } from '../recent-samples.ts';

/** Samples kept per version at most (besides historyMs). */
const MAX_SAMPLES = 4_000;
/** Window of the queue-wait and time-to-first-token figures, ms. */
const FIGURE_WINDOW_MS = 10_000;
/** Time-to-first-token samples kept per version. */
const TTFT_SAMPLES = 512;
/** A failed actuation is retried after this many ticks. */
const FAILURE_BACKOFF_TICKS = 5;
/** Policies are re-read from the database this often, ms (changes made on other replicas). */
const POLICY_REFRESH_MS = 5_000;

interface VersionState {
  stored: StoredPolicy;
  target: ScalingTarget;
  samples: ScalingSample[];
  recs: Recommendation[];
  lastChange?: { at: number; direction: 1 | -1 };
  current?: number;
  busy: boolean;
  retryAt: number;
  /** Time to first token of its streamed answers (the newest TTFT_SAMPLES). */
  ttft: RecentSamples;
}

export interface ScalingControllerDeps {
  config: ScalingConfig;
  database: Database;
  registry: Pick<ModelRegistry, 'requireVersion' | 'require'>;
  fleet: Pick<Fleet, 'view'>;
  router: { latencyP95(model: string, version: string): number | undefined };
  plugins: Pick<PluginHost, 'get' | 'names'>;
  actuators: ReadonlyMap<string, Actuator>;
  events: EventBus;
  logger: Logger;
}

export class ScalingController implements InferenceObserver {
  readonly hold: ColdStartHold;
  private readonly store: ScalingStore;
  private readonly states = new Map<string, VersionState>();
  private readonly keeper: LeaseKeeper;
  private timer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  private readonly running = new Set<Promise<unknown>>();
  private lastRefresh = 0;
  private readonly origin = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  /** Other replicas' reports per version: origin → the latest. */
  private readonly remote = new Map<string, Map<string, ScalingReport>>();

  constructor(private readonly deps: ScalingControllerDeps) {
    this.store = new ScalingStore(deps.database.db);
    this.hold = new ColdStartHold((m, v) => {
      const s = this.states.get(key(m, v));
      return s?.stored.policy.scaleToZero ? s.stored.policy.holdMs : undefined;
    }, deps.config.maxHeld);
    this.hold.onDemand((m, v) => void this.onDemand(m, v));
    const lease = new LeaderLease(deps.database.db, 'scaling-controller', this.origin, deps.config.leaseTtlMs);
    this.keeper = new LeaseKeeper(lease, deps.config.leaseRenewMs, (err) => logBackgroundFailure(deps.logger, err, {}, 'scaling lease renewal failed'));
  }

  async start(): Promise<void> {
    await this.refreshPolicies();
    if (!this.deps.config.enabled) return;
    await this.keeper.start();
    void (async () => {
      for await (const r of this.deps.events.subscribe('scalingSignals', this.abort.signal)) this.onReport(r);
    })();
    this.timer = setInterval(() => void this.tick(), this.deps.config.intervalMs);
    this.timer.unref();
  }

  /** Whether this replica makes the decisions now. */
  leading(): boolean {
    return this.keeper.leading() !== undefined;
  }

  // ─────────────── policies ───────────────

  async setPolicy(model: string, version: string | undefined, raw: unknown): Promise<StoredPolicy> {
    const policy = parseInput(scalingPolicySchema, raw, 'policy');
    const v = version ?? (await this.deps.registry.require(model)).defaultVersion;
    if (!v) throw new McpError('MCP_VALIDATION_FAILED', `version: model "${model}" has no default version; name one`, { details: { path: 'version' } });
    await this.deps.registry.requireVersion(model, v);
    if (!this.deps.plugins.names('scaler').includes(policy.scaler)) this.deps.plugins.get('scaler', policy.scaler); // throws MCP_UNKNOWN_PLUGIN naming the configured ones
    const actuator = this.actuator(policy.actuator.name);
    policy.actuator.options = actuator.checkOptions(policy.actuator.options);
    const stored = await this.store.setPolicy(model, v, policy);
    this.adopt(stored);
    this.states.get(key(model, v))!.retryAt = 0;
    return stored;
  }

  async removePolicy(model: string, version: string): Promise<boolean> {
    this.states.delete(key(model, version));
    return this.store.removePolicy(model, version);
  }

  policies(model?: string): Promise<StoredPolicy[]> {
    return this.store.policies(model);
  }

  decisions(model: string, version: string | undefined, last: number): Promise<ScalingDecision[]> {
    return this.store.decisions(model, version, last);
  }

  private actuator(name: string): Actuator {
    const a = this.deps.actuators.get(name);
    if (!a) {
      throw new McpError('MCP_VALIDATION_FAILED', `policy.actuator.name: no actuator "${name}" (configured: ${[...this.deps.actuators.keys()].join(', ')})`, {
        details: { path: 'policy.actuator.name' },
      });
    }
    return a;
  }

  private adopt(stored: StoredPolicy): void {
    const k = key(stored.model, stored.version);
    const target: ScalingTarget = { model: stored.model, version: stored.version, options: stored.policy.actuator.options, drainMs: stored.policy.drainMs };
    const s = this.states.get(k);
    if (s) Object.assign(s, { stored, target });
    else this.states.set(k, { stored, target, samples: [], recs: [], busy: false, retryAt: 0, ttft: new RecentSamples(TTFT_SAMPLES) });
  }

  private async refreshPolicies(): Promise<void> {
    this.lastRefresh = Date.now();
    const all = await this.store.policies();
    const seen = new Set<string>();
    for (const p of all) {
      seen.add(key(p.model, p.version));
      this.adopt(p);
    }
    for (const k of [...this.states.keys()]) if (!seen.has(k)) this.states.delete(k);
  }

  // ─────────────── signals ───────────────

  /** Another replica's load: kept for the samples; a request held there wakes the leader at once. */
  private onReport(r: ScalingReport): void {
    if (r.origin === this.origin) return;
    const k = key(r.model, r.version);
    let m = this.remote.get(k);
    if (!m) this.remote.set(k, (m = new Map()));
    m.set(r.origin, r);
    if (r.held > 0) void this.onDemand(r.model, r.version);
  }

  /** Held and in-flight requests other replicas reported within the last three ticks. */
  private remoteLoad(k: string, now: number): { inflight: number; held: number } {
    let inflight = 0;
    let held = 0;
    for (const [origin, r] of this.remote.get(k) ?? []) {
      if (r.at < now - 3 * this.deps.config.intervalMs) {
        this.remote.get(k)!.delete(origin);
        continue;
      }
      inflight += r.inflight;
      held += r.held;
    }
    return { inflight, held };
  }

  /** This replica's load of the version (in flight on its instances, held at zero). */
  private localLoad(s: VersionState): { inflight: number; held: number; ready: number } {
    const { model, version } = s.target;
    const pool = this.deps.fleet.view(model)?.versions.get(version) ?? [];
    let ready = 0;
    let inflight = 0;
    for (const h of pool) {
      inflight += h.outstanding;
      if (h.status === 'ready' && !h.draining && h.loaded) ready++;
    }
    return { inflight, held: this.hold.held(model, version), ready };
  }

  /** Not leading: tells the leader what this replica carries. */
  private report(s: VersionState): void {
    const { inflight, held } = this.localLoad(s);
    this.deps.events.publish('scalingSignals', { origin: this.origin, model: s.target.model, version: s.target.version, inflight, held, at: Date.now() });
  }

  /** InferenceObserver: time to first token of streamed answers, per version. */
  onFinished(_req: InferenceRequest, outcome: InferenceOutcome): void {
    if (outcome.firstTokenMs === undefined || !outcome.decision) return;
    const s = this.states.get(key(outcome.decision.model, outcome.decision.version));
    if (!s) return;
    s.ttft.add(Date.now(), outcome.firstTokenMs);
  }

  private sample(s: VersionState, instances: number, now: number): ScalingSample {
    const { model, version } = s.target;
    const local = this.localLoad(s);
    const remote = this.remoteLoad(key(model, version), now);
    const inflight = local.inflight + remote.inflight;
    const held = local.held + remote.held;
    const ready = local.ready;
    const ttft = s.ttft.valuesAfter(now - FIGURE_WINDOW_MS);
    return {
      at: now,
      instances,
      readyInstances: ready,
      ongoing: inflight + held,
      queueDepth: held,
      p95LatencyMs: this.deps.router.latencyP95(model, version) ?? 0,
      queueWaitMs: this.hold.waitP95(model, version, FIGURE_WINDOW_MS, now),
      ...(ttft.length ? { ttftMs: p95(ttft) } : {}),
    };
  }

  // ─────────────── the loop ───────────────

  private async tick(): Promise<void> {
    if (Date.now() - this.lastRefresh > POLICY_REFRESH_MS)
      await this.refreshPolicies().catch((err: unknown) => logBackgroundFailure(this.deps.logger, err, {}, 'could not re-read scaling policies'));
    if (!this.leading()) {
      if (this.deps.config.enabled) for (const s of this.states.values()) this.report(s);
      return;
    }
    await Promise.all([...this.states.values()].map((s) => this.step(s)));
  }

  /** A request started waiting for a version at zero: decide for it now rather than at the next tick. */
  private async onDemand(model: string, version: string): Promise<void> {
    const s = this.states.get(key(model, version));
    if (!s) return;
    if (!this.leading()) this.report(s);
    else if (!s.busy) await this.step(s);
  }

  private async step(s: VersionState): Promise<void> {
    if (s.busy) {
      s.samples.push(this.sample(s, s.current ?? 0, Date.now()));
      return;
    }
    if (Date.now() < s.retryAt) return;
    s.busy = true;
    try {
      const actuator = this.actuator(s.stored.policy.actuator.name);
      const current = await actuator.current(s.target);
      s.current = current;
      const now = Date.now();
      const policy = s.stored.policy;
      s.samples.push(this.sample(s, current, now));
      trim(s.samples, now - policy.historyMs);
      const scaler = this.deps.plugins.get('scaler', policy.scaler);
      const signal = this.signal(s, current, now);
      const rec = scaler.recommend
        ? scaler.recommend(signal)
        : { desired: scaler.desiredInstances(signal), reason: `${policy.scaler} asked for ${scaler.desiredInstances(signal)}` };
      const recommended = Number.isFinite(rec.desired) ? Math.max(0, Math.round(rec.desired)) : current;
      s.recs.push({ at: now, desired: recommended });
      trim(s.recs, now - Math.max(policy.scaleUpStabilizationMs, policy.scaleDownStabilizationMs) - 1);
      const out = stabilise(policy, current, s.recs, s.lastChange, now);
      if (out.desired === current) return void (s.busy = false);
      const reason = `${rec.reason}${out.note ? `; ${out.note}` : ''}`;
      const direction = out.desired > current ? 1 : -1;
      s.lastChange = { at: now, direction };
      s.current = out.desired;
      this.deps.logger.info({ model: s.target.model, version: s.target.version, from: current, to: out.desired, reason }, 'scaling');
      // The actuation runs on; this version decides again once it is over.
      const run = this.apply(s, actuator, new Date(now), current, out.desired, recommended, reason).finally(() => {
        s.busy = false;
        this.running.delete(run);
      });
      this.running.add(run);
    } catch (err) {
      s.busy = false;
      const code = toMcpError(err).code;
      if (code === 'MCP_MODEL_NOT_FOUND' || code === 'MCP_VERSION_NOT_FOUND') {
        // the version is gone: so is its policy
        await this.removePolicy(s.target.model, s.target.version).catch(() => {});
        return;
      }
      s.retryAt = Date.now() + FAILURE_BACKOFF_TICKS * this.deps.config.intervalMs;
      logBackgroundFailure(this.deps.logger, err, { model: s.target.model, version: s.target.version }, 'scaling step failed');
    }
  }

  private signal(s: VersionState, current: number, now: number): ScalingSignal {
    const last = s.samples[s.samples.length - 1]!;
    const lookback = s.samples.filter((x) => x.at > now - 30_000);
    const avg = lookback.reduce((a, x) => a + x.ongoing, 0) / Math.max(1, lookback.length);
    return {
      model: s.target.model,
      version: s.target.version,
      now,
      currentInstances: current,
      ongoingPerInstance: avg / Math.max(1, current),
      queueDepth: last.queueDepth,
      p95LatencyMs: last.p95LatencyMs,
      samples: s.samples,
      scaleToZero: s.stored.policy.scaleToZero,
    };
  }

  private async apply(s: VersionState, actuator: Actuator, at: Date, from: number, to: number, recommended: number, why: string): Promise<void> {
    let reason = why;
    let error: string | null = null;
    try {
      const how = await actuator.scaleTo(s.target, to, this.abort.signal);
      if (how) reason = `${reason}; ${how}`;
    } catch (err) {
      error = toMcpError(err).message;
      s.retryAt = Date.now() + FAILURE_BACKOFF_TICKS * this.deps.config.intervalMs;
      s.current = undefined;
      this.deps.logger.warn({ err, model: s.target.model, version: s.target.version, to }, 'scaling actuation failed');
    }
    const decision = {
      at,
      model: s.target.model,
      version: s.target.version,
      fromInstances: from,
      toInstances: to,
      recommended,
      scaler: s.stored.policy.scaler,
      actuator: actuator.name,
      reason,
      outcome: error ? ('failed' as const) : ('applied' as const),
      error,
    };
    const recorded = await this.store.record(decision, this.deps.config.historyLimit).catch((err: unknown) => {
      logBackgroundFailure(this.deps.logger, err, {}, 'could not record a scaling decision');
      return undefined;
    });
    this.deps.events.publish('modelEvents', {
      type: 'SCALING_DECISION',
      modelId: s.target.model,
      version: s.target.version,
      at: recorded?.at ?? at,
      scaling: { from, to, recommended, reason, outcome: decision.outcome, ...(error ? { error } : {}) },
    });
  }

  /** Stops deciding, waits for actuations under way, hands the lease on, stops the actuators' processes. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.abort.abort();
    await Promise.allSettled([...this.running]);
    await this.keeper.close();
    for (const a of this.deps.actuators.values())
      await a.close?.().catch((err: unknown) => this.deps.logger.warn({ err, actuator: a.name }, 'actuator close failed'));
  }
}

function key(model: string, version: string): string {
  return `${model}@${version}`;
}

function trim<T extends { at: number }>(list: T[], before: number): void {
  let n = 0;
  while (n < list.length - 1 && list[n]!.at < before) n++;
  if (list.length - n > MAX_SAMPLES) n = list.length - MAX_SAMPLES;
  if (n) list.splice(0, n);
}

function p95(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.floor(v.length * 0.95))]!;
}
