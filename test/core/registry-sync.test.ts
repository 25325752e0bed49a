import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabase, startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { startOwnRedis, type OwnRedis } from '../support/redis-server.ts';

const ECHO = [{ use: './examples/capibara-plugin-echo' }];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const register = (id: string) =>
  `mutation { registerModel(input: { id: "${id}", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }`;
const infer = (id: string) => `mutation { infer(model: "${id}", input: { prompt: "hi ${id}" }) { text } }`;

/** Polls `probe` every 100 ms until it returns true, for at most `ms`; whether it did. */
async function eventually(probe: () => Promise<boolean>, ms = 20_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (await probe()) return true;
  return probe();
}

const listed = async (gw: TestGateway, id: string) =>
  ((await gw.gql<{ models: { nodes: Array<{ id: string }> } }>('{ models(first: 500) { nodes { id } } }')).data?.models.nodes ?? []).some((m) => m.id === id);

/** Resolves once an event published on `from` reaches `to` through the shared bus (so `to` is subscribed again). */
async function busCarries(from: TestGateway, to: TestGateway): Promise<boolean> {
  let heard = false;
  const stop = new AbortController();
  void (async () => {
    for await (const e of to.services.events.subscribe('modelEvents', stop.signal)) if (e.modelId === 'bus-probe') heard = true;
  })();
  try {
    return await eventually(async () => {
      from.services.events.publish('modelEvents', { type: 'MODEL_UPDATED', modelId: 'bus-probe', at: new Date() });
      await sleep(100);
      return heard;
    }, 30_000);
  } finally {
    stop.abort();
  }
}

/** The replica's echo backend takes `ms` longer to load each instance. */
function slowLoads(gw: TestGateway, ms: number): void {
  const echo = gw.services.plugins.get('backend', 'echo');
  const load = echo.load.bind(echo);
  echo.load = async (...args) => {
    await sleep(ms);
    return load(...args);
  };
}

describe('registry reads from memory', () => {
  it('a write is visible to the next read on the same replica, on PGlite, without SQL for the read', async () => {
    const gw = await startTestGateway({ plugins: ECHO });
    try {
      expect((await gw.gql(register('mem'))).errors).toBeUndefined();
      // The statement counter is the whole gateway's: a periodic job (the registry version check, metric
      // rollups) can land inside one read. A read that needed SQL would need it every time, so one read of
      // up to five without a statement shows reads are answered from memory.
      const statementsPerRead: number[] = [];
      for (let i = 0; i < 5 && !statementsPerRead.includes(0); i++) {
        const before = gw.services.database.statements.count;
        const r = await gw.gql<{ models: { totalCount: number; nodes: Array<{ id: string; versions: Array<{ instances: Array<{ status: string }> }> }> } }>(
          '{ models(filter: { search: "ME" }) { totalCount nodes { id versions { instances { status } } } } }',
        );
        expect(r.data?.models).toEqual({ totalCount: 1, nodes: [{ id: 'mem', versions: [{ instances: [{ status: 'READY' }] }] }] });
        statementsPerRead.push(gw.services.database.statements.count - before);
      }
      expect(statementsPerRead).toContain(0);
      expect((await gw.gql('mutation { updateModel(id: "mem", input: { labels: { team: "a" } }) { id } }')).errors).toBeUndefined();
      const byLabel = await gw.gql<{ models: { totalCount: number } }>('{ models(filter: { labels: [{ key: "team", value: "a" }] }) { totalCount } }');
      expect(byLabel.data?.models.totalCount).toBe(1);
      expect((await gw.gql('mutation { deleteModel(id: "mem") { id } }')).errors).toBeUndefined();
      expect(await listed(gw, 'mem')).toBe(false);
    } finally {
      await gw.close();
    }
  });
});

