/**
 * How long a registry write on one gateway replica takes to be readable on another (two replicas
 * on one PostgreSQL, sharing a Redis of this bench's own):
 *   - bus up: an updateModel sent to A, until B reads the new description;
 *   - right after the bus reconnects: a model registered on A while Redis was down, from starting
 *     redis-server again until B reads the model (the periodic version check set far away, so only
 *     the re-read on reconnect counts; includes redis-server's start and ioredis's reconnect delay);
 *   - bus down, the periodic check at its default (2 s): a registration sent to A, until B reads it.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx --conditions=capibara-source bench/registry-propagation.ts
 */
import { createTestDatabase, startTestGateway, type TestGateway } from '../src/testing/gateway.ts';
import { startOwnRedis, type OwnRedis } from '../test/support/redis-server.ts';

if (!process.env.DATABASE_URL) throw new Error('set DATABASE_URL (two replicas share a PostgreSQL)');
const N = Number(process.env.BENCH_WRITES ?? 20);
const OUTAGES = Number(process.env.BENCH_OUTAGES ?? 5);
const ECHO = [{ use: './examples/capibara-plugin-echo' }];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const register = (id: string) =>
  `mutation { registerModel(input: { id: "${id}", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }`;

/** Milliseconds since `since` until `b` reads the model (and `check` holds for it), polled every millisecond, at most 60 s. */
async function untilReadable(b: TestGateway, id: string, since: number, check: (m: { description: string }) => boolean = () => true): Promise<number> {
  for (;;) {
    const m = await b.services.registry.get(id);
    if (m && check(m)) break;
    if (performance.now() - since > 60_000) throw new Error(`${id} not readable on the other replica within 60 s`);
    await sleep(1);
  }
  return performance.now() - since;
}

async function write(a: TestGateway, id: string): Promise<void> {
  const r = await a.gql(register(id));
  if (r.errors) throw new Error(JSON.stringify(r.errors));
}

async function pair(registryCheckMs: number): Promise<{ a: TestGateway; b: TestGateway; redis: OwnRedis; close(): Promise<void> }> {
  const db = await createTestDatabase();
  const redis = await startOwnRedis();
  const events = { redisUrl: redis.url, channel: 'propagation-bench', registryCheckMs };
  const a = await startTestGateway({ plugins: ECHO, storage: { url: db.url }, events });
  const b = await startTestGateway({ plugins: ECHO, storage: { url: db.url }, events });
  return {
    a,
    b,
    redis,
    async close() {
      await b.close();
      await a.close();
      await redis.stop();
      await db.drop();
    },
  };
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return { median: s[Math.floor(s.length / 2)]!, max: s[s.length - 1]! };
};
const rows: Array<{ label: string; n: number; median: number; max: number }> = [];

{
  const p = await pair(600_000);
  await write(p.a, 'up');
  await untilReadable(p.b, 'up', performance.now());
  const up: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = performance.now();
    const r = await p.a.gql(`mutation { updateModel(id: "up", input: { description: "d${i}" }) { id } }`);
    if (r.errors) throw new Error(JSON.stringify(r.errors));
    up.push(await untilReadable(p.b, 'up', t0, (m) => m.description === `d${i}`));
  }
  rows.push({ label: 'bus up: updateModel sent to A → new value readable on B', n: N, ...stats(up) });
  const back: number[] = [];
  for (let i = 0; i < OUTAGES; i++) {
    await p.redis.stop();
    await write(p.a, `during-${i}`);
    await sleep(1000);
    const t0 = performance.now();
    await p.redis.start();
    back.push(await untilReadable(p.b, `during-${i}`, t0));
  }
  rows.push({ label: 'registered while Redis was down (1 s): redis-server started again → readable on B (re-read on reconnect)', n: OUTAGES, ...stats(back) });
  await p.close();
}
{
  const p = await pair(2000);
  await p.redis.stop();
  const down: number[] = [];
  for (let i = 0; i < OUTAGES; i++) {
    const t0 = performance.now();
    await write(p.a, `down-${i}`);
    down.push(await untilReadable(p.b, `down-${i}`, t0));
  }
  rows.push({ label: 'Redis down, registryCheckMs 2000 (default): registerModel sent to A → readable on B', n: OUTAGES, ...stats(down) });
  await p.close();
}

console.log(`\nnode ${process.version}, two replicas on PostgreSQL (loopback) and a redis-server of the bench's own\n`);
console.log('| case | writes | median ms | max ms |');
console.log('|---|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.label} | ${r.n} | ${r.median.toFixed(1)} | ${r.max.toFixed(1)} |`);
