import { z } from 'zod';

/** What a rule counts per: each combination of these values has its own bucket. `global`: one bucket for everyone. */
export const LIMIT_SCOPES = ['global', 'principal', 'apiKey', 'ip', 'model'] as const;
export type LimitScope = (typeof LIMIT_SCOPES)[number];

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
/** Shortest and longest period a limit may have: 1 s … 31 days. */
export const MIN_PERIOD_MS = 1000;
export const MAX_PERIOD_MS = 31 * UNIT_MS.d;

/** `1s`, `1m`, `1h`, `1d`, `30d` (ms, s, m, h, d units) or a number of ms; 1 s … 31 days. */
export const periodSchema = z
  .union([z.number().int(), z.string().regex(/^\d{1,10}(ms|s|m|h|d)$/, 'a number and a unit: 500ms, 1s, 1m, 1h, 1d, 30d')])
  .transform((v) => (typeof v === 'number' ? v : Number(/^\d+/.exec(v)![0]) * UNIT_MS[/[a-z]+$/.exec(v)![0] as keyof typeof UNIT_MS]))
  .pipe(z.number().min(MIN_PERIOD_MS, 'at least 1s').max(MAX_PERIOD_MS, 'at most 31d'));

const units = z.number().int().min(1).max(1e12);
const names = z.array(z.string().min(1).max(256)).min(1).max(1000);

export const limitRuleSchema = z
  .strictObject({
    /** Names the rule in metrics, headers and errors. */
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lower-case letters, digits, "_" or "-"')
      .refine((n) => n !== 'failed-auth', '"failed-auth" is the failed-authentication limit (limits.failedAuth)'),
    /** One scope or a combination (`[principal, model]`): a bucket per distinct value. */
    scope: z.union([z.enum(LIMIT_SCOPES), z.array(z.enum(LIMIT_SCOPES)).min(1).max(LIMIT_SCOPES.length)]).transform((s) => {
      const list = typeof s === 'string' ? [s] : s;
      return LIMIT_SCOPES.filter((x) => list.includes(x));
    }),
    /**
     * `inference` (default): checked by the inference service on every inference call, any entry point.
     * `all`: checked for every request where the HTTP/GraphQL layer calls `limits.checkRequest` (inference included).
     */
    on: z.enum(['inference', 'all']).default('inference'),
    /** The rule applies only to requests matching every listed field. */
    match: z
      .strictObject({
        /** Principals with one of these roles. */
        roles: names.optional(),
        /** These model ids. */
        models: names.optional(),
        /** These entry points (graphql, rest, openai, kserve, websocket). */
        entries: names.optional(),
      })
      .optional(),
    /** Requests allowed per period. */
    requests: units.optional(),
    /** Requests allowed at once (bucket size); default `requests`. */
    burst: units.optional(),
    /** Tokens (prompt + completion) allowed per period, for generative calls (generate, chat). */
    tokens: units.optional(),
    /** Tokens allowed at once; default `tokens`. */
    tokenBurst: units.optional(),
    /** The period both `requests` and `tokens` refer to. */
    period: periodSchema,
  })
  .refine((r) => r.requests !== undefined || r.tokens !== undefined, { message: 'a rule needs `requests` or `tokens` (or both)' })
  .refine((r) => r.tokens === undefined || r.on === 'inference', { message: '`tokens` limits apply to inference rules only (on: inference)' });
export type LimitRule = z.output<typeof limitRuleSchema>;

/** `limits`: request and token limits per principal, API key, IP and model. See docs/security/limits.md. */
export const limitsConfigSchema = z
  .strictObject({
    /** `memory` (default, built in: per replica) or the configured name of a rateLimitStore plugin (e.g. `ratelimit-redis`: shared). */
    store: z.string().min(1).default('memory'),
    /** When the store cannot be reached: `closed` (default) answers 503 MCP_RATE_LIMIT_UNAVAILABLE, `open` lets requests through. */
    failurePolicy: z.enum(['open', 'closed']).default('closed'),
    /** Limits; none by default. A request must fit every rule that matches it. */
    rules: z
      .array(limitRuleSchema)
      .max(100)
      .default([])
      .refine((rules) => new Set(rules.map((r) => r.name)).size === rules.length, { message: 'rule names must be unique' }),
    /** Failed authentications allowed per client IP (a failure spends nothing of any user's quota); `false` turns it off. */
    failedAuth: z
      .union([z.literal(false), z.strictObject({ requests: units, period: periodSchema, burst: units.optional() })])
      .default({ requests: 10, period: 60_000 }),
    /** How a token reservation is estimated before a generative call; reconciled with the real usage after it. */
    tokenEstimate: z
      .strictObject({
        /** Prompt characters per token (the prompt estimate is its length / this). */
        charsPerToken: z.number().min(1).max(16).default(4),
        /** Tokens a chat template adds per message (and once more for the reply's priming). */
        messageOverheadTokens: z.number().int().min(0).max(64).default(4),
        /** Completion tokens reserved when the request sets no max tokens. */
        defaultCompletionTokens: z.number().int().min(0).max(1_000_000).default(512),
        /** Most tokens one request reserves (also capped by the rule's token burst). */
        maxReservation: z.number().int().min(1).max(10_000_000).default(65_536),
      })
      .prefault({}),
  })
  .prefault({});
export type LimitsConfig = z.output<typeof limitsConfigSchema>;
