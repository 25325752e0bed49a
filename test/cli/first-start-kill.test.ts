/**
 * The first start creates the embedded database in a child process and says so. A kill -9 of the
 * gateway meanwhile takes the child with it (it watches its parent), and the next start removes the
 * half-made `pglite.init-<pid>` folder, creates the database and serves.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, childrenOf, spawnCli, type LongRunning } from './support.ts';

async function until(fn: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (fn()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return fn();
}

describe.runIf(process.platform === 'linux')('a first start killed while it creates the database', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-first-kill-'));
  const running: LongRunning[] = [];
  afterAll(async () => {
    for (const r of running) {
      r.child.kill('SIGKILL');
      await r.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('the creating child dies with the gateway; the next start (with --port) removes its folder and serves', async () => {
    writeFileSync(
      join(dir, 'capibara.json'),
      JSON.stringify({ server: { port: 0, host: '127.0.0.1' }, storage: { dataDir: 'data' }, demo: { enabled: false }, log: { level: 'info' } }),
    );
    const first = spawnCli(['start'], { cwd: dir, env: { MCP_ADMIN_PASSWORD: 'first-start-kill-password' } });
    running.push(first);
    await first.waitFor(/"msg":"first start: creating the embedded database \(PGlite\); this takes about 10 s"/, 90_000);
    const gateway = first.child.pid!;
    let creator: { pid: number; cmdline: string } | undefined;
    await until(() => (creator = childrenOf(gateway).find((c) => c.cmdline.includes('PGlite'))) !== undefined, 10_000);
    expect(creator, 'the database-creating child process').toBeDefined();
    const stale = `pglite.init-${gateway}`;
    expect(readdirSync(join(dir, 'data'))).toContain(stale);

    first.child.kill('SIGKILL');
    await first.exited;
    // Bounded: the child polls its parent every 200 ms, even inside PGlite's long initdb call.
    expect(await until(() => !alive(creator!.pid), 15_000), `child ${creator!.pid} still running`).toBe(true);
    expect(readdirSync(join(dir, 'data'))).toContain(stale);
    expect(existsSync(join(dir, 'data', 'pglite'))).toBe(false);

    // The configured port is taken: the second start listens where --port says.
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const takenPort = (taken.address() as AddressInfo).port;
    writeFileSync(
      join(dir, 'capibara.json'),
      JSON.stringify({ server: { port: takenPort, host: '127.0.0.1' }, storage: { dataDir: 'data' }, demo: { enabled: false }, log: { level: 'info' } }),
    );
    const second = spawnCli(['start', '--port', '0'], { cwd: dir, env: { MCP_ADMIN_PASSWORD: 'first-start-kill-password' } });
    running.push(second);
    const ready = await second.waitFor(/"url":"(http:[^"]+)".*"msg":"gateway ready"/, 120_000);
    expect(second.output()).toContain(`"folder":"${join(dir, 'data', stale)}","msg":"removed the half-made database folder of an interrupted first start"`);
    expect(second.output()).toMatch(/"ms":\d+,"msg":"embedded database created"/);
    expect(readdirSync(join(dir, 'data')).filter((f) => f.startsWith('pglite'))).toEqual(['pglite']);
    const health = await fetch(`${ready[1]}/readyz`);
    expect(health.status).toBe(200);
    expect(ready[1]).not.toContain(`:${takenPort}`);
    taken.close();
    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 300_000);
});
