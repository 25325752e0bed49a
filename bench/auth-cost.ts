/**
 * Per-request cost of authentication and authorization, in process, side by side in one run:
 * the api-key plugin (a config key: one SHA-256 and a Map lookup), the jwt plugin with HS256, RS256
 * (a PEM public key) and a key from a JWKS URL (a loopback key server, fetched once), each with its
 * verified-token cache off (every request verifies) and on (a repeated token), an oauth2 introspection
 * answer from the cache, and the RBAC check `can()` of src/auth/permissions.ts.
 *
 *   npx tsx --conditions=capibara-source bench/auth-cost.ts            (options: --quick)
 *
 * Each case: a warm-up, then RUNS runs of N calls awaited one after another (concurrency 1: wall-clock
 * and process CPU time per call; CPU time is the figure that holds on a shared, busy machine, since
 * wall time there includes waiting for a core), and N calls with 64 in flight (jose verifies with
 * WebCrypto, whose signature checks run on libuv's thread pool, so concurrency overlaps them).
 * Reported: the median run of each figure. The RBAC check is synchronous and runs in a plain loop.
 */
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import type { AuthRequest, AuthStrategy } from '../src/plugin/contract.ts';
import type { Principal } from '../src/inference/types.ts';
import { can, roleTable } from '../src/auth/permissions.ts';
import { testPluginContext } from '../src/testing/plugin-context.ts';
import { listenOnLoopback } from '../src/testing/loopback-server.ts';
import { startJwksServer } from '../src/testing/auth.ts';
import apiKeyPlugin, { generateApiKey } from '../plugins/auth-api-key/index.ts';
import jwtPlugin from '../plugins/auth-jwt/index.ts';
import oauth2Plugin from '../plugins/auth-oauth2/index.ts';

const quick = process.argv.includes('--quick');
const RUNS = 5;
const CONCURRENCY = 64;
const scale = quick ? 0.2 : 1;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each plugin's own options type
function setUp(plugin: { setup(ctx: any, o: any): unknown; options: { parse(o: unknown): unknown } }, options: unknown): AuthStrategy {
  return plugin.setup(testPluginContext('bench'), plugin.options.parse(options)) as AuthStrategy;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Figures {
  /** Wall-clock µs per call, calls awaited one after another. */
  wall: number;
  /** Process CPU µs per call (user + system, all threads: WebCrypto runs on the thread pool), same runs. */
  cpu: number;
  /** Wall-clock µs per call with CONCURRENCY calls in flight. */
  concurrent: number;
}

async function measure(call: () => unknown, n: number, sync: boolean): Promise<Figures> {
  for (let i = 0; i < Math.min(n, 2000); i++) await call();
  const wall: number[] = [];
  const cpu: number[] = [];
  const concurrent: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const c0 = process.cpuUsage();
    let t0 = process.hrtime.bigint();
    if (sync) for (let i = 0; i < n; i++) call();
    else for (let i = 0; i < n; i++) await call();
    wall.push(Number(process.hrtime.bigint() - t0) / 1000 / n);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / n);
    t0 = process.hrtime.bigint();
    let next = 0;
    const lane = async () => {
      while (next++ < n) await call();
    };
    if (sync) for (let i = 0; i < n; i++) call();
    else await Promise.all(Array.from({ length: CONCURRENCY }, lane));
    concurrent.push(Number(process.hrtime.bigint() - t0) / 1000 / n);
  }
  return { wall: median(wall), cpu: median(cpu), concurrent: median(concurrent) };
}

const bearer = (token: string): AuthRequest => ({ headers: { authorization: `Bearer ${token}` }, entry: 'openai' });
const claims = { sub: 'user-1', iss: 'https://idp.bench/', aud: 'capibara-mcp', realm_access: { roles: ['dev'] } };
const mapping = { issuer: 'https://idp.bench/', audience: 'capibara-mcp', rolesClaim: 'realm_access.roles', roleMap: { dev: 'developer' } };
const sign = (alg: string, key: CryptoKey | Uint8Array, kid?: string) =>
  new SignJWT(claims)
    .setProtectedHeader(kid ? { alg, kid } : { alg })
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(key);

