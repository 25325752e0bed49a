import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Database } from '../db/client.ts';
import type { ModelRouting } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import type { InferenceObserver, InferenceOutcome } from '../inference/service.ts';
import type { InferenceRequest } from '../inference/types.ts';
import type { Fleet } from '../models/fleet.ts';
import type { ModelRegistry, ModelRow } from '../models/registry.ts';
import { LatencyWindow } from '../routing/latency-window.ts';
import type { RoutingListener, ShadowOutcome } from '../routing/router.ts';
import { InferenceRecorder } from './inference-recorder.ts';

type RouterConfig = Config['router'];

/** Per-variant (model version) counters since the last traffic change on this replica. */
class VariantStats {
  requests = 0;
  errors = 0;
  /** Requests the split assigned here that went to another variant: every instance was unhealthy. */
  diverted = 0;
  readonly latency = new LatencyWindow(2048, 32);
}

export interface VariantView {
  version: string;
  /** Share of the primary traffic (0–100 as configured; 0 for shadow). */
  weight: number;
  shadow: boolean;
  isDefault: boolean;
  requests: number;
  errors: number;
  errorRate: number;
  /** Requests the split assigned to this variant that another served because all its instances were unhealthy. */
  diverted: number;
  p50Ms: number | null;
  p95Ms: number | null;
  /** Mean feedback score (0–1) over inferences with feedback, null without any. */
  accuracy: number | null;
  feedbackCount: number;
}

export interface SplitEntry {
  version: string;
  weight: number;
}
export interface StickyInput {
  by: 'principal' | 'header';
  header?: string | null;
}
export interface AutoRollbackInput {
  canary: string;
  maxErrorRateDelta: number;
  maxP95Ratio: number;
  minSamples: number;
}

const MAX_FALLBACKS = 5;

/**
 * Traffic management on top of the router: A/B splits, canaries (with automatic rollback),
 * promotion/rollback of the default version, shadow traffic, fallbacks; per-variant stats;
 * and the `inferences` records (group commit) that feedback attaches to.
 *
 * Settings live in the model's `routing` (ModelRegistry.setRouting emits TRAFFIC_CHANGED);
 * the fleet view is refreshed at once so the next request sees them.
 */
export class TrafficManager implements InferenceObserver, RoutingListener {
  private readonly stats = new Map<string, Map<string, VariantStats>>();
  private readonly rollingBack = new Set<string>();
  readonly recorder: InferenceRecorder | undefined;
  private readonly feedbackListeners: Array<(modelId: string, version: string, score: number) => void> = [];

  constructor(private readonly deps: { database: Database; registry: ModelRegistry; fleet: Fleet; config: RouterConfig; logger: Logger }) {
    const r = deps.config.recording;
    this.recorder = r.enabled ? new InferenceRecorder(deps.database, r, deps.logger) : undefined;
  }

  // ───────────── hot path ─────────────

  private variant(modelId: string, key: string): VariantStats {
    let m = this.stats.get(modelId);
    if (!m) {
      m = new Map();
      this.stats.set(modelId, m);
    }
    let v = m.get(key);
    if (!v) {
      v = new VariantStats();
      m.set(key, v);
    }
    return v;
  }

  onFinished(req: InferenceRequest, o: InferenceOutcome): void {
    const d = o.decision;
    const modelId = d?.model || req.model;
    const version = o.result?.version ?? (d?.version || undefined);
    if (!version) return; // never routed (unknown model, bad input): nothing to attribute
    if (d?.diverted) this.variant(modelId, d.diverted).diverted++;
    const s = this.variant(modelId, version);
    s.requests++;
    if (o.ok) s.latency.add(o.latencyMs);
    else s.errors++;
    const routing = this.deps.fleet.view(modelId)?.routing;
    this.recorder?.record({
      id: req.id,
      modelId,
      version,
      instanceId: o.result?.instanceId ?? (d?.chosen || null),
      variant: d?.variant ?? null,
      principalId: req.principal?.id ?? null,
      entry: req.entry,
      ok: o.ok,
      errorCode: o.ok ? null : (o.errorCode ?? 'MCP_INTERNAL'),
      latencyMs: o.latencyMs,
      promptTokens: o.result?.usage?.promptTokens ?? 0,
      completionTokens: o.result?.usage?.completionTokens ?? 0,
      shadow: false,
      output: routing?.shadow && o.result?.text !== undefined ? o.result.text.slice(0, this.deps.config.recording.maxOutputChars) : null,
    });
    if (routing?.autoRollback && routing.autoRollback.canary !== undefined) this.checkRollback(modelId, routing);
  }

