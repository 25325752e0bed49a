/**
 * Two gateway replicas sharing PostgreSQL and Redis: one leads the scaling controller; a request held at
 * zero on the other wakes it (scalingSignals over Redis), the instance is started and the held request is
 * answered on the replica that held it.
 */
import { describe, expect, it } from 'vitest';
import { createTestDatabase, startTestGateway } from '../../src/testing/gateway.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const SLOW = new URL('./slow-backend.js', import.meta.url).pathname;

describe.runIf(process.env.DATABASE_URL)('scaling across two gateway replicas', () => {
  it('only one replica leads; a request held on the other is answered once the leader scaled from zero', async () => {
    const db = await createTestDatabase();
    const events = { redisUrl: REDIS_URL, channel: `test-scaling-${process.pid}-${Date.now()}` };
    const config = {
      plugins: [
        { use: SLOW, options: { delayMs: 50 } },
        { use: 'target-ongoing', name: 'quick', options: { targetOngoingRequests: 1, lookbackMs: 500, upscaleDelayMs: 300, downscaleDelayMs: 60_000 } },
      ],
      storage: { url: db.url },
      events,
      scaling: { intervalMs: 100 },
    };
    const a = await startTestGateway(config);
    const b = await startTestGateway(config);
    try {
      expect([a.services.scaling.leading(), b.services.scaling.leading()]).toEqual([true, false]);
      expect((await a.gql(`mutation { registerModel(input: { id: "rz", task: GENERATE, versions: [{ version: "v1" }] }) { id } }`)).errors).toBeUndefined();
      const set = await a.gql(
        `mutation { setScalingPolicy(model: "rz", policy: { scaler: "quick", minInstances: 0, scaleToZero: true, holdMs: 30000, actuator: { options: { backend: "slow" } } }) { version } }`,
      );
      expect(set.errors).toBeUndefined();
      // b learns the policy when it re-reads policies (every 5 s); until then it does not hold requests for rz
      await new Promise((r) => setTimeout(r, 5_500));
      const answer = await b.gql<{ infer: { text: string } }>(`mutation { infer(model: "rz", input: { prompt: "hi" }, timeoutMs: 30000) { text } }`);
      expect(answer.errors).toBeUndefined();
      expect(answer.data!.infer.text).toBe('hi');
      const d = await b.gql<{ scalingDecisions: Array<{ fromInstances: number; toInstances: number; reason: string }> }>(
        `{ scalingDecisions(model: "rz") { fromInstances toInstances reason } }`,
      );
      expect(d.data!.scalingDecisions).toEqual([{ fromInstances: 0, toInstances: 1, reason: expect.stringMatching(/demand at zero/) }]);
    } finally {
      await b.close();
      await a.close();
      await db.drop();
    }
  }, 60_000);
});
