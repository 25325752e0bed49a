/**
 * What securing the gateway costs per call on the GraphQL `infer` path against the OpenAI path, as gateway
 * CPU µs per request (process.cpuUsage of each gateway's process), measured side by side AT THE SAME TIME:
 * every case is its own gateway process (startTestGateway: PGlite in memory, inference records on), all of
 * them loaded together (N requests each, C in flight each, keep-alive HTTP on loopback from this process;
 * the fake OpenAI upstream in another process). On a shared, busy machine the other jobs then slow every
 * case alike, and the per-round ratio to `open/admin` stays readable where absolute figures do not.
 *
 * Cases (gateway settings / key):
 *   open/admin     api-key only, an admin key, no limit rule, audit.inference off   (bench/overhead.ts (c)/(d))
 *   open/dev       the same gateway settings, a developer key limited to the model
 *   limit/dev      open + a per-key request limit (memory store)
 *   audit/dev      open + audit.inference buffered
 *   secured/dev    strategies password + api-key, the limit and audit.inference buffered  ((h)/(i))
 *   secured/admin  the secured settings with the admin key
 * Each round loads the GraphQL `infer` mutation on every case at once, then /v1/chat/completions; the table
 * gives each case's median CPU µs per request and the median of its per-round ratio open/admin ÷ case
 * (req/s per core against open/admin).
 *
 *   npx tsx --conditions=capibara-source bench/graphql-secured-cost.ts [--n=3000] [--c=8] [--rounds=7]
 *     [--cases=open/admin,open/dev,…] [--paths=graphql,openai] [--profile=secured/dev,open/admin] [--hops]
 *
 * --hops first counts the async resources (promises, ticks, timers) and SQL statements of each gateway per request, one
 * request at a time: a count the machine's load does not change (the CPU rounds follow; --rounds=0 skips them).
 * --profile=<case>,… runs those gateways under `node --cpu-prof` (profiles in bench/.out/prof/<case> when they exit).
 */
import { createHook } from 'node:async_hooks';
import { fork, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from 'undici';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const SELF = fileURLToPath(import.meta.url);
const arg = (name: string, dflt: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;
const INFER = JSON.stringify({ query: 'mutation { infer(model: "chat-model", input: { messages: [{ role: "user", content: "hi" }] }) { text } }' });
const CHAT = JSON.stringify({ model: 'chat-model', messages: [{ role: 'user', content: 'hi' }] });
const LIMIT = { rules: [{ name: 'per-key', scope: 'apiKey', requests: 100_000_000, period: '1m' }] };
const SETTINGS: Record<string, Record<string, unknown>> = {
  open: { auth: { strategies: ['api-key'] }, audit: { inference: 'off' } },
  limit: { auth: { strategies: ['api-key'] }, audit: { inference: 'off' }, limits: LIMIT },
  audit: { auth: { strategies: ['api-key'] }, audit: { inference: 'buffered' } },
  secured: { auth: { strategies: ['password', 'api-key'] }, audit: { inference: 'buffered' }, limits: LIMIT },
};

/** A child: the fake OpenAI upstream. */
async function upstream(): Promise<void> {
  const { startFakeOpenAI } = await import('../src/testing/fake-openai-server.ts');
  const up = await startFakeOpenAI({ models: ['fake-model'], tokens: ['Hello', ',', ' world', '!'] });
  process.on('disconnect', () => void up.close().then(() => process.exit(0)));
  process.send!({ upstream: `${up.origin}/v1` });
}

/** A child: one gateway (settings name, key role, upstream URL, key hash in argv); answers `cpu` with process.cpuUsage(). */
async function gateway(): Promise<void> {
  const [settings, role, upstreamV1, sha256] = process.argv.slice(3, 7) as [string, string, string, string];
  const { startTestGateway } = await import('../src/testing/gateway.ts');
  const gw = await startTestGateway({
    ...SETTINGS[settings],
    defaultPlugins: false,
    router: { recording: { enabled: true } },
    plugins: [
      { use: 'openai' },
      { use: 'p2c-ewma' },
      ...(settings === 'secured' ? [{ use: 'password' }] : []),
      { use: 'api-key', options: { keys: [{ id: 'bench', sha256, roles: [role], ...(role === 'developer' ? { models: ['chat-model'] } : {}) }] } },
    ],
    models: [
      {
        id: 'chat-model',
        task: 'chat',
        defaultVersion: 'v1',
        versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: upstreamV1, options: { model: 'fake-model' } }] }],
      },
    ],
  } as never);
  // --hops: async resources (promises, ticks, timers) the gateway creates per request, counted by an async hook
  // while asked to: a figure the machine's load does not change.
  const counts = new Map<string, number>();
  let counting = false;
  let statementsBefore = 0;
  if (process.argv.includes('--hops'))
    createHook({
      init(_id, type) {
        if (counting) counts.set(type, (counts.get(type) ?? 0) + 1);
      },
    }).enable();
  process.on('message', (m: string) => {
    if (m === 'cpu') {
      const u = process.cpuUsage();
      process.send!({ cpu: u.user + u.system });
    } else if (m === 'count') {
      counts.clear();
      statementsBefore = gw.services.database.statements.count;
      counting = true;
      process.send!({ counting: true });
    } else if (m === 'counted') {
      counting = false;
      counts.set('SQL statement', gw.services.database.statements.count - statementsBefore);
      process.send!({ counts: Object.fromEntries(counts) });
    }
  });
  process.on('disconnect', () => void gw.close().then(() => process.exit(0)));
  process.send!({ url: gw.url });
}

