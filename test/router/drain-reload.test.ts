/**
 * A drained instance that is loaded again takes traffic again: through loadInstance (still loaded:
 * the backend handle is kept) and through loadModel, and after drain + unload + load.
 */
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestGateway } from '../../src/testing/gateway.ts';
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
