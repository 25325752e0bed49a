import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { McpError } from '../errors.ts';
import type { InferenceRequest } from '../inference/types.ts';
import type { RateLimitCharge, RateLimitDecision, RateLimitStore } from '../plugin/contract.ts';
import type { LimitsConfig } from './config.ts';
import { type LimitPolicyState } from './headers.ts';
import { MemoryRateLimitStore } from './memory-store.ts';
import { compileRule, ipBucket, requestCharge, tokenCharge, type CompiledRule, type LimitSubject } from './rules.ts';
import { estimateTokens, isGenerative, tokensUsed } from './tokens.ts';

/** What a call produced, for reconciling its token reservation. */
export interface UsageReport {
  /** The backend's reported total tokens, when it reported usage. */
  totalTokens?: number;
  /** Characters of text produced (streams cut short count what went out). */
  producedChars: number;
  /** Whether the model ran at all (false: nothing was produced, the whole reservation is refunded). */
  ran: boolean;
}

/** An admitted inference call: its limits' state (for headers) and its token reservation, settled once when the call ends. */
export interface Admission {
  readonly policies: readonly LimitPolicyState[];
  /** Reconciles the token reservation with the real usage (refund or charge the difference). Idempotent; never throws. */
  settle(usage: UsageReport): Promise<void>;
}

const SETTLED = Promise.resolve();
const UNLIMITED: Admission = { policies: [], settle: () => SETTLED };

/** One charge and where it came from. */
interface Applied {
  compiled: CompiledRule;
  kind: 'requests' | 'tokens';
  charge: RateLimitCharge;
}

const FAILED_AUTH_RULE = 'failed-auth';
const WARN_EVERY_MS = 10_000;
const MAX_BLOCKED = 100_000;

/**
 * Rate and token limits (config `limits`): request counts for every inference call and, for
 * generative calls, a token reservation reconciled after the call; `checkRequest` for rules on every
 * request; the failed-authentication limit per client IP. Counters live in the configured store
 * (memory, or a shared one such as Redis); when the store fails, `failurePolicy` decides.
 */