function spawnChild(args: string[], execArgv: string[] = []): { child: ChildProcess; ready: Promise<Record<string, string>> } {
  const child = fork(SELF, args, { execArgv: [...execArgv, '--import', 'tsx', '--conditions=capibara-source'], stdio: 'inherit' });
  const ready = new Promise<Record<string, string>>((res, rej) => {
    child.once('message', (m: Record<string, string>) => res(m));
    child.once('exit', (code) => rej(new Error(`${args.join(' ')} exited with ${code}`)));
  });
  return { child, ready };
}

/** N requests, C in flight, over keep-alive connections; throws on any non-200 or GraphQL error. */
async function load(url: string, headers: Record<string, string>, body: string, n: number, c: number): Promise<void> {
  const u = new URL(url);
  const clients = Array.from({ length: c }, () => new Client(u.origin, { pipelining: 1 }));
  const all = { 'content-type': 'application/json', ...headers };
  let next = 0;
  await Promise.all(
    clients.map(async (client) => {
      while (next < n) {
        next++;
        const r = await client.request({ method: 'POST', path: u.pathname, headers: all, body });
        const text = await r.body.text();
        if (r.statusCode !== 200 || text.includes('"errors"')) throw new Error(`${url}: ${r.statusCode} ${text.slice(0, 300)}`);
      }
    }),
  );
  await Promise.all(clients.map((cl) => cl.close()));
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const N = Number(arg('n', '3000'));
  const C = Number(arg('c', '8'));
  const ROUNDS = Number(arg('rounds', '7'));
  const CASES = arg('cases', 'open/admin,open/dev,limit/dev,audit/dev,secured/dev,secured/admin').split(',');
  const PATHS = arg('paths', 'graphql,openai').split(',');
  const PROFILE = arg('profile', '').split(',');
  const HOPS = process.argv.includes('--hops');
  if (CASES[0] !== 'open/admin') CASES.unshift('open/admin');

  const { generateApiKey } = await import('../plugins/auth-api-key/index.ts');
  const up = spawnChild(['--upstream']);
  const { upstream: upstreamV1 } = await up.ready;
  const key = generateApiKey();
  const gateways = await Promise.all(
    CASES.map(async (name) => {
      const [settings, who] = name.split('/') as [string, string];
      if (!SETTINGS[settings] || (who !== 'admin' && who !== 'dev')) throw new Error(`unknown case ${name}`);
      const prof = PROFILE.includes(name)
        ? // A folder per case: the gateway's main thread and tsx's loader thread each write a profile (the larger is the gateway's).
          ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, 'bench/.out/prof', name.replace('/', '-'))}`]
        : [];
      const g = spawnChild(['--gateway', settings, who === 'admin' ? 'admin' : 'developer', upstreamV1!, key.sha256, ...(HOPS ? ['--hops'] : [])], prof);
      const { url } = await g.ready;
      const ask = <T>(m: string) =>
        new Promise<T>((res) => {
          g.child.once('message', (a: T) => res(a));
          g.child.send(m);
        });
      const cpu = () => ask<{ cpu: number }>('cpu').then((a) => a.cpu);
      return { name, url: url!, child: g.child, cpu, ask };
    }),
  );
  const headers = { authorization: `Bearer ${key.key}` };
  const round = async (path: string, n: number) => {
    const before = await Promise.all(gateways.map((g) => g.cpu()));
    await Promise.all(
      gateways.map((g) => load(`${g.url}${path === 'graphql' ? '/graphql' : '/v1/chat/completions'}`, headers, path === 'graphql' ? INFER : CHAT, n, C)),
    );
    const after = await Promise.all(gateways.map((g) => g.cpu()));
    return gateways.map((_, i) => (after[i]! - before[i]!) / n);
  };
  if (HOPS) {
    console.log('\nasync resources the gateway creates per request (one request at a time, 300 requests per case and path)');
    console.log('| path | case | PROMISE | TickObject | Timeout | Immediate | other | SQL statements (all 300 requests) |');
    console.log('|---|---|---:|---:|---:|---:|---:|---:|');
    for (const p of PATHS) {
      for (const g of gateways) {
        const url = `${g.url}${p === 'graphql' ? '/graphql' : '/v1/chat/completions'}`;
        const body = p === 'graphql' ? INFER : CHAT;
        await load(url, headers, body, 100, 1);
        await g.ask('count');
        await load(url, headers, body, 300, 1);
        const { counts } = await g.ask<{ counts: Record<string, number> }>('counted');
        const per = (t: string) => ((counts[t] ?? 0) / 300).toFixed(1);
        const known = ['PROMISE', 'TickObject', 'Timeout', 'Immediate', 'SQL statement'];
        const other = Object.entries(counts).reduce((a, [t, n]) => a + (known.includes(t) ? 0 : n), 0) / 300;
        console.log(`| ${p} | ${g.name} | ${known.slice(0, 4).map(per).join(' | ')} | ${other.toFixed(1)} | ${counts['SQL statement'] ?? 0} |`);
      }
    }
  }
  if (ROUNDS > 0) {
    for (const p of PATHS) await round(p, Math.min(N, 2000)); // warm-up: JIT, caches, graphql-jit compilation, PGlite
    const samples = new Map<string, number[][]>(PATHS.map((p) => [p, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of r % 2 ? [...PATHS].reverse() : PATHS) samples.get(p)!.push(await round(p, N));
      console.error(`round ${r + 1}/${ROUNDS} done`);
    }
    console.log(`\n${CASES.length} gateways loaded at once, ${N} requests each per round, ${C} in flight each, ${ROUNDS} rounds`);
    console.log('| path | case | CPU µs/req (median) | + µs over open/admin | open/admin ÷ case (median of rounds) | per round |');
    console.log('|---|---|---:|---:|---:|---|');
    for (const p of PATHS) {
      const rows = samples.get(p)!;
      const base = median(rows.map((x) => x[0]!));
      gateways.forEach((g, i) => {
        const us = median(rows.map((x) => x[i]!));
        const ratios = rows.map((x) => x[0]! / x[i]!);
        console.log(
          `| ${p} | ${g.name} | ${us.toFixed(0)} | ${(us - base).toFixed(0)} | ${(100 * median(ratios)).toFixed(1)}% | ${ratios.map((x) => (100 * x).toFixed(0)).join(' ')} |`,
        );
      });
    }
  }
  for (const g of gateways) {
    const exited = new Promise((res) => g.child.once('exit', res));
    g.child.disconnect();
    await exited;
  }
  up.child.disconnect();
}

if (process.argv[2] === '--upstream') await upstream();
else if (process.argv[2] === '--gateway') await gateway();
else await main();
