/**
 * The one request path, end to end: the task is checked where the instance is chosen (a pool
 * whose instances serve different tasks), every attempt ends exactly once (no instance keeps an
 * outstanding request after answers, failures, streams, a stream the client stopped reading,
 * hedges and shadow calls), and the observers get the routing decision of failed requests too.
 */
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceOutcome } from '../../src/inference/service.ts';
import type { InferenceRequest } from '../../src/inference/types.ts';
import type { TestGateway } from '../../src/testing/gateway.ts';
import { closeUpstreams, infer, routerConfig, startRouterGateway, startUpstreams, until, type Upstream } from './harness.ts';

const INFER = `mutation($model: ID!, $input: InferInput!) { infer(model: $model, input: $input) { instanceId text } }`;

let ups: Upstream[];
let gw: TestGateway;
const finished: Array<{ req: InferenceRequest; o: InferenceOutcome }> = [];

function instance(id: string, upstream: number, tasks?: string[]) {
  return { id, backend: 'openai', endpoint: ups[upstream]!.url, options: { model: 'fake-model', ...(tasks ? { tasks } : {}) } };
}

beforeAll(async () => {
  ups = await startUpstreams(5, { tokens: ['a', 'b', 'c', 'd', 'e', 'f'] });
  gw = await startRouterGateway({
    router: routerConfig({ hedging: { enabled: true, minDelayMs: 20 } }),
    models: [
      {
        id: 'mixed',
        task: 'generate',
        versions: [{ version: 'v1', instances: [instance('mixed-gen', 0, ['generate']), instance('mixed-chat', 1, ['chat'])] }],
      },
      {
        id: 'paths',
        task: 'generate',
        defaultVersion: 'v1',
        versions: [
          { version: 'v1', instances: [instance('paths-0', 2), instance('paths-1', 3)] },
          { version: 'v2', instances: [instance('paths-shadow', 4)] },
        ],
      },
    ],
  });
  gw.services.inference.observe({ onFinished: (req, o) => finished.push({ req, o }) });
});

afterAll(async () => {
  await gw?.close();
  if (ups) await closeUpstreams(ups);
});

describe('the request path', () => {
  it('checks the task where the instance is chosen: each task goes to the instances that serve it; one none serves is refused', async () => {
    for (let i = 0; i < 10; i++) {
      const gen = await gw.gql<{ infer: { instanceId: string } }>(INFER, { model: 'mixed', input: { prompt: 'hi' } });
      expect(gen.errors).toBeUndefined();
      expect(gen.data!.infer.instanceId).toBe('mixed-gen');
      const chat = await gw.gql<{ infer: { instanceId: string } }>(INFER, { model: 'mixed', input: { messages: [{ role: 'user', content: 'hi' }] } });
      expect(chat.errors).toBeUndefined();
      expect(chat.data!.infer.instanceId).toBe('mixed-chat');
    }
    const embed = await gw.gql(INFER, { model: 'mixed', input: { texts: ['x'] } });
    // The supported tasks are listed in pool order (the order the instances became ready in).
    expect(embed.errors?.[0]?.message).toMatch(/^model "mixed" \(version v1\) does not support task "embed"; it supports (generate, chat|chat, generate)$/);
    expect(embed.errors?.[0]?.extensions).toMatchObject({ code: 'MCP_UNSUPPORTED_PARAMETER', details: { task: 'embed' } });
    expect((embed.errors?.[0]?.extensions?.details as { supported: string[] }).supported.toSorted()).toEqual(['chat', 'generate']);
    const refused = finished.filter((f) => f.req.model === 'mixed' && !f.o.ok);
    expect(refused.map((f) => [f.o.errorCode, f.o.decision?.version, f.o.decision?.attempts.length])).toEqual([['MCP_UNSUPPORTED_PARAMETER', 'v1', 0]]);
  });

  it('ends every attempt once (answers, failures, streams, a stopped stream, hedges, shadow); observers get the decision of failures', async () => {
    expect((await gw.gql('mutation { setShadow(model: "paths", version: "v2", fraction: 1) { id } }')).errors).toBeUndefined();
    ups[3]!.proxy.set({ latencyMs: 150 }); // slow: hedged when picked first
    const agent = new Agent();
    try {
      for (let i = 0; i < 20; i++) expect((await infer(gw, agent, 'paths')).status).toBe(200);
      const body = JSON.stringify({ model: 'paths', prompt: 'hi', stream: true });
      const streamed = { method: 'POST', headers: { 'content-type': 'application/json' }, body };
      for (let i = 0; i < 3; i++) {
        const r = await fetch(`${gw.url}/v1/completions`, streamed);
        expect(r.status).toBe(200);
        expect(await r.text()).toContain('[DONE]');
      }
      ups[2]!.fake.setBehavior({ models: ['fake-model'], tokens: ['a', 'b', 'c', 'd', 'e', 'f'], tokenDelayMs: 100 });
      ups[3]!.fake.setBehavior({ models: ['fake-model'], tokens: ['a', 'b', 'c', 'd', 'e', 'f'], tokenDelayMs: 100 });
      const stopped = new AbortController();
      const r = await fetch(`${gw.url}/v1/completions`, { ...streamed, signal: stopped.signal });
      const reader = r.body!.getReader();
      await reader.read();
      stopped.abort();
      await reader.cancel().catch(() => undefined);
      for (const u of [ups[2]!, ups[3]!]) u.proxy.set({ errorRate: 1, errorStatus: 500 });
      for (let i = 0; i < 2; i++) expect((await infer(gw, agent, 'paths')).status).toBe(502);
    } finally {
      await agent.close();
    }
    const handles = () => [...gw.services.instances.allHandles()].filter((h) => h.modelId === 'paths');
    expect(await until(() => handles().every((h) => h.outstanding === 0), 5000)).toBe(true);
    expect(handles().map((h) => h.outstanding)).toEqual([0, 0, 0]);
    const failures = finished.filter((f) => f.req.model === 'paths' && !f.o.ok && f.o.errorCode !== 'MCP_CANCELLED');
    expect(failures).toHaveLength(2);
    for (const { o } of failures) {
      expect(o.decision).toMatchObject({ model: 'paths', version: 'v1', chosen: '', shadow: 'v2' });
      expect(o.decision!.attempts.length).toBeGreaterThanOrEqual(1);
      expect(o.decision!.attempts.every((a) => a.outcome === 'error' && a.errorCode === 'MCP_UPSTREAM_ERROR')).toBe(true);
    }
    expect((await gw.gql('mutation { setShadow(model: "paths", fraction: 0) { id } }')).errors).toBeUndefined();
  });
});
