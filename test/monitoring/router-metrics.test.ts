import { Agent } from 'undici';
import { describe, expect, it } from 'vitest';
import { closeUpstreams, infer, modelSeed, routerConfig, startRouterGateway, startUpstreams } from '../router/harness.ts';

/** Sum of the samples of `family` whose line contains every one of `labels`. */
function total(text: string, family: string, ...labels: string[]): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${family}{`) && labels.every((x) => l.includes(x)))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

describe('router metrics', () => {
  it('an instance answering 503 shows as retries, breaker transitions and an ejection; clients see only successes', async () => {
    const ups = await startUpstreams(3);
    const gw = await startRouterGateway({ router: routerConfig(), models: [modelSeed('rm', { v1: ups.map((u) => u.url) })] });
    const agent = new Agent({ connections: 4 });
    try {
      expect((await gw.gql('mutation { setBalancer(model: "rm", balancer: "round-robin") { id } }')).errors).toBeUndefined();
      ups[0]!.proxy.set({ errorRate: 1, errorStatus: 503 });
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) statuses.push((await infer(gw, agent, 'rm')).status);
      expect(statuses.every((s) => s === 200)).toBe(true);
      const text = await (await fetch(`${gw.url}/metrics`)).text();
      const bad = 'instance="rm-v1-0"';
      expect(total(text, 'mcp_router_retries_total', 'model="rm"', 'version="v1"')).toBeGreaterThanOrEqual(1);
      expect(total(text, 'mcp_breaker_transitions_total', bad, 'state="circuit-open"')).toBeGreaterThanOrEqual(1);
      expect(total(text, 'mcp_instance_ejections_total', bad)).toBeGreaterThanOrEqual(1);
      // Only the failing instance changed state.
      expect(total(text, 'mcp_breaker_transitions_total', 'instance="rm-v1-1"')).toBe(0);
      expect(total(text, 'mcp_inference_requests_total', 'model="rm"', 'code="OK"')).toBe(30);
      expect(total(text, 'mcp_instance_inflight_requests', 'model="rm"')).toBe(0);
    } finally {
      await agent.close();
      await gw.close();
      await closeUpstreams(ups);
    }
  }, 120_000);
});
