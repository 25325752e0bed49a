import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { startFakeOpenAI } from '../../src/testing/fake-openai-server.ts';
import { createTestDatabase, startTestGateway } from '../../src/testing/gateway.ts';

const ROOT = join(import.meta.dirname, '../..');
const ECHO = [{ use: './examples/capibara-plugin-echo' }];
const REGISTER = 'mutation { registerModel(input: { id: "kept", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }';

describe('persistence and lifecycle', () => {
  it('keeps models across restarts on PGlite (data folder) and loads their instances again, whichever V8 tier runs PGlite', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'mcp-data-'));
    // storage.pgliteOptimize changes how PostgreSQL's wasm is compiled, never what is stored.
    const first = await startTestGateway({ plugins: ECHO, storage: { dataDir, inMemory: false, pgliteOptimize: true } });
    await first.gql(REGISTER);
    await first.close();
    const second = await startTestGateway({ plugins: ECHO, storage: { dataDir, inMemory: false } });
    try {
      const r = await second.gql<{ model: { id: string; status: string } }>('{ model(id: "kept") { id status } }');
      expect(r.data?.model).toEqual({ id: 'kept', status: 'READY' });
      const inf = await second.gql<{ infer: { text: string } }>('mutation { infer(model: "kept", input: { prompt: "still here" }) { text } }');
      expect(inf.data?.infer.text).toBe('still here');
    } finally {
      await second.close();
    }
    // A new cluster (initdb in a child process) and two boots, each compiling PostgreSQL's wasm:
    // seconds of CPU on an idle machine, many more on a busy one.
  }, 120_000);

  it.runIf(process.env.DATABASE_URL)('keeps models across restarts on PostgreSQL', async () => {
    const db = await createTestDatabase();
    try {
      const first = await startTestGateway({ plugins: ECHO, storage: { url: db.url } });
      await first.gql(REGISTER);
      await first.close();
      const second = await startTestGateway({ plugins: ECHO, storage: { url: db.url } });
      const r = await second.gql<{ model: { status: string }; health: { storage: string } }>('{ model(id: "kept") { status } health { storage } }');
      await second.close();
      expect(r.data).toEqual({ model: { status: 'READY' }, health: { storage: 'postgres' } });
    } finally {
      await db.drop();
    }
  });

  it('serves health, readiness, metrics, GraphiQL and coded errors for bad HTTP input', async () => {
    const gw = await startTestGateway({ plugins: ECHO, server: { maxBodyBytes: 1024 } });
    try {
      await gw.gql(REGISTER);
      expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
      const ready = await fetch(`${gw.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', checks: { storage: { ok: true } } });
      const page = await fetch(`${gw.url}/graphql`, { headers: { accept: 'text/html' } });
      expect(page.status).toBe(200);
      expect(await page.text()).toMatch(/graphiql/i);
      const notFound = await fetch(`${gw.url}/api/v1/nothing`);
      expect(notFound.status).toBe(404);
      expect(await notFound.json()).toMatchObject({ error: { code: 'MCP_NOT_FOUND' } });
      const big = await fetch(`${gw.url}/api/v1/models/kept/inference`, { method: 'POST', body: JSON.stringify({ input: 'x'.repeat(5000) }) });
      expect(big.status).toBe(413);
      expect(await big.json()).toMatchObject({ error: { code: 'MCP_PAYLOAD_TOO_LARGE' } });
      const badJson = await fetch(`${gw.url}/api/v1/models/kept/inference`, { method: 'POST', body: '{"input": ' });
      expect(badJson.status).toBe(400);
      expect(await badJson.json()).toMatchObject({ error: { code: 'MCP_INVALID_JSON' } });
      const ok = await fetch(`${gw.url}/api/v1/models/kept/inference`, { method: 'POST', body: '{"input":"a"}', headers: { 'x-request-id': 'req-123' } });
      expect(ok.headers.get('x-request-id')).toBe('req-123');
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      expect(metrics).toMatch(/mcp_inference_requests_total\{model="kept",version="v1",entry="rest",code="OK"\} 1/);
    } finally {
      await gw.close();
    }
  });

  it('graceful shutdown lets in-flight requests finish and refuses new ones', async () => {
    const upstream = await startFakeOpenAI();
    const gw = await startTestGateway({});
    try {
      const reg = await gw.gql(
        `mutation { registerModel(input: { id: "slow", task: CHAT, ` +
          `versions: [{ version: "v1", instances: [{ backend: "openai", endpoint: "${upstream.url}" }] }] }) { status } }`,
      );
      expect(reg.errors).toBeUndefined();
      // The upstream holds its answer until the test opens the gate: the request is in flight for as
      // long as the test needs, whatever the machine's speed.
      let open!: () => void;
      upstream.setBehavior({
        gate: new Promise<void>((r) => {
          open = r;
        }),
      });
      const inflight = fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: 'slow', messages: [{ role: 'user', content: 'hi' }] }),
      });
      await vi.waitFor(() => expect(upstream.counts['/v1/chat/completions']).toBe(1), { timeout: 10_000, interval: 10 });
      const closing = gw.close();
      // New connections are refused while the request is still in flight.
      await vi.waitFor(() => expect(fetch(`${gw.url}/healthz`)).rejects.toThrow(), { timeout: 10_000, interval: 20 });
      open();
      const res = await inflight;
      expect(res.status).toBe(200);
      expect(((await res.json()) as { choices: unknown[] }).choices).toHaveLength(1);
      await closing;
    } finally {
      await upstream.close();
    }
  });

  it('`capibara-mcp start` runs as a process, logs JSON with request ids, and exits 0 on SIGTERM', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'mcp-proc-'));
    const child = spawn(join(ROOT, 'bin/capibara-mcp.js'), ['start'], {
      cwd: dataDir,
      env: { ...process.env, PORT: '0', DATABASE_URL: '', MCP_DEMO__ENABLED: 'false', MCP_ADMIN_PASSWORD: 'lifecycle-admin-password' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // A test that fails or times out does not leave a gateway process running.
    onTestFinished(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ready line: ${out}`)), 110_000);
      child.stdout.on('data', () => {
        const m = /"url":"(http:[^"]+)".*"msg":"gateway ready"/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
    });
    // Auth is on by default: sign in as the first-start admin (password from MCP_ADMIN_PASSWORD).
    const login = await fetch(`${url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'lifecycle-admin-password' }),
    });
    const { access_token: token } = (await login.json()) as { access_token: string };
    const r = await fetch(`${url}/api/v1/models/none/inference`, {
      method: 'POST',
      body: '{"input":"x"}',
      headers: { 'x-request-id': 'trace-me', authorization: `Bearer ${token}` },
    });
    expect(r.status).toBe(404);
    const code = await new Promise<number | null>((resolve) => {
      child.once('exit', (c) => resolve(c));
      child.kill('SIGTERM');
    });
    expect(code).toBe(0);
    const lines = out
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.some((l) => l.msg === 'stopped')).toBe(true);
    expect(lines.some((l) => l.reqId === 'trace-me')).toBe(true);
    // A process that compiles the sources (tsx) and creates its PGlite cluster: seconds of CPU on an
    // idle machine, many more on a busy one.
  }, 120_000);
});
