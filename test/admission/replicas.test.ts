/**
 * The per-instance concurrency limit across gateway replicas: one replica in this process, the other a
 * `capibara-mcp start` child process, both on one real PostgreSQL database and one Redis, in front of a
 * real loopback HTTP upstream that counts the requests it is answering at once. One instance limited to
 * C = 4: requests sent through both replicas never run more than 4 at once at the upstream (each replica
 * admits its share, 2); the child is killed with SIGKILL (its presence row is not deleted) and the
 * remaining replica's share returns to 4 once the row expires (events.presenceExpiryMs).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { startReadyProcess } from '../support/process.ts';

const ROOT = join(import.meta.dirname, '../..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const LIMIT = 4;
/** Upstream answer time, ms. */
const SERVICE_MS = 150;
const PRESENCE = { presenceMs: 200, presenceExpiryMs: 1500 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An OpenAI-compatible chat upstream on loopback that answers after SERVICE_MS and records how many requests it answers at once. */
function countingUpstream(): Promise<{ server: Server; url: string; now: () => number; peak: () => number; resetPeak(): void; served: () => number }> {
  let open = 0;
  let peak = 0;
  let served = 0;
  const body = JSON.stringify({
    id: 'chatcmpl-count',
    object: 'chat.completion',
    created: 0,
    model: 'counted',
    choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop', logprobs: null }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  });
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method !== 'POST') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [{ id: 'counted', object: 'model' }] }));
        return;
      }
      open++;
      peak = Math.max(peak, open);
      setTimeout(() => {
        open--;
        served++;
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      }, SERVICE_MS);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        server,
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
        now: () => open,
        peak: () => peak,
        resetPeak: () => {
          peak = open;
        },
        served: () => served,
      }),
    ),
  );
}

async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!(await cond()) && Date.now() < end) await sleep(20);
  return cond();
}

async function chat(url: string): Promise<number> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'limited', messages: [{ role: 'user', content: 'hi' }] }),
  });
  await r.arrayBuffer();
  return r.status;
}

/** `n` requests at once through each of `urls`. */
const burst = (urls: string[], n: number) => Promise.all(urls.flatMap((u) => Array.from({ length: n }, () => chat(u))));

