/**
 * The gateway under 500 connections, with and without its overload bound, in one run (issue 13, Overload).
 * The embedded default as `npm start` runs it (auth on, PGlite in a temp folder, demo model capibara-mini on
 * tfjs), started twice on the same data folder: server.overload.maxInflight 0 (no bound) and the default.
 * Load from test/support/overload-load.ts in its own process: 4 connections for --pre s, 500 for --load s,
 * then 4 connections for two --post s windows, all POST /v1/chat/completions (max_tokens 8) with an access token.
 *
 *   npx tsx bench/overload.ts [--load=20] [--pre=5] [--post=5] [--connections=500] [--bound=<server.overload.maxInflight default>]
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configSchema } from '../src/config/schema.ts';
import { freeLoopbackPort } from '../src/testing/loopback-server.ts';
import type { LoadPlan, LoadReport, PhaseReport } from '../test/support/overload-load.ts';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const arg = (name: string, dflt: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;
const LOAD = Number(arg('load', '20'));
const PRE = Number(arg('pre', '5'));
const POST = Number(arg('post', '5'));
const CONNECTIONS = Number(arg('connections', '500'));
const BOUND = Number(arg('bound', String(configSchema.parse({}).server.overload.maxInflight)));
const PASSWORD = 'bench-overload-admin-0123';

async function startGateway(dataDir: string, maxInflight: number): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freeLoopbackPort();
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=capibara-source', 'src/main.ts', 'start'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
    env: {
      ...process.env,
      MCP_STORAGE__DATA_DIR: dataDir,
      MCP_SERVER__PORT: String(port),
      MCP_ADMIN_PASSWORD: PASSWORD,
      MCP_LOG__LEVEL: 'warn',
      MCP_SERVER__OVERLOAD__MAX_INFLIGHT: String(maxInflight),
    },
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}`);
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) throw new Error('gateway not ready in 120 s');
    await new Promise((r) => setTimeout(r, 500));
  }
  return {
    url,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function token(url: string): Promise<string> {
  const r = await fetch(`${url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: PASSWORD }),
  });
  return ((await r.json()) as { access_token: string }).access_token;
}

function runLoad(plan: LoadPlan): Promise<LoadReport> {
  const script = join(ROOT, 'test/support/overload-load.ts');
  return new Promise((res, rej) =>
    execFile(process.execPath, ['--import', 'tsx', script, JSON.stringify(plan)], { maxBuffer: 1 << 22 }, (err, stdout) =>
      err ? rej(err) : res(JSON.parse(stdout) as LoadReport),
    ),
  );
}

const fmt = (q: { p50: number; p99: number; max: number }) => `${q.p50} / ${q.p99} / ${q.max}`;

const dataDir = mkdtempSync(join(tmpdir(), 'mcp-bench-overload-'));
const rows: string[] = [];
try {
  for (const maxInflight of [0, BOUND]) {
    const gw = await startGateway(dataDir, maxInflight);
    try {
      const auth = `Bearer ${await token(gw.url)}`;
      const report = await runLoad({
        url: `${gw.url}/v1/chat/completions`,
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: auth },
        body: JSON.stringify({ model: 'capibara-mini', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8 }),
        phases: [
          { name: 'before', connections: 4, seconds: PRE },
          { name: 'load', connections: CONNECTIONS, seconds: LOAD },
          { name: 'after', connections: 4, seconds: POST },
          { name: 'after2', connections: 4, seconds: POST },
        ],
      });
      const [before, load, after, after2] = report.phases as [PhaseReport, PhaseReport, PhaseReport, PhaseReport];
      const label = maxInflight === 0 ? 'no bound (maxInflight 0)' : `maxInflight ${maxInflight}`;
      rows.push(
        `| ${label} | ${load.ok} | ${fmt(load.okMs)} | ${fmt(load.okOnAcceptedMs)} | ${fmt(load.firstAnswerMs)} | ${load.rejected} (${load.rejectedWithRetryAfter} with Retry-After) | ${fmt(load.rejectedMs)} | ${load.errors} | ${before.okPerSecond} | ${after.okPerSecond} (${(after.okPerSecond / before.okPerSecond).toFixed(2)}×) | ${after2.okPerSecond} (${(after2.okPerSecond / before.okPerSecond).toFixed(2)}×) |`,
      );
      process.stderr.write(`${label}: ${JSON.stringify(report)}\n`);
    } finally {
      await gw.stop();
    }
  }
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
console.log(
  `500 connections × ${LOAD} s on POST /v1/chat/completions (capibara-mini, max_tokens 8); latencies ms p50 / p99 / max\n\n` +
    '| gateway | admitted | admitted ms | admitted on accepted connections ms | first answer per connection ms | refused 503 | refused ms | errors | req/s before (4 conn) | req/s 0–5 s after | req/s 5–10 s after |\n' +
    '|---|---|---|---|---|---|---|---|---|---|---|\n' +
    rows.join('\n'),
);
