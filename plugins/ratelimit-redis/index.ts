/**
 * `ratelimit-redis`: the rate-limit store shared by gateway replicas. Each key's GCRA state (its
 * theoretical arrival time, ms) is one Redis string; every decision is one Lua script run
 * (EVALSHA), so check-and-spend over several keys is atomic across replicas. The clock is Redis
 * `TIME`, the same for every replica. Commands time out quickly and nothing queues while Redis is
 * away (the gateway applies `limits.failurePolicy`); the client reconnects by itself.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { z } from 'zod';
import { definePlugin, type RateLimitCharge, type RateLimitDecision, type RateLimitStore } from 'capibara-mcp';

/**
 * KEYS: the bucket keys. ARGV[1]: now in ms ('' → Redis TIME), ARGV[2]: 'spend' or 'adjust',
 * then cost, interval, burst per key. Spend answers allowed, remaining, retry-after and reset per
 * key (as strings, to keep fractions), and writes only when every key fits.
 */
const SCRIPT = `
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local mode = ARGV[2]
local eps = 2e-3
local n = #KEYS
local tats = {}
local out = {}
local all = true
for i = 1, n do
  local cost = tonumber(ARGV[3 * i])
  local interval = tonumber(ARGV[3 * i + 1])
  local burst = tonumber(ARGV[3 * i + 2])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if tat < now then tat = now end
  local nxt = tat + cost * interval
  if mode == 'adjust' then
    if nxt < now then nxt = now end
    tats[i] = nxt
  else
    local tol = burst * interval
    if nxt - now <= tol + eps then
      tats[i] = nxt
      out[#out + 1] = '1'
      out[#out + 1] = tostring(math.max(0, math.floor((tol - (nxt - now) + eps) / interval)))
      out[#out + 1] = '0'
      out[#out + 1] = string.format('%.3f', nxt - now)
    else
      all = false
      out[#out + 1] = '0'
      out[#out + 1] = tostring(math.max(0, math.floor((tol - (tat - now) + eps) / interval)))
      out[#out + 1] = string.format('%.3f', nxt - now - tol)
      out[#out + 1] = string.format('%.3f', tat - now)
    end
  end
end
if all then
  for i = 1, n do
    local ttl = math.ceil(tats[i] - now)
    if ttl <= 0 then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], string.format('%.3f', tats[i]), 'PX', ttl + 1000)
    end
  end
end
return out
`;

export const optionsSchema = z.strictObject({
  /** Redis URL; default REDIS_URL, then redis://127.0.0.1:6379. */
  url: z.string().url().optional(),
  /** Prefix of every key (one per deployment sharing a Redis). */
  keyPrefix: z.string().max(64).default('mcp:rl:'),
  /** A command slower than this fails (the gateway applies its failure policy), ms. */
  commandTimeoutMs: z.number().int().min(10).max(10_000).default(250),
  /** Connecting (first use, reconnects) gives up after this, ms. */
  connectTimeoutMs: z.number().int().min(10).max(60_000).default(1000),
  /** Longest wait between reconnection attempts while Redis is away, ms. */
  maxReconnectDelayMs: z.number().int().min(10).max(60_000).default(1000),
});
export type RedisRateLimitOptions = z.input<typeof optionsSchema> & {
  /** Clock in ms instead of Redis TIME (tests with a fake clock). */
  now?: () => number;
};

type ScriptClient = Redis & { mcpGcra(numKeys: number, ...args: Array<string | number>): Promise<string[]> };

export interface RedisRateLimitStore extends RateLimitStore {
  /** Whether the client is connected and ready. */
  readonly ready: boolean;
  close(): Promise<void>;
}

