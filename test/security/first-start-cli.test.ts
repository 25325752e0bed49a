/**
 * `capibara-mcp start` on an empty store: the generated admin password goes to the terminal
 * (stderr) once, never into the JSON log (stdout); a second start on the same data prints nothing.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const CLI = join(import.meta.dirname, '../../src/main.ts');
const TSX = join(import.meta.dirname, '../../node_modules/.bin/tsx');

/** Starts the CLI, waits for `gateway ready`, stops it with SIGTERM; returns its stdout, stderr and URL. */
async function startOnce(dir: string, signIn?: (url: string, stderr: () => string) => Promise<void>): Promise<{ stdout: string; stderr: string }> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'MCP_ADMIN_PASSWORD' && !k.startsWith('MCP_SECRET_KEY')),
  );
  const child = spawn(TSX, ['--conditions=capibara-source', CLI, 'start'], { cwd: dir, env: { ...env, DATABASE_URL: '', PORT: '' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`not ready:\n${stdout}\n${stderr}`)), 90_000);
      child.once('exit', (code) => reject(new Error(`exited ${code}:\n${stdout}\n${stderr}`)));
      child.stdout.on('data', () => {
        const m = /"url":"(http:[^"]+)".*"msg":"gateway ready"/.exec(stdout);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
    });
    await signIn?.(url, () => stderr);
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  return { stdout, stderr };
}

describe('first start from the CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-first-start-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints the generated admin password once on stderr, never in the log, and it signs in', async () => {
    writeFileSync(
      join(dir, 'capibara.json'),
      JSON.stringify({
        server: { port: 0, host: '127.0.0.1' },
        storage: { dataDir: join(dir, 'data') },
        demo: { enabled: false },
        defaultPlugins: false,
        plugins: [{ use: 'p2c-ewma' }],
      }),
    );
    let password = '';
    const first = await startOnce(dir, async (url, stderr) => {
      // The banner follows the `gateway ready` log line (stdout and stderr arrive separately).
      for (let i = 0; i < 100 && !password; i++) {
        password = /Created user "admin" with this password[^\n]*\n\n\s+(\S+)\n/.exec(stderr())?.[1] ?? '';
        if (!password) await new Promise((r) => setTimeout(r, 50));
      }
      expect(password.length).toBeGreaterThanOrEqual(20);
      const r = await fetch(`${url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'admin', password }),
      });
      expect(r.status).toBe(200);
      expect((await fetch(`${url}/v1/models`)).status).toBe(401);
    });
    expect(first.stderr.split(password).length - 1).toBe(1);
    expect(first.stdout).not.toContain(password);
    expect(first.stdout).toContain('sign in with POST /api/v1/auth/login');
    // No MCP_SECRET_KEY: the data-dir key file seals the signing key (nothing stored unencrypted).
    const keyFile = join(dir, 'data', 'secret.key');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(first.stdout).toContain('first start: created the secret key file');
    expect(first.stdout).not.toContain('stored unencrypted');
    expect(first.stdout + first.stderr).not.toContain(readFileSync(keyFile, 'utf8').trim());

    const second = await startOnce(dir);
    expect(second.stderr).not.toContain('Created user');
    expect(second.stderr + second.stdout).not.toContain(password);
  }, 240_000);
});
