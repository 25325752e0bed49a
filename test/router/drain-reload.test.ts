/**
 * A drained instance that is loaded again takes traffic again: through loadInstance (still loaded:
 * the backend handle is kept) and through loadModel, and after drain + unload + load; on another
 * replica too (it follows the drain, then the load, through the shared event bus).
 */
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { closeUpstreams, infer, modelSeed, routerConfig, startRouterGateway, startUpstreams, type Upstream } from './harness.ts';

describe('drain, then load again', () => {
  let ups: Upstream[];
  let gw: TestGateway;
  let agent: Agent;
  beforeAll(async () => {
    ups = await startUpstreams(2);
    gw = await startRouterGateway({ router: routerConfig(), models: [modelSeed('dl', { v1: ups.map((u) => u.url) })] });
    await gw.gql('mutation { setBalancer(model: "dl", balancer: "round-robin") { id } }');
    agent = new Agent({ connections: 4 });
  }, 60_000);
  afterAll(async () => {
    await agent?.close();
    await gw?.close();
    await closeUpstreams(ups ?? []);
  });

  /** Requests the first upstream (instance dl-v1-0) received during `n` inferences, all of which must succeed. */
  async function hitsOnFirst(n: number): Promise<number> {
    const before = ups[0]!.fake.requests;
    for (let i = 0; i < n; i++) expect((await infer(gw, agent, 'dl')).status).toBe(200);
    return ups[0]!.fake.requests - before;
  }

  const gql = async <T>(q: string) => {
    const r = await gw.gql<T>(q);
    expect(r.errors).toBeUndefined();
    return r.data!;
  };

  it.each([
    ['loadInstance', 'mutation { loadInstance(id: "dl-v1-0") { status } }'],
    ['loadModel', 'mutation { loadModel(id: "dl") { status } }'],
  ])('drainInstance then %s: routed to it again', async (_name, reload) => {
    expect(await hitsOnFirst(6)).toBeGreaterThan(0);
    const drained = await gql<{ drainInstance: { status: string } }>('mutation { drainInstance(id: "dl-v1-0", timeoutMs: 5000) { status } }');
    expect(drained.drainInstance.status).toBe('DRAINING');
    expect(await hitsOnFirst(6)).toBe(0);
    await gql(reload);
    const inst = await gql<{ instance: { status: string; health: string } }>('{ instance(id: "dl-v1-0") { status health } }');
    expect(inst.instance.status).toBe('READY');
    expect(gw.services.instances.handle('dl-v1-0')).toMatchObject({ status: 'ready', draining: false });
    // round robin over two instances: about half of the requests reach it again
    expect(await hitsOnFirst(6)).toBeGreaterThan(0);
  });

  it('drain, unload, load: routed to it again', async () => {
    await gql('mutation { drainInstance(id: "dl-v1-0", timeoutMs: 5000) { status } }');
    await gql('mutation { unloadInstance(id: "dl-v1-0") { status } }');
    expect(await hitsOnFirst(4)).toBe(0);
    await gql('mutation { loadInstance(id: "dl-v1-0") { status } }');
    expect(await hitsOnFirst(6)).toBeGreaterThan(0);
  });
});

// Two replicas need a shared PostgreSQL (DATABASE_URL; .ci/run sets it) and Redis.
describe.runIf(process.env.DATABASE_URL)('drain, then load again, seen by another replica', () => {
  it('the other replica stops routing to the drained instance and routes to it again once it is loaded', async () => {
    const db = await createTestDatabase();
    const events = { redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', channel: `test-drain-${process.pid}-${Date.now()}` };
    const plugins = [{ use: './examples/capibara-plugin-echo' }];
    const a = await startTestGateway({ plugins, storage: { url: db.url }, events });
    const b = await startTestGateway({ plugins, storage: { url: db.url }, events });
    const inferOnB = async () => (await b.gql('mutation { infer(model: "dr2", input: { prompt: "x" }) { text } }')).errors?.[0]?.extensions?.code ?? 'OK';
    /** Polls b until its answer is `want` (at most 10 s): the events travel through Redis. */
    const bAnswers = async (want: string) => {
      let got = '';
      for (let i = 0; i < 100 && got !== want; i++) {
        got = String(await inferOnB());
        if (got !== want) await new Promise((r) => setTimeout(r, 100));
      }
      return got;
    };
    try {
      const reg = await a.gql(
        'mutation { registerModel(input: { id: "dr2", task: GENERATE, versions: [{ version: "v1", instances: [{ id: "dr2-0", backend: "echo" }] }] }) { id } }',
      );
      expect(reg.errors).toBeUndefined();
      expect(await bAnswers('OK')).toBe('OK');
      expect((await a.gql('mutation { drainInstance(id: "dr2-0", timeoutMs: 5000) { status } }')).errors).toBeUndefined();
      expect(await bAnswers('MCP_NO_HEALTHY_INSTANCE')).toBe('MCP_NO_HEALTHY_INSTANCE');
      expect((await a.gql('mutation { loadInstance(id: "dr2-0") { status } }')).errors).toBeUndefined();
      expect(await bAnswers('OK')).toBe('OK');
      expect(b.services.instances.handle('dr2-0')).toMatchObject({ status: 'ready', draining: false });
    } finally {
      await b.close();
      await a.close();
      await db.drop();
    }
  }, 60_000);
});