export class LimitsService {
  private readonly inferenceRules: CompiledRule[];
  private readonly requestRules: CompiledRule[];
  private readonly failedAuthCharge?: Omit<RateLimitCharge, 'key'> & { quota: number; period: number };
  /** Client IP buckets refused by the failed-auth limit, until (epoch ms); per replica, learnt from the shared store. */
  private readonly blocked = new Map<string, number>();
  private readonly decisions: Counter<'rule' | 'outcome'>;
  private readonly storeErrors: Counter<'op'>;
  private lastWarn = 0;
  /** The store when it is the in-process memory store (answered synchronously). */
  private readonly memory: MemoryRateLimitStore | undefined;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly config: LimitsConfig,
    private readonly store: RateLimitStore,
    private readonly logger: Logger,
    registry: Registry,
  ) {
    this.memory = store instanceof MemoryRateLimitStore ? store : undefined;
    const compiled = config.rules.map(compileRule);
    this.inferenceRules = compiled.filter((r) => r.rule.on === 'inference');
    this.requestRules = compiled.filter((r) => r.rule.on === 'all');
    const fa = config.failedAuth;
    if (fa) {
      const burst = fa.burst ?? fa.requests;
      this.failedAuthCharge = { cost: 1, intervalMs: fa.period / fa.requests, burst, quota: fa.requests, period: fa.period };
    }
    this.decisions = new Counter({
      name: 'mcp_rate_limit_decisions_total',
      help: 'Rate-limit decisions by rule and outcome (allowed, limited, store_error_open, store_error_closed).',
      labelNames: ['rule', 'outcome'],
      registers: [registry],
    });
    this.storeErrors = new Counter({
      name: 'mcp_rate_limit_store_errors_total',
      help: 'Rate-limit store calls that failed (unreachable, timed out), by operation.',
      labelNames: ['op'],
      registers: [registry],
    });
  }

  /** Whether any rule is configured (the inference path skips everything otherwise). */
  get active(): boolean {
    return this.inferenceRules.length > 0;
  }

  /**
   * Admits an inference call or throws MCP_RATE_LIMITED (429) / MCP_RATE_LIMIT_UNAVAILABLE (503, store down with
   * `failurePolicy: closed`). Spends one request of every matching rule and reserves the call's estimated tokens.
   */
  admit(req: InferenceRequest): Admission | Promise<Admission> {
    if (this.inferenceRules.length === 0) return UNLIMITED;
    const subject: LimitSubject = { principal: req.principal, ip: req.ip, model: req.model, entry: req.entry };
    const estimate = isGenerative(req.input) ? estimateTokens(req.input, this.config.tokenEstimate) : 0;
    const applied = this.chargesFor(this.inferenceRules, subject, estimate);
    if (applied.length === 0) return UNLIMITED;
    const policies = this.decide(applied);
    return policies instanceof Promise ? policies.then((p) => this.admission(req, applied, p)) : this.admission(req, applied, policies);
  }

  private admission(req: InferenceRequest, applied: Applied[], policies: LimitPolicyState[]): Admission {
    const tokens = applied.filter((a) => a.kind === 'tokens');
    if (tokens.length === 0) return { policies, settle: UNLIMITED.settle };
    return { policies, settle: this.settler(req, tokens) };
  }

  /**
   * For the HTTP/GraphQL layer: checks the `on: all` rules for one request (any kind, inference included) and spends
   * one request of each; throws like `admit`. Returns the policies' state for RateLimit headers.
   */
  /** True when `on: all` rules are configured (otherwise checkRequest has nothing to do). */
  get checksRequests(): boolean {
    return this.requestRules.length > 0;
  }

  async checkRequest(subject: LimitSubject): Promise<readonly LimitPolicyState[]> {
    if (this.requestRules.length === 0) return [];
    const applied = this.chargesFor(this.requestRules, subject, 0);
    return applied.length === 0 ? [] : this.decide(applied);
  }

  /**
   * A credential from `ip` was rejected: spends one unit of the IP's failed-auth allowance (never a user's quota).
   * Once it is spent, `assertAuthAllowed(ip)` refuses that IP until the allowance refills.
   */
  async failedAuth(ip: string | undefined): Promise<RateLimitDecision> {
    const fa = this.failedAuthCharge;
    if (!fa) return { allowed: true, remaining: Infinity, retryAfterMs: 0, resetMs: 0 };
    const bucket = ipBucket(ip);
    const charge: RateLimitCharge = { key: `${FAILED_AUTH_RULE}:ip=${bucket}`, cost: 1, intervalMs: fa.intervalMs, burst: fa.burst };
    let d: RateLimitDecision;
    try {
      [d] = (await this.store.spend([charge])) as [RateLimitDecision];
      this.decisions.inc({ rule: FAILED_AUTH_RULE, outcome: d.allowed ? 'allowed' : 'limited' });
    } catch (err) {
      this.storeFailed('spend', err, [FAILED_AUTH_RULE]);
      if (this.config.failurePolicy === 'open') return { allowed: true, remaining: 0, retryAfterMs: 0, resetMs: 0 };
      d = { allowed: false, remaining: 0, retryAfterMs: 1000, resetMs: 1000 };
    }
    // Blocked once nothing is left: until one unit is back (refused: until this failure would have fit).
    const waitMs = d.allowed ? (d.remaining < 1 ? d.resetMs - (fa.burst - 1) * fa.intervalMs : 0) : d.retryAfterMs;
    if (waitMs > 0) this.block(bucket, Date.now() + waitMs);
    return d;
  }

  /** Before running auth strategies: throws MCP_RATE_LIMITED when `ip` has used up its failed-auth allowance. Synchronous, no store call. */
  assertAuthAllowed(ip: string | undefined): void {
    const fa = this.failedAuthCharge;
    if (!fa || this.blocked.size === 0) return;
    const bucket = ipBucket(ip);
    const until = this.blocked.get(bucket);
    if (until === undefined) return;
    const waitMs = until - Date.now();
    if (waitMs <= 0) {
      this.blocked.delete(bucket);
      return;
    }
    const policy: LimitPolicyState = { name: FAILED_AUTH_RULE, q: fa.quota, w: Math.round(fa.period / 1000), r: 0, t: Math.ceil(waitMs / 1000) };
    throw new McpError('MCP_RATE_LIMITED', `too many failed authentications from this address; retry in ${policy.t}s`, {
      details: { retryAfterMs: Math.ceil(waitMs), rule: FAILED_AUTH_RULE, limit: 'requests', policies: [policy] },
    });
  }

  /** Resolves when every reconciliation started so far has reached the store (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private block(bucket: string, until: number): void {
    if (this.blocked.size >= MAX_BLOCKED) {
      const now = Date.now();
      for (const [k, t] of this.blocked) if (t <= now) this.blocked.delete(k);
      if (this.blocked.size >= MAX_BLOCKED) this.blocked.delete(this.blocked.keys().next().value!);
    }
    this.blocked.set(bucket, until);
  }

  private chargesFor(rules: readonly CompiledRule[], subject: LimitSubject, tokens: number): Applied[] {
    const applied: Applied[] = [];
    for (const compiled of rules) {
      if (!compiled.matches(subject)) continue;
      const key = compiled.keyOf(subject);
      if (key === undefined) continue;
      const r = requestCharge(compiled, key);
      if (r) applied.push({ compiled, kind: 'requests', charge: r });
      const t = tokens > 0 ? tokenCharge(compiled, key, tokens) : undefined;
      if (t) applied.push({ compiled, kind: 'tokens', charge: t });
    }
    return applied;
  }

  /**
   * One atomic spend for every applied charge; throws when one does not fit or (closed policy) the store fails.
   * The in-process memory store answers at once (no promise on the inference path); other stores asynchronously.
   */
  private decide(applied: Applied[]): LimitPolicyState[] | Promise<LimitPolicyState[]> {
    const charges = applied.map((a) => a.charge);
    if (this.memory) return this.judge(applied, this.memory.spendNow(charges));
    let spent: Promise<RateLimitDecision[]>;
    try {
      spent = this.store.spend(charges);
    } catch (err) {
      return this.spendFailed(applied, err);
    }
    return spent.then(
      (decisions) => this.judge(applied, decisions),
      (err: unknown) => this.spendFailed(applied, err),
    );
  }

  /** The store could not be asked: the failure policy decides. */
  private spendFailed(applied: Applied[], err: unknown): LimitPolicyState[] {
    this.storeFailed(
      'spend',
      err,
      applied.map((a) => a.compiled.rule.name),
    );
    if (this.config.failurePolicy === 'closed') {
      throw new McpError('MCP_RATE_LIMIT_UNAVAILABLE', 'the rate-limit store cannot be reached; retry shortly', { details: { retryAfterMs: 1000 } });
    }
    // Open: the call goes through with nothing reserved; settling charges what it really used (if the store is back by then).
    for (const a of applied) if (a.kind === 'tokens') a.charge = { ...a.charge, cost: 0 };
    return [];
  }

  /** The store's decisions: the policies' state, or MCP_RATE_LIMITED for the charge that waits longest. */
  private judge(applied: Applied[], decisions: RateLimitDecision[]): LimitPolicyState[] {
    const policies = new Array<LimitPolicyState>(applied.length);
    let worst = -1;
    for (let i = 0; i < applied.length; i++) {
      const d = decisions[i]!;
      policies[i] = policyOf(applied[i]!, d);
      if (!d.allowed && (worst < 0 || d.retryAfterMs > decisions[worst]!.retryAfterMs)) worst = i;
    }
    if (worst < 0) {
      for (const a of applied)
        if (a.kind === 'requests' || !applied.some((b) => b.compiled === a.compiled && b.kind === 'requests'))
          this.decisions.inc({ rule: a.compiled.rule.name, outcome: 'allowed' });
      return policies;
    }
    for (let i = 0; i < applied.length; i++) if (!decisions[i]!.allowed) this.decisions.inc({ rule: applied[i]!.compiled.rule.name, outcome: 'limited' });
    const w = applied[worst]!;
    const retryAfterMs = Math.max(1, Math.ceil(decisions[worst]!.retryAfterMs));
    const rule = w.compiled.rule.name;
    throw new McpError('MCP_RATE_LIMITED', `rate limit "${rule}" (${w.kind}) exceeded; retry in ${Math.ceil(retryAfterMs / 1000)}s`, {
      details: { retryAfterMs, rule, limit: w.kind, policies },
    });
  }

  /** The reconciliation of one call's token reservation, run at most once. */
  private settler(req: InferenceRequest, tokens: Applied[]): Admission['settle'] {
    let settled = false;
    return (usage) => {
      if (settled) return Promise.resolve();
      settled = true;
      const used = tokensUsed(req.input, this.config.tokenEstimate, usage);
      const adjustments = tokens.map((a) => ({ ...a.charge, cost: used - a.charge.cost })).filter((c) => c.cost !== 0);
      if (adjustments.length === 0) return Promise.resolve();
      const p = this.store.adjust(adjustments).then(
        () => undefined,
        (err) =>
          this.storeFailed(
            'adjust',
            err,
            tokens.map((a) => a.compiled.rule.name),
          ),
      );
      this.pending.add(p);
      void p.finally(() => this.pending.delete(p));
      return p;
    };
  }

  /** Counts a store failure and warns at most every 10 s; the caller applies the failure policy. */
  private storeFailed(op: 'spend' | 'adjust', err: unknown, rules: readonly string[]): void {
    this.storeErrors.inc({ op });
    const outcome = this.config.failurePolicy === 'open' ? 'store_error_open' : 'store_error_closed';
    if (op === 'spend') for (const rule of new Set(rules)) this.decisions.inc({ rule, outcome });
    const now = Date.now();
    if (now - this.lastWarn >= WARN_EVERY_MS) {
      this.lastWarn = now;
      this.logger.warn({ store: this.config.store, op, policy: this.config.failurePolicy, err: (err as Error)?.message }, 'rate-limit store unavailable');
    }
  }
}

function policyOf(a: Applied, d: RateLimitDecision): LimitPolicyState {
  const shape = a.kind === 'requests' ? a.compiled.requests! : a.compiled.tokens!;
  const ms = d.allowed ? d.resetMs : d.retryAfterMs;
  return {
    name: a.kind === 'requests' ? a.compiled.rule.name : `${a.compiled.rule.name}-tokens`,
    q: shape.quota,
    w: Math.round(a.compiled.rule.period / 1000),
    r: Math.max(0, Math.floor(d.remaining)),
    t: Math.max(0, Math.ceil(ms / 1000)),
  };
}
