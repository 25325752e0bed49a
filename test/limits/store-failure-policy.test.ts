/**
 * The failure policy on its own, with a store whose backing service is gone (every call rejects):
 * open lets calls through and warns at most once per 10 s however many fail; closed refuses with
 * 503 MCP_RATE_LIMIT_UNAVAILABLE; a failed reconciliation never fails the call.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { limitsConfigSchema } from '../../src/limits/config.ts';
import { LimitsService } from '../../src/limits/limits-service.ts';
import { parseInferenceInput } from '../../src/inference/request.ts';
import type { InferenceRequest } from '../../src/inference/types.ts';
import type { RateLimitStore } from '../../src/plugin/contract.ts';

const gone: RateLimitStore = {
  spend: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379')),
  adjust: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:6379')),
};

function service(failurePolicy: 'open' | 'closed') {
  const lines: Array<{ msg: string; level: number }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  const config = limitsConfigSchema.parse({
    store: 'ratelimit-redis',
    failurePolicy,
    rules: [{ name: 'tok', scope: 'principal', requests: 10, tokens: 1000, period: '1h' }],
  });
  return { limits: new LimitsService(config, gone, pino({ level: 'warn' }, sink), new Registry()), lines };
}

const req: InferenceRequest = {
  id: 'r',
  model: 'm',
  input: parseInferenceInput({ task: 'generate', prompt: 'hello' }),
  stream: false,
  signal: new AbortController().signal,
  entry: 'rest',
  principal: { id: 'alice', via: 'password', roles: [] },
};

describe('limits.failurePolicy with the store gone', () => {
  it('open: every call goes through, nothing reserved; one warning for 200 failures; reconciliation failures are swallowed', async () => {
    const { limits, lines } = service('open');
    for (let i = 0; i < 200; i++) {
      const a = await limits.admit(req);
      expect(a.policies).toEqual([]);
      await expect(a.settle({ totalTokens: 12, producedChars: 40, ran: true })).resolves.toBeUndefined();
    }
    await new Promise((r) => setImmediate(r));
    const warnings = lines.filter((l) => l.msg === 'rate-limit store unavailable');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, policy: 'open', store: 'ratelimit-redis' });
  });

  it('closed: 503 MCP_RATE_LIMIT_UNAVAILABLE with a 1 s Retry-After; failed auth is refused too', async () => {
    const { limits } = service('closed');
    await expect(limits.admit(req)).rejects.toMatchObject({ code: 'MCP_RATE_LIMIT_UNAVAILABLE', status: 503, details: { retryAfterMs: 1000 } });
    expect(await limits.failedAuth('10.0.0.1')).toMatchObject({ allowed: false });
  });
});