// Two replicas on one PostgreSQL, with a Redis of the test's own that it stops and starts.
describe.runIf(process.env.DATABASE_URL)('two replicas keep their in-memory registry right through a Redis outage', () => {
  let cleanup: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
    cleanup = [];
  });

  async function replicas(registryCheckMs: number): Promise<{ a: TestGateway; b: TestGateway; redis: OwnRedis }> {
    const db = await createTestDatabase();
    cleanup.push(() => db.drop());
    const redis = await startOwnRedis();
    cleanup.push(() => redis.stop());
    const events = { redisUrl: redis.url, channel: 'sync-test', registryCheckMs };
    const a = await startTestGateway({ plugins: ECHO, storage: { url: db.url }, events });
    cleanup.push(() => a.close());
    const b = await startTestGateway({ plugins: ECHO, storage: { url: db.url }, events });
    cleanup.push(() => b.close());
    return { a, b, redis };
  }

  it('a write on one replica is readable on the other (bus up): registered, updated, deleted', async () => {
    // No periodic check to speak of: only the events carry the changes.
    const { a, b } = await replicas(600_000);
    expect(await busCarries(a, b)).toBe(true);
    expect((await a.gql(register('both'))).errors).toBeUndefined();
    expect(await listed(a, 'both')).toBe(true);
    expect(await eventually(() => listed(b, 'both'))).toBe(true);
    const answer = await b.gql<{ infer: { text: string } }>(infer('both'));
    expect(answer.errors).toBeUndefined();
    expect((await a.gql('mutation { updateModel(id: "both", input: { description: "changed on a" }) { id } }')).errors).toBeUndefined();
    expect(
      await eventually(
        async () => (await b.gql<{ model: { description: string } }>('{ model(id: "both") { description } }')).data?.model.description === 'changed on a',
      ),
    ).toBe(true);
    expect((await a.gql('mutation { deleteModel(id: "both") { id } }')).errors).toBeUndefined();
    expect(await eventually(async () => !(await listed(b, 'both')))).toBe(true);
    expect((await b.gql(infer('both'))).errors?.[0]?.extensions?.code).toBe('MCP_MODEL_NOT_FOUND');
  });

  it('a model registered on one replica answers on the other at once, however long the other takes to load it', async () => {
    const { a, b } = await replicas(600_000);
    expect(await busCarries(a, b)).toBe(true);
    // b loads slower than a: a's READY reaches b, and b's health probes start (the first within
    // 10% of the 5 s interval), while b's own load is still running.
    slowLoads(b, 1_500);
    expect((await a.gql(register('slow'))).errors).toBeUndefined();
    expect(await eventually(() => listed(b, 'slow'))).toBe(true);
    const answer = await b.gql<{ infer: { text: string } }>(infer('slow'));
    expect(answer.errors).toBeUndefined();
    expect(answer.data?.infer.text).toBe('hi slow');
    const [h] = [...b.services.instances.allHandles()].filter((i) => i.modelId === 'slow');
    expect(b.services.router.healthOf(h!.id)).not.toBe('unhealthy');
  });

  it('a model deleted while the other replica still works through the events of its registration is gone from that replica’s router too', async () => {
    // No periodic check to speak of: what b reads for the events it had already heard of must do it.
    const { a, b, redis } = await replicas(600_000);
    expect(await busCarries(a, b)).toBe(true);
    // b applies events one at a time: a slow load of the new model holds the later ones (a's
    // loading and READY) until after the deletion, and reading the model for them finds it gone.
    slowLoads(b, 1_500);
    expect((await a.gql(register('brief'))).errors).toBeUndefined();
    expect(await eventually(() => listed(b, 'brief'))).toBe(true);
    await redis.stop(); // the deletion's own event never reaches b
    expect((await a.gql('mutation { deleteModel(id: "brief") { id } }')).errors).toBeUndefined();
    expect(await eventually(async () => !(await listed(b, 'brief')))).toBe(true);
    expect(await eventually(async () => (await b.gql(infer('brief'))).errors?.[0]?.extensions?.code === 'MCP_MODEL_NOT_FOUND', 5_000)).toBe(true);
    expect([...b.services.instances.allHandles()].filter((h) => h.modelId === 'brief')).toHaveLength(0);
  });

  it('after Redis comes back, the other replica serves no model deleted meanwhile and the first request for one registered meanwhile', async () => {
    // The periodic check is out of the picture: the re-read when the bus reconnects must do it.
    const { a, b, redis } = await replicas(600_000);
    expect(await busCarries(a, b)).toBe(true);
    expect((await a.gql(register('old'))).errors).toBeUndefined();
    expect(await eventually(async () => (await b.gql<{ infer: { text: string } }>(infer('old'))).data?.infer.text === 'hi old')).toBe(true);

    await redis.stop();
    expect((await a.gql('mutation { deleteModel(id: "old") { id } }')).errors).toBeUndefined();
    expect((await a.gql(register('new'))).errors).toBeUndefined();
    // While the bus is down (and the periodic check far away) b may not have heard of either (an event of
    // 'old' that b applies late reads the database and may already find it deleted: either is right).

    await redis.start();
    expect(await busCarries(a, b)).toBe(true);
    // The very first request for the new model on b answers (b loads it on reconnect, the request waits for the load).
    const first = await b.gql<{ infer: { text: string } }>(infer('new'));
    expect(first.errors).toBeUndefined();
    expect(first.data?.infer.text).toBe('hi new');
    expect(await eventually(async () => !(await listed(b, 'old')))).toBe(true);
    expect((await b.gql(infer('old'))).errors?.[0]?.extensions?.code).toBe('MCP_MODEL_NOT_FOUND');
    expect([...b.services.instances.allHandles()].filter((h) => h.modelId === 'old')).toHaveLength(0);
  });

  it('while Redis stays down, the periodic registry version check bounds how stale the other replica is', async () => {
    const { a, b, redis } = await replicas(300);
    expect((await a.gql(register('kept'))).errors).toBeUndefined();
    expect(await eventually(() => listed(b, 'kept'))).toBe(true);
    await redis.stop();
    expect((await a.gql('mutation { deleteModel(id: "kept") { id } }')).errors).toBeUndefined();
    expect((await a.gql(register('added'))).errors).toBeUndefined();
    expect(await eventually(async () => !(await listed(b, 'kept')) && (await listed(b, 'added')))).toBe(true);
    // The router's view follows the registry's re-read (the Fleet drops the deleted model's instances next).
    expect(await eventually(async () => (await b.gql(infer('kept'))).errors?.[0]?.extensions?.code === 'MCP_MODEL_NOT_FOUND')).toBe(true);
    const added = await b.gql<{ infer: { text: string } }>(infer('added'));
    expect(added.errors).toBeUndefined();
    expect(added.data?.infer.text).toBe('hi added');
  });
});
