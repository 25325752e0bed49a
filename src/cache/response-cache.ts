import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { z } from 'zod';
import { mayUseModel } from '../auth/permissions.ts';
import type { Config } from '../config/schema.ts';
import type { ModelRouting } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import type { EventBus, ModelEventType } from '../events/bus.ts';
import type { InferenceChunk, InferenceOutput, InferenceRequest, RoutingDecision } from '../inference/types.ts';
import type { Fleet } from '../models/fleet.ts';
import type { ModelRegistry, ModelRow } from '../models/registry.ts';
import { parseInput } from '../validation.ts';
import { cacheControl, cacheKey, isDeterministic } from './key.ts';
import { MemoryStore } from './memory-store.ts';
import { RedisStore } from './redis-store.ts';
import type { CacheStore } from './store.ts';

/** Registry changes after which a model's cached answers are dropped. */
const PURGE_ON: ReadonlySet<ModelEventType> = new Set(['INSTANCE_ADDED', 'INSTANCE_REMOVED', 'VERSION_ADDED', 'MODEL_DELETED']);

export type CacheOutcome = 'hit' | 'miss' | 'bypass';
export type ModelCacheSettings = NonNullable<ModelRouting['cache']>;

/** What a request does with the cache: read it, keep its answer, under which key. */
export interface CachePlan {
  outcome: CacheOutcome;
  key?: string;
  read: boolean;
  write: boolean;
  ttlMs: number;
  model: string;
  version?: string;
}

/** An answer as kept: the output (infer) or every chunk (stream), and the instance that produced it. */
export type CachedAnswer =
  | { kind: 'result'; output: InferenceOutput; instanceId: string; runtime?: string }
  | { kind: 'stream'; chunks: InferenceChunk[]; instanceId: string; runtime?: string };

type CacheConfig = Config['cache'];

/**
 * The response cache: exact-match answers to deterministic requests of models that opted in
 * (routing.cache, set by setModelCache), in a byte-bounded LRU or in Redis. A key holds the model,
 * the version that answers, that version's instances as stored (a change to them starts new keys, on
 * every replica, since every replica reads the same rows), the sharing scope, whether streamed, and
 * the whole validated input (parameters included). The caller checks the principal may call the
 * model before asking; a principal limited to other models never reaches the store here either.
 */
export class ResponseCache {
  private readonly requests: Counter<'model' | 'outcome'>;
  private readonly errors: Counter<'op'>;
  private lastWarn = 0;

  constructor(
    private readonly config: CacheConfig,
    readonly store: CacheStore,
    private readonly deps: { registry: ModelRegistry; fleet: Fleet; logger: Logger; metrics: Registry },
  ) {
    this.requests = new Counter({
      name: 'mcp_cache_requests_total',
      help: 'Requests to models with a response cache, by outcome (hit, miss, bypass: not cacheable or cache-control).',
      labelNames: ['model', 'outcome'],
      registers: [deps.metrics],
    });
    this.errors = new Counter({
      name: 'mcp_cache_store_errors_total',
      help: 'Cache store calls that failed (the request went on uncached), by operation.',
      labelNames: ['op'],
      registers: [deps.metrics],
    });
    if (store instanceof MemoryStore) {
      new Gauge({
        name: 'mcp_cache_memory_bytes',
        help: 'Bytes of answers (keys included) the in-memory response cache holds.',
        registers: [deps.metrics],
        collect() {
          this.set(store.bytes);
        },
      });
    }
  }

  /** The largest answer kept, bytes of its JSON. */
  get maxEntryBytes(): number {
    return this.config.maxEntryBytes;
  }

  /** The settings input of setModelCache: enabled, and a TTL from 1 s to cache.maxTtlMs. */
  private settingsSchema() {
    return z.strictObject({ enabled: z.boolean(), ttlMs: z.number().int().min(1000).max(this.config.maxTtlMs).default(300_000) });
  }

  /** Turns the model's cache on or off, with its TTL (validated, bounded); stored in the model's routing, on every replica. */
  async setModelCache(modelId: string, raw: unknown): Promise<ModelRow> {
    const settings = parseInput(this.settingsSchema(), raw);
    const model = await this.deps.registry.require(modelId);
    const row = await this.deps.registry.setRouting(modelId, { ...model.routing, cache: settings });
    await this.deps.fleet.refresh(modelId);
    return row;
  }

  /** The model's settings; undefined when its answers are not cached. */
  settingsOf(modelId: string): ModelCacheSettings | undefined {
    const c = this.deps.fleet.view(modelId)?.routing.cache;
    return c?.enabled ? c : undefined;
  }

