import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ECHO_PLUGIN = join(ROOT, 'examples/capibara-plugin-echo');

export interface WorkerProcess {
  proc: ChildProcess;
  name: string;
  /** Everything the process wrote (pino JSON lines). */
  output(): string;
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

export interface SpawnWorkerOptions {
  gateway: string;
  name: string;
  /** Text the echo backend puts before every answer (tells which worker answered). */
  prefix?: string;
  heartbeatIntervalMs?: number;
  /** Models on the echo backend; default one: `echo` v1. */
  models?: Array<Record<string, unknown>>;
  /** Use this worker section instead (e.g. the tfjs demo model): no echo plugin, default plugins on. */
  raw?: Record<string, unknown>;
  port?: number;
}

/** Spawns `capibara-mcp worker` as a real process (through tsx, like `npm run worker`) with a temp config file. */
export function spawnWorker(opts: SpawnWorkerOptions): WorkerProcess {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-worker-'));
  const config = opts.raw ?? {
    defaultPlugins: false,
    plugins: [{ use: ECHO_PLUGIN, options: { prefix: opts.prefix ?? `${opts.name}:` } }],
    storage: { dataDir: join(dir, 'data') },
    log: { level: 'info' },
    worker: {
      gateway: opts.gateway,
      port: opts.port ?? 0,
      name: opts.name,
      heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 300,
      drainMs: 2000,
      models: opts.models ?? [{ id: 'echo', version: 'v1', backend: 'echo', task: 'generate' }],
    },
  };
  const file = join(dir, 'capibara.json');
  writeFileSync(file, JSON.stringify(config));
  const proc = spawn(process.execPath, ['--conditions=capibara-source', '--import', 'tsx', join(ROOT, 'src/main.ts'), 'worker', '--config', file], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MCP_CONFIG: '' },
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | string>((resolve) =>
    proc.once('exit', (code, signal) => {
      rmSync(dir, { recursive: true, force: true });
      resolve(code ?? signal ?? -1);
    }),
  );
  return {
    proc,
    name: opts.name,
    exited,
    output: () => out,
    kill: (signal = 'SIGKILL') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
  };
}

/** Polls fn until it returns a truthy value or the time runs out. */
export async function waitFor<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs: number, what: string, everyMs = 25): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Router settings that let a restarted worker take traffic again quickly. */
export const FAST_HEALTH = {
  healthCheck: { intervalMs: 200, timeoutMs: 500, healthyThreshold: 1, unhealthyThreshold: 2 },
  circuitBreaker: { openMs: 300, maxOpenMs: 1000 },
  outlierDetection: { baseEjectionMs: 300, maxEjectionMs: 1000 },
};

export const WORKERS_QUERY =
  `{ workers { id status embedded endpoint heartbeatIntervalMs devices { id kind } ` +
  `instances { id modelId status statusReason backend endpoint workerId } } }`;

export interface WorkerInfo {
  id: string;
  status: string;
  embedded: boolean;
  endpoint: string;
  heartbeatIntervalMs: number;
  devices: Array<{ id: string; kind: string }>;
  instances: Array<{
    id: string;
    modelId: string;
    status: string;
    statusReason: string | null;
    backend: string;
    endpoint: string | null;
    workerId: string | null;
  }>;
}
