import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../config/schema.ts';
import { OverloadGuard } from './overload-guard.ts';

const overload = (o: Record<string, number>) => configSchema.parse({ server: { overload: o } }).server.overload;

describe('OverloadGuard', () => {
  it('admits up to maxInflight, refuses past it, and admits again after a release', async () => {
    const registry = new Registry();
    const g = new OverloadGuard(overload({ maxInflight: 2, retryAfterSeconds: 3 }), registry);
    expect([g.tryAdmit(), g.tryAdmit(), g.tryAdmit()]).toEqual([undefined, undefined, 'inflight']);
    g.rejected('inflight', 'openai');
    expect(g.inflight).toBe(2);
    g.release();
    expect(g.tryAdmit()).toBeUndefined();
    expect([g.error.code, g.error.status, g.error.details?.retryAfterMs]).toEqual(['MCP_OVERLOADED', 503, 3000]);
    const text = await registry.metrics();
    expect(text).toMatch(/^mcp_overload_rejected_total\{reason="inflight",entry="openai"\} 1$/m);
    expect(text).toMatch(/^mcp_http_inflight_requests 2$/m);
    g.close();
  });

  it('with maxEventLoopDelayMs, sheds for a window after the event loop was blocked, but never the only request', async () => {
    const g = new OverloadGuard(overload({ maxInflight: 0, maxEventLoopDelayMs: 50, eventLoopWindowMs: 100 }), new Registry());
    expect(g.tryAdmit()).toBeUndefined();
    await new Promise((r) => setTimeout(r, 150)); // the monitor has taken its first samples
    const until = performance.now() + 200;
    while (performance.now() < until); // a blocked event loop
    // Within a window or two of the block, a second request is shed (one stays in flight).
    let shed = false;
    for (let i = 0; i < 100 && !shed; i++) {
      await new Promise((r) => setTimeout(r, 10));
      const r = g.tryAdmit();
      if (r === undefined) g.release();
      else shed = r === 'event_loop_delay';
    }
    expect(shed).toBe(true);
    g.release();
    expect(g.inflight).toBe(0);
    // Windows without a block clear it.
    let cleared = false;
    for (let i = 0; i < 40 && !cleared; i++) {
      await new Promise((r) => setTimeout(r, 100));
      cleared = g.tryAdmit() === undefined;
    }
    expect(cleared).toBe(true);
    g.close();
  });
});