  onShadow(req: InferenceRequest, o: ShadowOutcome): void {
    const s = this.variant(o.model, `${o.version}#shadow`);
    s.requests++;
    if (o.ok) s.latency.add(o.latencyMs);
    else s.errors++;
    this.recorder?.record({
      id: `${req.id}:shadow`,
      modelId: o.model,
      version: o.version,
      instanceId: o.instanceId,
      variant: o.version,
      principalId: req.principal?.id ?? null,
      entry: req.entry,
      ok: o.ok,
      errorCode: o.ok ? null : (o.errorCode ?? 'MCP_INTERNAL'),
      latencyMs: o.latencyMs,
      promptTokens: o.usage?.promptTokens ?? 0,
      completionTokens: o.usage?.completionTokens ?? 0,
      shadow: true,
      output: o.output?.slice(0, this.deps.config.recording.maxOutputChars) ?? null,
    });
  }

  /** Compares the canary with the baseline and takes it out of the split when it is worse by more than the margins. */
  private checkRollback(modelId: string, routing: ModelRouting): void {
    const ar = routing.autoRollback!;
    if (this.rollingBack.has(modelId)) return;
    const m = this.stats.get(modelId);
    const canary = m?.get(ar.canary);
    // A diverted request counts as a canary failure: the canary could not serve it.
    const canaryRequests = canary ? canary.requests + canary.diverted : 0;
    if (!m || !canary || canaryRequests < ar.minSamples) return;
    let base: VariantStats | undefined;
    for (const [key, s] of m) {
      if (key === ar.canary || key.endsWith('#shadow')) continue;
      if (!base || s.requests > base.requests) base = s;
    }
    if (!base || base.requests < ar.minSamples) return;
    const canaryErr = (canary.errors + canary.diverted) / canaryRequests;
    const baseErr = base.errors / base.requests;
    const cp95 = canary.latency.percentile(95);
    const bp95 = base.latency.percentile(95);
    let reason: string | undefined;
    if (canaryErr - baseErr > ar.maxErrorRateDelta)
      reason =
        `error rate ${(canaryErr * 100).toFixed(1)}% (${canary.diverted} diverted while unhealthy) ` +
        `vs ${(baseErr * 100).toFixed(1)}% (margin ${(ar.maxErrorRateDelta * 100).toFixed(1)} points)`;
    else if (cp95 !== undefined && bp95 !== undefined && bp95 > 0 && cp95 > bp95 * ar.maxP95Ratio)
      reason = `p95 ${cp95.toFixed(1)} ms vs ${bp95.toFixed(1)} ms (max ratio ${ar.maxP95Ratio})`;
    if (!reason) return;
    this.rollingBack.add(modelId);
    const split = { ...(routing.split ?? {}) };
    delete split[ar.canary];
    const next: ModelRouting = { ...routing, split, autoRollback: null };
    this.deps.logger.warn({ model: modelId, canary: ar.canary, reason }, 'canary rolled back automatically');
    void this.apply(modelId, next, false)
      .catch((err: unknown) => this.deps.logger.error({ err, model: modelId }, 'automatic canary rollback failed'))
      .finally(() => this.rollingBack.delete(modelId));
  }

  // ───────────── admin ─────────────

  private async apply(modelId: string, routing: ModelRouting, resetStats: boolean): Promise<ModelRow> {
    const row = await this.deps.registry.setRouting(modelId, routing);
    if (resetStats) this.stats.delete(modelId);
    await this.deps.fleet.refresh(modelId);
    return row;
  }

  private async versionsOf(modelId: string): Promise<{ model: ModelRow; versions: Set<string> }> {
    const model = await this.deps.registry.require(modelId);
    const [rows] = await this.deps.registry.versionsByModel([modelId]);
    return { model, versions: new Set((rows ?? []).map((v) => v.version)) };
  }

  private requireVersion(modelId: string, versions: Set<string>, version: string, path: string): void {
    if (!versions.has(version)) {
      throw new McpError('MCP_VERSION_NOT_FOUND', `${path}: model "${modelId}" has no version "${version}"`, { details: { path, model: modelId, version } });
    }
  }

