/**
 * Gateway replicas and the worker call token: a worker registers through one replica and learns
 * one token; every replica sharing MCP_WORKER_CALL_KEY derives the same token and can call it.
 * Replicas with their own generated keys cannot (the worker refuses them; nothing is served wrong).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { WORKER_CALL_KEY_ENV } from '../../src/workers/call-auth.ts';
import { startFakeWorker, type FakeWorker } from './fake-workers.ts';
import { prepareWorker, waitFor } from './support.ts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const INFER = `mutation($p: String!) { infer(model: "shared-m", input: { prompt: $p }, timeoutMs: 5000) { text } }`;

describe.runIf(process.env.DATABASE_URL)('replicas calling one worker', () => {
  const dirs: string[] = [];
  const closers: Array<() => Promise<unknown>> = [];
  const envBefore = process.env[WORKER_CALL_KEY_ENV];

  /** Two replicas on one fresh PostgreSQL database and a Redis channel of their own, each with its own data folder. */
  async function replicas(): Promise<[TestGateway, TestGateway]> {
    const db = await createTestDatabase();
    closers.push(() => db.drop());
    const events = { redisUrl: REDIS_URL, channel: `test-workers-${process.pid}-${Date.now()}` };
    const start = async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'mcp-replica-'));
      dirs.push(dataDir);
      const gw = await startTestGateway({ storage: { url: db.url, dataDir }, events });
      closers.push(() => gw.close());
      return gw;
    };
    return [await start(), await start()];
  }

  async function workerBehind(a: TestGateway): Promise<FakeWorker> {
    await prepareWorker(a, 'shared-w', [{ id: 'shared-m' }]);
    const w = await startFakeWorker(a, {}, 'shared-w', ['m1']);
    closers.push(() => w.close());
    const r = await w.register('shared-w', [{ model: 'shared-m', remoteInstanceId: 'm1' }]);
    expect(r.answer.data!.registerWorker.instances[0]).toMatchObject({ accepted: true, code: null });
    return w;
  }

  afterAll(async () => {
    for (const c of closers.reverse()) await c().catch(() => {});
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    if (envBefore === undefined) delete process.env[WORKER_CALL_KEY_ENV];
    else process.env[WORKER_CALL_KEY_ENV] = envBefore;
  });

  it('with one MCP_WORKER_CALL_KEY every replica calls the worker registered through another', async () => {
    process.env[WORKER_CALL_KEY_ENV] = 'a-shared-worker-call-key-of-at-least-32-characters';
    const [a, b] = await replicas();
    const w = await workerBehind(a);
    const answer = await waitFor(async () => (await b.gql<{ infer: { text: string } }>(INFER, { p: 'via b' })).data?.infer.text, 10_000, 'replica b to serve');
    expect(answer).toBe('shared-w:via b');
    expect((await a.gql<{ infer: { text: string } }>(INFER, { p: 'via a' })).data?.infer.text).toBe('shared-w:via a');
    expect(w.prompts.map((p) => p.prompt)).toEqual(expect.arrayContaining(['via a', 'via b']));
  }, 60_000);

  it('replicas with keys of their own: the other replica is refused by the worker and serves nothing', async () => {
    delete process.env[WORKER_CALL_KEY_ENV];
    const [a, b] = await replicas();
    const w = await workerBehind(a);
    expect((await a.gql<{ infer: { text: string } }>(INFER, { p: 'via a' })).data?.infer.text).toBe('shared-w:via a');
    // b learns of the instance, tries it, and the worker refuses b's token: no prompt from b reaches it
    await waitFor(async () => b.services.instances.handle('shared-w.m1') !== undefined, 10_000, 'b to know the instance');
    const r = await b.gql(INFER, { p: 'via b' });
    expect(r.errors?.[0]?.extensions?.code).toMatch(/^MCP_(NO_HEALTHY_INSTANCE|UPSTREAM_ERROR)$/);
    expect(w.prompts.map((p) => p.prompt)).toEqual(['via a']);
  }, 60_000);
});