  /** What the request does with the cache; undefined when the model has no cache (no header, no metric). */
  plan(req: InferenceRequest): CachePlan | undefined {
    const view = this.deps.fleet.view(req.model);
    const settings = view?.routing.cache;
    if (!view || !settings?.enabled) return undefined;
    if (req.principal && !mayUseModel(req.principal, req.model)) return undefined;
    const bypass: CachePlan = { outcome: 'bypass', read: false, write: false, ttlMs: settings.ttlMs, model: req.model };
    const cc = cacheControl(req.headers);
    if (cc.noCache && cc.noStore) return bypass;
    if (!isDeterministic(req.input)) return bypass;
    // An unpinned request to a model with a traffic split may go to any of its versions: not cached.
    const split = Object.values(view.routing.split ?? {}).some((w) => w > 0);
    const version = req.version ?? (split ? undefined : (view.defaultVersion ?? undefined));
    if (!version) return bypass;
    const versionRow = this.deps.registry.versionsOf(req.model).find((v) => v.version === version);
    if (!versionRow) return bypass;
    let generation = versionRow.id;
    for (const i of this.deps.registry.instancesOf(versionRow.id)) generation += `|${i.id}@${i.createdAt.getTime()}.${i.updatedAt.getTime()}`;
    const key = cacheKey({ model: req.model, version, generation, scope: this.scopeOf(req), stream: req.stream, input: req.input });
    return { outcome: cc.noCache ? 'bypass' : 'miss', key, read: !cc.noCache, write: true, ttlMs: settings.ttlMs, model: req.model, version };
  }

  private scopeOf(req: InferenceRequest): string {
    if (this.config.scope === 'model') return '';
    const p = req.principal;
    const tenant = p?.claims?.tenant;
    if (this.config.scope === 'tenant' && (typeof tenant === 'string' || typeof tenant === 'number')) return `t:${tenant}`;
    return p ? `p:${p.via}:${p.id}` : 'p:';
  }

  /** Reads the answer (a failing store is a miss); counts the outcome and tells the entry point (x-mcp-cache). */
  async lookup(req: InferenceRequest, plan: CachePlan): Promise<CachedAnswer | undefined> {
    let hit: CachedAnswer | undefined;
    if (plan.read && plan.key) {
      try {
        const raw = await this.store.get(plan.key);
        if (raw !== undefined) hit = JSON.parse(raw) as CachedAnswer;
      } catch (err) {
        this.failed('get', err);
      }
      if (hit && hit.kind !== (req.stream ? 'stream' : 'result')) hit = undefined;
    }
    const outcome = hit ? 'hit' : plan.outcome;
    this.requests.inc({ model: plan.model, outcome });
    req.onCache?.(outcome);
    return hit;
  }

  /**
   * Keeps the answer when the plan says so and the planned version answered it (not a fallback
   * model, not another variant) and it fits cache.maxEntryBytes. Not awaited by the request.
   */
  keep(plan: CachePlan, answer: CachedAnswer, decision: RoutingDecision | undefined, version: string): void {
    if (!plan.write || !plan.key || version !== plan.version) return;
    if (decision && (decision.model !== plan.model || decision.version !== plan.version || decision.fallbacks.length > 0)) return;
    const value = JSON.stringify(answer);
    if (value.length > this.config.maxEntryBytes || Buffer.byteLength(value) > this.config.maxEntryBytes) return;
    this.store.set(plan.key, value, plan.ttlMs).catch((err: unknown) => this.failed('set', err));
  }

  private failed(op: 'get' | 'set' | 'purge', err: unknown): void {
    this.errors.inc({ op });
    if (Date.now() - this.lastWarn > 30_000) {
      this.lastWarn = Date.now();
      this.deps.logger.warn({ op, err: (err as Error).message, store: this.store.kind }, 'response cache store failed; requests go on uncached');
    }
  }

  /**
   * Drops a model's answers when its instances or versions change (the keys change then too, but a
   * set of instances can come back to one seen before, e.g. an instance added and removed again).
   * The memory store follows every replica's changes; the Redis store is purged once, by the replica
   * that made the change.
   */
  watch(events: EventBus, signal: AbortSignal): void {
    void (async () => {
      for await (const e of events.subscribe('modelEvents', signal)) {
        if (!PURGE_ON.has(e.type) || !this.settingsOf(e.modelId)) continue;
        if (this.store.kind === 'redis' && e.origin !== this.deps.registry.origin) continue;
        await this.store.purge(`${e.modelId}:`).catch((err: unknown) => this.failed('purge', err));
      }
    })();
  }

  close(): Promise<void> {
    return this.store.close();
  }
}

/** The configured store: memory (this process) or Redis (cache.redisUrl, else events.redisUrl). */
export function createResponseCache(config: Config, deps: ConstructorParameters<typeof ResponseCache>[2]): ResponseCache {
  const c = config.cache;
  let store: CacheStore;
  if (c.store === 'redis') {
    const url = c.redisUrl ?? config.events.redisUrl;
    if (!url)
      throw new McpError('MCP_CONFIG_INVALID', 'cache.store is redis: set cache.redisUrl (or events.redisUrl)', { details: { path: 'cache.redisUrl' } });
    let lastError = 0;
    store = new RedisStore({
      url,
      keyPrefix: c.keyPrefix,
      commandTimeoutMs: c.redisTimeoutMs,
      onError: (err) => {
        if (Date.now() - lastError < 30_000) return;
        lastError = Date.now();
        deps.logger.warn({ err: err.message }, 'response cache: redis connection error');
      },
    });
  } else {
    store = new MemoryStore(c.maxBytes);
  }
  return new ResponseCache(c, store, deps);
}