  /** Weighted split among versions (only ready ones get traffic), optionally sticky per principal or header. Resets the variant stats. */
  async setTrafficSplit(modelId: string, split: SplitEntry[], sticky?: StickyInput | null): Promise<ModelRow> {
    const { model, versions } = await this.versionsOf(modelId);
    const out: Record<string, number> = {};
    split.forEach((e, i) => {
      this.requireVersion(modelId, versions, e.version, `split.${i}.version`);
      if (!Number.isFinite(e.weight) || e.weight < 0 || e.weight > 1_000_000) {
        throw new McpError('MCP_VALIDATION_FAILED', `split.${i}.weight: a finite number between 0 and 1000000`, { details: { path: `split.${i}.weight` } });
      }
      if (e.version in out)
        throw new McpError('MCP_VALIDATION_FAILED', `split.${i}.version: "${e.version}" is listed twice`, { details: { path: `split.${i}.version` } });
      out[e.version] = e.weight;
    });
    if (split.length && !Object.values(out).some((w) => w > 0)) {
      throw new McpError('MCP_VALIDATION_FAILED', 'split: at least one weight must be > 0 (send an empty split to route everything to the default version)', {
        details: { path: 'split' },
      });
    }
    let st: ModelRouting['sticky'] = null;
    if (sticky) {
      const header = sticky.header?.trim().toLowerCase();
      if (sticky.by === 'header' && header !== undefined && !/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(header)) {
        throw new McpError('MCP_VALIDATION_FAILED', 'sticky.header: not a valid header name', { details: { path: 'sticky.header' } });
      }
      st = sticky.by === 'principal' ? { by: 'principal' } : { by: 'header', header: header || 'x-mcp-affinity-key' };
    }
    const routing: ModelRouting = { ...model.routing, split: out, sticky: st };
    if (routing.autoRollback && !(routing.autoRollback.canary in out)) routing.autoRollback = null;
    return this.apply(modelId, routing, true);
  }

  /** Makes `version` the default with all the traffic (the split is cleared); the old default is kept for rollbackVersion. */
  async promoteVersion(modelId: string, version: string): Promise<ModelRow> {
    const { model, versions } = await this.versionsOf(modelId);
    this.requireVersion(modelId, versions, version, 'version');
    const routing: ModelRouting = { ...model.routing, split: {}, autoRollback: null };
    if (model.defaultVersion && model.defaultVersion !== version) routing.previousDefault = model.defaultVersion;
    if (routing.shadow?.version === version) routing.shadow = null;
    await this.deps.registry.update(modelId, { defaultVersion: version });
    return this.apply(modelId, routing, true);
  }

  /** Back to the default version before the last promotion (all traffic to it). */
  async rollbackVersion(modelId: string): Promise<ModelRow> {
    const { model, versions } = await this.versionsOf(modelId);
    const prev = model.routing.previousDefault;
    if (!prev || !versions.has(prev)) {
      throw new McpError('MCP_CONFLICT', `model "${modelId}" has no previous default version to roll back to`, { details: { model: modelId } });
    }
    const routing: ModelRouting = { ...model.routing, split: {}, autoRollback: null, previousDefault: model.defaultVersion };
    await this.deps.registry.update(modelId, { defaultVersion: prev });
    return this.apply(modelId, routing, true);
  }

  /** Mirrors `fraction` of the requests to `version` (answers recorded, never returned); null version or 0 turns it off. */
  async setShadow(modelId: string, version: string | null, fraction: number): Promise<ModelRow> {
    const { model, versions } = await this.versionsOf(modelId);
    if (!(fraction >= 0 && fraction <= 1)) throw new McpError('MCP_VALIDATION_FAILED', 'fraction: between 0 and 1', { details: { path: 'fraction' } });
    if (version) this.requireVersion(modelId, versions, version, 'version');
    const routing: ModelRouting = { ...model.routing, shadow: version && fraction > 0 ? { version, fraction } : null };
    return this.apply(modelId, routing, false);
  }

  /** Models tried in order when every instance of this one fails (at most 5). */
  async setFallbacks(modelId: string, fallbacks: string[]): Promise<ModelRow> {
    const model = await this.deps.registry.require(modelId);
    if (fallbacks.length > MAX_FALLBACKS)
      throw new McpError('MCP_VALIDATION_FAILED', `models: at most ${MAX_FALLBACKS} fallbacks`, { details: { path: 'models' } });
    const seen = new Set<string>();
    for (const [i, f] of fallbacks.entries()) {
      if (f === modelId) throw new McpError('MCP_VALIDATION_FAILED', `models.${i}: a model cannot fall back to itself`, { details: { path: `models.${i}` } });
      if (seen.has(f)) throw new McpError('MCP_VALIDATION_FAILED', `models.${i}: "${f}" is listed twice`, { details: { path: `models.${i}` } });
      seen.add(f);
      if (!(await this.deps.registry.get(f)))
        throw new McpError('MCP_MODEL_NOT_FOUND', `models.${i}: no model "${f}"`, { details: { path: `models.${i}`, model: f } });
    }
    return this.apply(modelId, { ...model.routing, fallbacks }, false);
  }

  /** The balancer plugin for this model (null: the configured default). */
  async setBalancer(modelId: string, balancer: string | null, known: readonly string[]): Promise<ModelRow> {
    const model = await this.deps.registry.require(modelId);
    if (balancer && !known.includes(balancer)) {
      throw new McpError('MCP_UNKNOWN_PLUGIN', `balancer: no balancer plugin named "${balancer}" (configured: ${known.join(', ')})`, {
        details: { path: 'balancer', available: [...known] },
      });
    }
    const routing: ModelRouting = { ...model.routing };
    if (balancer) routing.balancer = balancer;
    else delete routing.balancer;
    return this.apply(modelId, routing, false);
  }

