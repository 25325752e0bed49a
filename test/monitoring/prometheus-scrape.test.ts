import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startTestGateway } from '../../src/testing/gateway.ts';

const ECHO = [{ use: './examples/capibara-plugin-echo' }];
const REGISTER = 'mutation { registerModel(input: { id: "scraped", task: GENERATE, versions: [{ version: "v1", instances: [{ backend: "echo" }] }] }) { id } }';
const HAS_PROMETHEUS = spawnSync('prometheus', ['--version']).status === 0;
const SENT = 37;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Runs a PromQL instant query; the value of its single sample, or undefined while there is none. */
async function query(base: string, promql: string): Promise<number | undefined> {
  const r = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`).catch(() => undefined);
  if (!r?.ok) return undefined;
  const body = (await r.json()) as { status: string; data: { result: Array<{ value: [number, string] }> } };
  const v = body.data.result[0]?.value[1];
  return v === undefined ? undefined : Number(v);
}

// A real Prometheus server (Debian package `prometheus`; .ci/run installs it) scraping the gateway on loopback.
describe.skipIf(!HAS_PROMETHEUS)('Prometheus scrapes the gateway (skipped when the prometheus binary is not installed)', () => {
  it('a PromQL query through the Prometheus HTTP API returns the request count the test sent', async () => {
    const gw = await startTestGateway({ plugins: ECHO, auth: { enabled: true } });
    const dir = mkdtempSync(join(tmpdir(), 'mcp-prom-'));
    let prom: ChildProcess | undefined;
    let log = '';
    try {
      expect((await gw.gql(REGISTER, undefined, await gw.login())).errors).toBeUndefined();
      const headers = await gw.login();
      for (let i = 0; i < SENT; i++) {
        const r = await fetch(`${gw.url}/api/v1/models/scraped/inference`, { method: 'POST', headers, body: '{"input":"hi"}' });
        expect(r.status).toBe(200);
      }
      // Prometheus authenticates with the bearer token of a user holding metrics:read (admin here).
      const token = headers.authorization!.replace(/^Bearer /, '');
      writeFileSync(join(dir, 'token'), token);
      const target = new URL(gw.url).host;
      writeFileSync(
        join(dir, 'prometheus.yml'),
        [
          'global:',
          '  scrape_interval: 2s',
          '  scrape_timeout: 2s',
          'scrape_configs:',
          '  - job_name: capibara',
          '    authorization:',
          `      credentials_file: ${join(dir, 'token')}`,
          '    static_configs:',
          `      - targets: ['${target}']`,
          '',
        ].join('\n'),
      );
      const port = await freePort();
      prom = spawn(
        'prometheus',
        [
          `--config.file=${join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      prom.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
      const base = `http://127.0.0.1:${port}`;
      const promql = 'sum(mcp_inference_requests_total{job="capibara",model="scraped",code="OK"})';
      let seen: number | undefined;
      const until = Date.now() + 90_000;
      while (Date.now() < until && prom.exitCode === null) {
        seen = await query(base, promql);
        if (seen === SENT) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(seen, `prometheus log: ${log}`).toBe(SENT);
      // The scrape itself was healthy (up == 1), in OpenMetrics (Prometheus asks for it first).
      expect(await query(base, 'up{job="capibara"}')).toBe(1);
      expect(await query(base, 'sum(mcp_inference_duration_seconds_count{model="scraped"})')).toBe(SENT);
    } finally {
      if (prom && prom.exitCode === null) {
        const exited = new Promise((r) => prom!.once('exit', r));
        prom.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (prom.exitCode === null) prom.kill('SIGKILL');
      }
      await gw.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
