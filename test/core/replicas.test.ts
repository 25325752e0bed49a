import { createClient } from 'graphql-ws';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createTestDatabase, startTestGateway } from '../../src/testing/gateway.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ECHO = [{ use: './examples/capibara-plugin-echo' }];

// Two gateway replicas need a shared PostgreSQL (DATABASE_URL; .ci/run sets it) and Redis.
describe.runIf(process.env.DATABASE_URL)('two gateway replicas sharing PostgreSQL and Redis', () => {
  it('a model registered on one replica is announced and served on the other; deleted, it is gone from both', async () => {
    const db = await createTestDatabase();
    // A channel of this run's own, so nothing else on the Redis server is heard.
    const events = { redisUrl: REDIS_URL, channel: `test-${process.pid}-${Date.now()}` };
    const a = await startTestGateway({ plugins: ECHO, storage: { url: db.url }, events });
    const b = await startTestGateway({ plugins: ECHO, storage: { url: db.url }, events });
    const client = createClient({ url: `${b.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
    try {
      const seen: string[] = [];
      const announced = new Promise<void>((resolve, reject) => {
        client.subscribe<{ modelEvents: { type: string } }>(
          { query: 'subscription { modelEvents(modelId: "shared") { type } }' },
          {
            next: (v) => {
              seen.push(v.data!.modelEvents.type);
              if (v.data!.modelEvents.type === 'MODEL_REGISTERED') resolve();
            },
            error: reject,
            complete: () => {},
          },
        );
      });
      // Register once b's subscription is established: it is when an event published on a after it
      // reaches b's client (through Redis), not after a fixed wait a busy machine can outlast.
      for (let i = 0; i < 200 && !seen.includes('MODEL_UPDATED'); i++) {
        a.services.events.publish('modelEvents', { type: 'MODEL_UPDATED', modelId: 'shared', at: new Date() });
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(seen).toContain('MODEL_UPDATED');
      const reg = await a.gql(
        'mutation { registerModel(input: { id: "shared", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }',
      );
      expect(reg.errors).toBeUndefined();
      await Promise.race([
        announced,
        new Promise((_, rej) => setTimeout(() => rej(new Error(`no MODEL_REGISTERED on the other replica; saw ${seen.join(',')}`)), 5000)),
      ]);

      // Replica b loaded the instance itself (its own backend handle) and serves it.
      let answer: string | undefined;
      let last: unknown;
      for (let i = 0; i < 50 && !answer; i++) {
        const r = await b.gql<{ infer: { text: string } }>('mutation { infer(model: "shared", input: { prompt: "from b" }) { text } }');
        answer = r.data?.infer.text;
        last = r.errors;
        if (!answer) await new Promise((res) => setTimeout(res, 100));
      }
      expect(answer, `replica b never answered; last errors ${JSON.stringify(last)}; events ${seen.join(',')}`).toBe('from b');
      const loadedOnB = () => [...b.services.instances.allHandles()].filter((h) => h.modelId === 'shared' && h.loaded);
      expect(loadedOnB()).toHaveLength(1);

      await a.gql('mutation { deleteModel(id: "shared") { id } }');
      let code: unknown;
      for (let i = 0; i < 50 && code !== 'MCP_MODEL_NOT_FOUND'; i++) {
        const r = await b.gql('mutation { infer(model: "shared", input: { prompt: "x" }) { text } }');
        code = r.errors?.[0]?.extensions?.code;
        if (code !== 'MCP_MODEL_NOT_FOUND') await new Promise((res) => setTimeout(res, 100));
      }
      expect(code).toBe('MCP_MODEL_NOT_FOUND');
      // b let go of its own backend handle too, not only of its view of the model.
      expect(loadedOnB()).toHaveLength(0);
    } finally {
      await client.dispose();
      await b.close();
      await a.close();
      await db.drop();
    }
  });

  it('a replica that missed the registry event (no shared bus here) loads the instance on the first request for it', async () => {
    const db = await createTestDatabase();
    const a = await startTestGateway({ plugins: ECHO, storage: { url: db.url } });
    const b = await startTestGateway({ plugins: ECHO, storage: { url: db.url } });
    try {
      const reg = await a.gql(
        'mutation { registerModel(input: { id: "quiet", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }',
      );
      expect(reg.errors).toBeUndefined();
      const q = 'mutation { infer(model: "quiet", input: { prompt: "caught up" }) { text } }';
      const first = await b.gql<{ infer: { text: string } }>(q);
      // The first request finds no instance loaded on b (a coded, retryable error) and starts the load.
      if (first.errors) expect(first.errors[0]?.extensions?.code).toBe('MCP_NO_HEALTHY_INSTANCE');
      let answer = first.data?.infer.text;
      for (let i = 0; i < 50 && !answer; i++) {
        await new Promise((res) => setTimeout(res, 100));
        answer = (await b.gql<{ infer: { text: string } }>(q)).data?.infer.text;
      }
      expect(answer).toBe('caught up');
    } finally {
      await b.close();
      await a.close();
      await db.drop();
    }
  });

  it('a Redis that cannot be reached stops the boot with a coded error', async () => {
    await expect(startTestGateway({ plugins: ECHO, events: { redisUrl: 'redis://127.0.0.1:1' } })).rejects.toMatchObject({ code: 'MCP_STORAGE_UNAVAILABLE' });
  });
});