  /** Automatic canary rollback policy (null turns it off). */
  async setAutoRollback(modelId: string, policy: AutoRollbackInput | null): Promise<ModelRow> {
    const { model, versions } = await this.versionsOf(modelId);
    if (policy) {
      this.requireVersion(modelId, versions, policy.canary, 'policy.canary');
      if (!(policy.maxErrorRateDelta >= 0 && policy.maxErrorRateDelta <= 1))
        throw new McpError('MCP_VALIDATION_FAILED', 'policy.maxErrorRateDelta: between 0 and 1', { details: { path: 'policy.maxErrorRateDelta' } });
      if (!(policy.maxP95Ratio >= 1))
        throw new McpError('MCP_VALIDATION_FAILED', 'policy.maxP95Ratio: at least 1', { details: { path: 'policy.maxP95Ratio' } });
      if (!(Number.isInteger(policy.minSamples) && policy.minSamples >= 1))
        throw new McpError('MCP_VALIDATION_FAILED', 'policy.minSamples: a positive integer', { details: { path: 'policy.minSamples' } });
    }
    return this.apply(modelId, { ...model.routing, autoRollback: policy }, false);
  }

  /** Whether calls to the model are idempotent (default true): when false, only failures where the request never ran are retried. */
  async setIdempotent(modelId: string, idempotent: boolean): Promise<ModelRow> {
    const model = await this.deps.registry.require(modelId);
    return this.apply(modelId, { ...model.routing, idempotent }, false);
  }

  /** Called with every feedback score stored (the metrics' accuracy). */
  onFeedback(fn: (modelId: string, version: string, score: number) => void): void {
    this.feedbackListeners.push(fn);
  }

  /** Attaches a score (0–1) and label to a recorded inference; returns whether it was found. */
  async submitFeedback(
    inferenceId: string,
    score: number,
    label: string | null,
  ): Promise<{ inferenceId: string; modelId: string; version: string; shadow: boolean }> {
    if (!(score >= 0 && score <= 1)) throw new McpError('MCP_VALIDATION_FAILED', 'score: between 0 and 1', { details: { path: 'score' } });
    if (!this.recorder) throw new McpError('MCP_CONFLICT', 'inference recording is off (router.recording.enabled); feedback cannot be stored');
    const row = await this.recorder.feedback(inferenceId, score, label);
    if (!row) throw new McpError('MCP_NOT_FOUND', `no recorded inference "${inferenceId}"`, { details: { inferenceId } });
    for (const fn of this.feedbackListeners) fn(row.modelId, row.version, score);
    return { inferenceId, ...row };
  }

  /** The model's variants: versions in the split (or the default), the shadow, and any version with stats. */
  async variants(model: ModelRow): Promise<VariantView[]> {
    const routing = model.routing ?? {};
    const split = routing.split && Object.keys(routing.split).length ? routing.split : model.defaultVersion ? { [model.defaultVersion]: 100 } : {};
    const keys = new Map<string, { version: string; shadow: boolean; weight: number }>();
    for (const [version, weight] of Object.entries(split)) keys.set(version, { version, shadow: false, weight });
    if (routing.shadow) keys.set(`${routing.shadow.version}#shadow`, { version: routing.shadow.version, shadow: true, weight: 0 });
    const m = this.stats.get(model.id);
    for (const key of m?.keys() ?? []) {
      if (!keys.has(key)) keys.set(key, { version: key.replace(/#shadow$/, ''), shadow: key.endsWith('#shadow'), weight: 0 });
    }
    const acc = this.recorder ? await this.recorder.accuracy(model.id) : [];
    return [...keys.entries()].map(([key, k]) => {
      const s = m?.get(key);
      const a = acc.find((r) => r.version === k.version && r.shadow === k.shadow);
      return {
        version: k.version,
        weight: k.weight,
        shadow: k.shadow,
        isDefault: !k.shadow && k.version === model.defaultVersion,
        requests: s?.requests ?? 0,
        errors: s?.errors ?? 0,
        errorRate: s && s.requests ? s.errors / s.requests : 0,
        diverted: s?.diverted ?? 0,
        p50Ms: s?.latency.percentile(50) ?? null,
        p95Ms: s?.latency.percentile(95) ?? null,
        accuracy: a ? a.accuracy : null,
        feedbackCount: a?.samples ?? 0,
      };
    });
  }

  async close(): Promise<void> {
    await this.recorder?.close();
  }
}