async function main() {
  const cases: Array<{ name: string; n: number; call: () => unknown; sync?: boolean }> = [];
  const check = async (s: AuthStrategy, req: AuthRequest) => {
    const p = await s.authenticate(req);
    if (!p) throw new Error('the bench request was not accepted');
    return () => s.authenticate(req);
  };

  const key = generateApiKey();
  const apiKey = setUp(apiKeyPlugin, { keys: [{ id: 'k', sha256: key.sha256, roles: ['developer'] }] });
  cases.push({ name: 'api-key (config key: SHA-256 + Map)', n: 200_000, call: await check(apiKey, bearer(key.key)) });

  const secret = new TextEncoder().encode('bench-hmac-secret-with-at-least-32-bytes!!');
  const hs = await sign('HS256', secret);
  for (const cache of [false, true]) {
    const s = setUp(jwtPlugin, { algorithms: ['HS256'], secret: new TextDecoder().decode(secret), ...mapping, cache: { maxEntries: cache ? 10_000 : 0 } });
    cases.push({ name: `JWT HS256, ${cache ? 'cached token' : 'verified every time'}`, n: cache ? 200_000 : 20_000, call: await check(s, bearer(hs)) });
  }

  const rsa = await generateKeyPair('RS256', { extractable: true });
  const rs = await sign('RS256', rsa.privateKey);
  for (const cache of [false, true]) {
    const s = setUp(jwtPlugin, { algorithms: ['RS256'], publicKeys: [await exportSPKI(rsa.publicKey)], ...mapping, cache: { maxEntries: cache ? 10_000 : 0 } });
    cases.push({
      name: `JWT RS256 (PEM key), ${cache ? 'cached token' : 'verified every time'}`,
      n: cache ? 200_000 : 10_000,
      call: await check(s, bearer(rs)),
    });
  }

  const es = await generateKeyPair('ES256', { extractable: true });
  const jwks = await startJwksServer([
    { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256' },
    { ...(await exportJWK(es.publicKey)), kid: 'ec-1', alg: 'ES256' },
  ]);
  const rsKid = await sign('RS256', rsa.privateKey, 'rsa-1');
  const esKid = await sign('ES256', es.privateKey, 'ec-1');
  for (const [alg, token] of [
    ['RS256', rsKid],
    ['ES256', esKid],
  ] as const) {
    const s = setUp(jwtPlugin, { algorithms: ['RS256', 'ES256'], jwksUrl: jwks.url, ...mapping, cache: { maxEntries: 0 } });
    cases.push({ name: `JWT ${alg} via JWKS key, verified every time`, n: 10_000, call: await check(s, bearer(token)) });
  }

  const introspection = await listenOnLoopback((_req, res) => {
    _req.resume();
    _req.on('end', () =>
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ active: true, sub: 'svc', scope: 'developer', exp: Math.floor(Date.now() / 1000) + 7200 })),
    );
  });
  const oauth2 = setUp(oauth2Plugin, {
    introspectionUrl: `${introspection.origin}/introspect`,
    clientId: 'bench',
    clientSecret: 'bench-secret',
    cache: { maxTtlSec: 3600 },
  });
  cases.push({ name: 'oauth2 introspection, cached answer', n: 200_000, call: await check(oauth2, bearer('opaque-bench-token')) });

  const principal: Principal = { id: 'user-1', via: 'jwt', roles: ['developer'], models: ['chat-a', 'chat-b'] };
  const custom = roleTable({ 'model-admin': ['models:read', 'models:write'] });
  const multi: Principal = { id: 'user-2', via: 'jwt', roles: ['viewer', 'model-admin', 'developer'] };
  let sink = 0;
  cases.push({
    name: "RBAC can(developer, 'inference:invoke', model)",
    n: 2_000_000,
    call: () => (sink += can(principal, 'inference:invoke', 'chat-b') ? 1 : 0),
    sync: true,
  });
  cases.push({
    name: "RBAC can(3 roles incl. custom, 'models:write')",
    n: 2_000_000,
    call: () => (sink += can(multi, 'models:write', undefined, custom) ? 1 : 0),
    sync: true,
  });

  console.log(`# Auth cost per request, node ${process.version}, ${RUNS} runs per case, median${quick ? ' (--quick)' : ''}\n`);
  console.log(
    `| case | calls per run | wall µs per request, concurrency 1 | CPU µs per request, concurrency 1 | wall µs per request, ${CONCURRENCY} in flight |`,
  );
  console.log('|---|---:|---:|---:|---:|');
  const f = (x: number) => x.toFixed(x < 1 ? 3 : x < 10 ? 2 : 1);
  for (const c of cases) {
    const n = Math.max(1000, Math.round(c.n * scale));
    const m = await measure(c.call, n, c.sync ?? false);
    console.log(`| ${c.name} | ${n.toLocaleString('en')} | ${f(m.wall)} | ${f(m.cpu)} | ${c.sync ? '(sync)' : f(m.concurrent)} |`);
  }
  console.log(`\nJWKS fetches during the run: ${jwks.fetches} (one per JWKS-backed strategy: keys fetched once, then cached).`);
  if (sink < 0) console.log(sink);
  await jwks.close();
  await introspection.close();
}

await main();
