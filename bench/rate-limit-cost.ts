/**
 * Rate-limit check cost: µs per inference admission (the check the inference service makes on every
 * call: rules matched, keys built, one atomic store decision; for a generative call also the token
 * reservation and its reconciliation), with the built-in memory store and the Redis store
 * (plugins/ratelimit-redis, one Lua script per decision) side by side in one run, at concurrency 1
 * and under load (64 checks in flight).
 *
 *   npx tsx --conditions=capibara-source bench/rate-limit-cost.ts      # REDIS_URL, default redis://127.0.0.1:6379
 *
 * Three rules apply to each call: 100 requests/min per API key, 1M tokens/month per principal, 600
 * requests/min per IP; 1000 distinct keys and 250 IPs, so nothing is refused and every call is a full decision.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { Registry } from 'prom-client';
import { dropRedisKeys, REDIS_URL } from '../test/support/redis.ts';
import { createRedisRateLimitStore } from '../plugins/ratelimit-redis/index.ts';
import { limitsConfigSchema } from '../src/limits/config.ts';
import { LimitsService } from '../src/limits/limits-service.ts';
import { MemoryRateLimitStore } from '../src/limits/memory-store.ts';
import { parseInferenceInput } from '../src/inference/request.ts';
import type { InferenceRequest } from '../src/inference/types.ts';
import type { RateLimitStore } from '../src/plugin/contract.ts';

const CHECKS = Number(process.env.BENCH_CHECKS ?? 20_000);
const PREFIX = `bench:rl:${randomBytes(4).toString('hex')}:`;

const config = limitsConfigSchema.parse({
  failurePolicy: 'closed',
  rules: [
    { name: 'per-key', scope: 'apiKey', requests: 100_000, period: '1m' },
    { name: 'monthly-tokens', scope: 'principal', tokens: 1_000_000_000, period: '30d' },
    { name: 'per-ip', scope: 'ip', requests: 600_000, period: '1m' },
  ],
});
const signal = new AbortController().signal;
const input = parseInferenceInput({ task: 'chat', messages: [{ role: 'user', content: 'Write a haiku about capybaras.' }], parameters: { maxTokens: 64 } });
const requests: InferenceRequest[] = Array.from({ length: 1000 }, (_, i) => ({
  id: `r${i}`,
  model: 'chat-model',
  input,
  stream: false,
  signal,
  entry: 'openai',
  principal: { id: `key-${i}`, via: 'api-key', roles: ['developer'] },
  ip: `10.0.${(i % 250) >> 4}.${i % 250}`,
}));

async function run(limits: LimitsService, concurrency: number): Promise<{ usPerCheck: number; p50: number; p99: number }> {
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < CHECKS) {
        const req = requests[next++ % requests.length]!;
        const s = performance.now();
        const admission = await limits.admit(req);
        latencies.push((performance.now() - s) * 1000);
        // As on the inference path: the reconciliation is not awaited by the call (it is counted in the wall time).
        void admission.settle({ totalTokens: 70, producedChars: 0, ran: true });
      }
    }),
  );
  await limits.idle();
  const total = (performance.now() - t0) * 1000;
  latencies.sort((a, b) => a - b);
  return { usPerCheck: total / CHECKS, p50: latencies[Math.floor(latencies.length * 0.5)]!, p99: latencies[Math.floor(latencies.length * 0.99)]! };
}

async function main(): Promise<void> {
  const logger = pino({ level: 'warn' });
  const redis = createRedisRateLimitStore({ url: REDIS_URL, keyPrefix: PREFIX, commandTimeoutMs: 2000 });
  const stores: Array<[string, RateLimitStore]> = [
    ['memory', new MemoryRateLimitStore()],
    ['redis', redis],
  ];
  const rows: string[] = [];
  for (const concurrency of [1, 64]) {
    for (const [name, store] of stores) {
      const limits = new LimitsService(config, store, logger, new Registry());
      await run(limits, concurrency); // warm-up (JIT, connection, script load)
      // The median of three runs by wall time per check (a shared machine is noisy).
      const runs = [await run(limits, concurrency), await run(limits, concurrency), await run(limits, concurrency)];
      const r = runs.sort((a, b) => a.usPerCheck - b.usPerCheck)[1]!;
      rows.push(`| ${name} | ${concurrency} | ${r.usPerCheck.toFixed(1)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} |`);
    }
  }
  await redis.close();
  await dropRedisKeys(PREFIX);
  process.stdout.write(
    [
      `rate-limit check cost, ${CHECKS} admissions per run, median of 3 (3 rules: request + token reservation, then reconciliation), node ${process.version}`,
      '',
      '| store | concurrency | µs per check (wall time / checks) | check latency p50 µs | check latency p99 µs |',
      '|---|---|---|---|---|',
      ...rows,
      '',
    ].join('\n'),
  );
}

await main();