/** A Redis-backed store; connects on first use (a configured but unused store opens no connection). */
export function createRedisRateLimitStore(input: RedisRateLimitOptions = {}, onError?: (err: Error) => void): RedisRateLimitStore {
  const { now, ...rest } = input;
  const o = optionsSchema.parse(rest);
  const url = o.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  let client: ScriptClient | undefined;
  let connecting: Promise<void> | undefined;
  let lastAnswer = Date.now();

  function open(): ScriptClient {
    const options: RedisOptions = {
      lazyConnect: true,
      keyPrefix: o.keyPrefix,
      commandTimeout: o.commandTimeoutMs,
      connectTimeout: o.connectTimeoutMs,
      // Fail at once while disconnected instead of queueing: nothing waits on a dead Redis, nothing stale runs later.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (times) => Math.min(times * 50, o.maxReconnectDelayMs),
    };
    const c = new Redis(url, options) as ScriptClient;
    c.defineCommand('mcpGcra', { lua: SCRIPT });
    c.on('error', (err: Error) => onError?.(err));
    return c;
  }

  async function ready(): Promise<ScriptClient> {
    if (!client) {
      client = open();
      connecting = client.connect().catch(() => {
        /* reported by 'error'; the client keeps reconnecting */
      });
    }
    if (client.status !== 'ready') {
      // Only the very first calls wait for the first connection, bounded by the connect timeout.
      if (connecting) await connecting;
      const status: string = client.status;
      if (status !== 'ready') throw new Error(`redis not ready (${status})`);
    }
    return client;
  }

  /** Runs one script call; a connection that has answered nothing for a while (a partition) is dropped and reconnected. */
  async function run(mode: 'spend' | 'adjust', charges: readonly RateLimitCharge[]): Promise<string[]> {
    const c = await ready();
    try {
      const out = await c.mcpGcra(charges.length, ...args(charges, mode));
      lastAnswer = Date.now();
      return out;
    } catch (err) {
      if (/timed out/i.test((err as Error).message) && Date.now() - lastAnswer > 4 * o.commandTimeoutMs && c.status === 'ready') {
        lastAnswer = Date.now();
        c.disconnect(true);
      }
      throw err;
    }
  }

  function args(charges: readonly RateLimitCharge[], mode: 'spend' | 'adjust'): Array<string | number> {
    const a: Array<string | number> = [];
    for (const c of charges) a.push(c.key);
    a.push(now ? String(now()) : '', mode);
    for (const c of charges) a.push(c.cost, c.intervalMs, c.burst);
    return a;
  }

  return {
    get ready() {
      return client?.status === 'ready';
    },
    async spend(charges) {
      if (charges.length === 0) return [];
      const out = await run('spend', charges);
      const decisions: RateLimitDecision[] = [];
      for (let i = 0; i < charges.length; i++) {
        decisions.push({
          allowed: out[4 * i] === '1',
          remaining: Number(out[4 * i + 1]),
          retryAfterMs: Number(out[4 * i + 2]),
          resetMs: Number(out[4 * i + 3]),
        });
      }
      return decisions;
    },
    async adjust(charges) {
      if (charges.length === 0) return;
      await run('adjust', charges);
    },
    async close() {
      const c = client;
      client = undefined;
      if (c) await c.quit().catch(() => c.disconnect());
    },
  };
}

export default definePlugin({
  name: 'ratelimit-redis',
  kind: 'rateLimitStore',
  apiVersion: '^1.0.0',
  description: 'Rate-limit counters in Redis (GCRA, one Lua script per decision): limits hold across replicas',
  options: optionsSchema,
  setup(ctx, options) {
    let lastLog = 0;
    const store = createRedisRateLimitStore(options, (err) => {
      if (Date.now() - lastLog < 10_000) return;
      lastLog = Date.now();
      ctx.logger.warn({ err: err.message }, 'redis rate-limit store error');
    });
    ctx.onClose(() => store.close());
    ctx.onHealth(() => ({ ok: true, detail: store.ready ? 'connected' : 'not connected (the gateway applies limits.failurePolicy)' }));
    return store;
  },
});