describe.runIf(process.env.DATABASE_URL)('admission limits across two gateway replicas (PostgreSQL + Redis)', () => {
  let db: { url: string; drop(): Promise<void> };
  let dir: string;
  let upstream: Awaited<ReturnType<typeof countingUpstream>>;
  let a: TestGateway;
  let b: { child: ChildProcess; url: string };

  beforeAll(async () => {
    db = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'mcp-admission-replicas-'));
    upstream = await countingUpstream();
    const config = {
      defaultPlugins: false,
      plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }],
      router: { healthCheck: { enabled: false }, hedging: { enabled: false }, recording: { enabled: false } },
      audit: { inference: 'off' },
      server: { overload: { maxInflight: 0 } },
      events: { redisUrl: REDIS_URL, channel: `test-admission-${process.pid}-${Date.now()}`, ...PRESENCE },
      models: [
        {
          id: 'limited',
          task: 'chat',
          defaultVersion: 'v1',
          versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: upstream.url, options: { model: 'counted' } }] }],
        },
      ],
      admission: { models: { limited: { maxConcurrentPerInstance: LIMIT, maxQueueSize: 1000, queueTimeoutMs: 60_000, deadlineShedding: false } } },
    };
    a = await startTestGateway({ ...config, storage: { url: db.url } } as Parameters<typeof startTestGateway>[0]);
    const file = join(dir, 'b.json');
    writeFileSync(
      file,
      JSON.stringify({
        ...config,
        server: { ...config.server, port: 0, host: '127.0.0.1' },
        storage: { url: db.url },
        auth: { enabled: false },
        demo: { enabled: false },
        log: { level: 'info', access: false },
      }),
    );
    const started = await startReadyProcess(['--conditions=capibara-source', '--import', 'tsx', join(ROOT, 'src/main.ts'), 'start', '--config', file], {
      cwd: ROOT,
      env: { MCP_CONFIG: '', DATABASE_URL: '', PORT: '' },
      ready: /"url":"(http:[^"]+)".*"msg":"gateway ready"/,
      timeoutMs: 110_000,
    });
    b = { child: started.child, url: started.ready[1]! };
  }, 150_000);

  afterAll(async () => {
    if (b && b.child.exitCode === null && b.child.signalCode === null) b.child.kill('SIGKILL');
    await a?.close();
    await new Promise((r) => upstream?.server.close(r));
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('through both replicas at most C run at the upstream; after one is killed the other takes all C within the expiry', async () => {
    // Both replicas see each other (a at once through the bus, at the latest after a beat).
    expect(await until(() => a.services.admission.replicas === 2, 10_000)).toBe(true);
    // Each replica admits its share: 2 + 2. 40 requests at once through each, 10× its share.
    const first = await burst([a.url, b.url], 40);
    expect(first.filter((s) => s !== 200)).toEqual([]);
    const peakBoth = upstream.peak();
    console.log(`two replicas: upstream peak ${peakBoth} at once for a limit of ${LIMIT} (${upstream.served()} served)`);
    expect(peakBoth).toBeLessThanOrEqual(LIMIT);
    expect(peakBoth).toBe(LIMIT);

    type Q = { capacity: number | null; replicaCapacity: number | null; replicas: number; inFlight: number };
    const q = await a.gql<{ queues: Q[] }>('{ queues(model: "limited") { capacity replicaCapacity replicas inFlight } }');
    expect(q.errors).toBeUndefined();
    expect(q.data!.queues).toEqual([{ capacity: LIMIT, replicaCapacity: LIMIT / 2, replicas: 2, inFlight: 0 }]);
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    expect(metrics).toMatch(/mcp_admission_replica_capacity\{model="limited",version="v1"\} 2/);
    expect(metrics).toMatch(/mcp_gateway_replicas 2/);

    // Through one replica alone while the other is up: it keeps to its share.
    upstream.resetPeak();
    const alone = await burst([a.url], 20);
    expect(alone.filter((s) => s !== 200)).toEqual([]);
    expect(upstream.peak()).toBe(LIMIT / 2);

    // kill -9: b's presence row stays until it expires; then a's share returns to all of C.
    const killed = performance.now();
    b.child.kill('SIGKILL');
    expect(await until(() => a.services.admission.replicas === 1, 30_000)).toBe(true);
    const backMs = performance.now() - killed;
    console.log(`share back to ${LIMIT} after ${Math.round(backMs)} ms (expiry ${PRESENCE.presenceExpiryMs} ms, beat ${PRESENCE.presenceMs} ms)`);
    // Not before the row expired; within the expiry and a couple of beats (plus slack for a busy machine).
    expect(backMs).toBeGreaterThanOrEqual(PRESENCE.presenceExpiryMs - 2 * PRESENCE.presenceMs);
    expect(backMs).toBeLessThan(PRESENCE.presenceExpiryMs + 2 * PRESENCE.presenceMs + 3000);
    upstream.resetPeak();
    const after = await burst([a.url], 20);
    expect(after.filter((s) => s !== 200)).toEqual([]);
    expect(upstream.peak()).toBe(LIMIT);
    const q2 = await a.gql<{ queues: Q[] }>('{ queues(model: "limited") { capacity replicaCapacity replicas } }');
    expect(q2.data!.queues).toEqual([{ capacity: LIMIT, replicaCapacity: LIMIT, replicas: 1 }]);
  }, 120_000);

  it('a replica that stops deletes its presence row: the other takes its share back before the expiry', async () => {
    const c = await startTestGateway({ ...a.config, server: { ...a.config.server, port: 0 } } as Parameters<typeof startTestGateway>[0]);
    try {
      expect(await until(() => a.services.admission.replicas === 2 && c.services.admission.replicas === 2, 10_000)).toBe(true);
    } finally {
      const stopped = performance.now();
      await c.close();
      expect(await until(() => a.services.admission.replicas === 1, 10_000)).toBe(true);
      const backMs = performance.now() - stopped;
      console.log(`graceful stop: share back after ${Math.round(backMs)} ms (expiry ${PRESENCE.presenceExpiryMs} ms)`);
      expect(backMs).toBeLessThan(PRESENCE.presenceExpiryMs);
    }
  }, 60_000);
});
