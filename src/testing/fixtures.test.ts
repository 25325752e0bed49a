import { describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { seededRandom, startFaultProxy } from './fault-proxy.ts';
import { startFakeOpenAI } from './fake-openai-server.ts';
import { startFakeKServe } from './fake-kserve-server.ts';

const tcpHandles = () => process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;

describe('test fixtures', () => {
  it('seededRandom is deterministic', () => {
    const a = seededRandom(5);
    const b = seededRandom(5);
    const xs = Array.from({ length: 5 }, () => a());
    expect(xs).toEqual(Array.from({ length: 5 }, () => b()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
  });

  it('the proxy streams SSE through incrementally, adds latency, counts, and closes every socket', async () => {
    const handlesBefore = tcpHandles();
    const fake = await startFakeOpenAI({ tokens: ['a', 'b', 'c'], tokenDelayMs: 60 });
    const proxy = await startFaultProxy({ target: fake.url });
    const agent = new Agent();
    try {
      expect(proxy.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
      const t0 = Date.now();
      const r = await request(`${proxy.url}/completions`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'x', stream: true }),
      });
      const arrivals: number[] = [];
      let text = '';
      for await (const c of r.body) {
        arrivals.push(Date.now() - t0);
        text += String(c);
      }
      expect(text).toContain('data: [DONE]');
      expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThanOrEqual(100); // first token came before the last was produced
      expect(proxy.forwarded).toBe(1);

      proxy.set({ latencyMs: 120 });
      const t1 = Date.now();
      await (await request(`${proxy.url}/models`, { dispatcher: agent })).body.dump();
      expect(Date.now() - t1).toBeGreaterThanOrEqual(110);

      // a black-holed request is still pending when the proxy closes
      proxy.set({ blackHole: true });
      const pending = request(`${proxy.url}/models`, { dispatcher: agent }).then(
        () => 'answered',
        () => 'failed',
      );
      await expect.poll(() => proxy.faulted, { timeout: 1000, interval: 10 }).toBe(1);
      await proxy.close();
      expect(await pending).toBe('failed');
      expect(proxy.requests).toBe(3);
    } finally {
      await agent.destroy();
      await fake.close();
    }
    await expect.poll(tcpHandles, { timeout: 1000, interval: 20 }).toBeLessThanOrEqual(handlesBefore);
  });

  it('the fake KServe server doubles numeric inputs', async () => {
    const fake = await startFakeKServe();
    const agent = new Agent();
    try {
      const r = await request(`${fake.url}/v2/models/doubler/infer`, {
        method: 'POST',
        dispatcher: agent,
        body: JSON.stringify({ id: '1', inputs: [{ name: 'INPUT0', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4.5] }] }),
      });
      expect(await r.body.json()).toEqual({
        model_name: 'doubler',
        model_version: '2',
        id: '1',
        outputs: [{ name: 'OUTPUT0', shape: [1, 4], datatype: 'FP32', data: [2, 4, 6, 9] }],
      });
      expect((await request(`${fake.url}/v2/health/ready`, { dispatcher: agent })).statusCode).toBe(200);
    } finally {
      await agent.destroy();
      await fake.close();
    }
  });
});
