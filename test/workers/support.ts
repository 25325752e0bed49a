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

/** A gateway the helpers below talk to (the test kit's TestGateway, or one with credentials baked in). */
export interface GqlClient {
  gql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    headers?: Record<string, string>,
  ): Promise<{ data?: T; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> }>;
}

/**
 * The operator flow before a worker starts: register each model (when missing) and assign them all
 * to the worker. `headers`: the operator's credentials (none when auth is off).
 */
export async function prepareWorker(
  gw: GqlClient,
  worker: string,
  models: Array<{ id: string; task?: string }>,
  headers: Record<string, string> = {},
): Promise<void> {
  for (const m of models) {
    const r = await gw.gql(`mutation($i: RegisterModelInput!) { registerModel(input: $i) { id } }`, { i: { id: m.id, task: m.task ?? 'GENERATE' } }, headers);
    if (r.errors?.length && r.errors[0]!.extensions?.code !== 'MCP_DUPLICATE_ID') throw new Error(`registerModel ${m.id}: ${r.errors[0]!.message}`);
  }
  const a = await gw.gql(
    `mutation($w: String!, $m: [String!]!) { assignWorkerModels(worker: $w, models: $m) { models } }`,
    { w: worker, m: models.map((m) => m.id) },
    headers,
  );
  if (a.errors?.length) throw new Error(`assignWorkerModels ${worker}: ${a.errors[0]!.message}`);
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
  /** The worker's credential (worker.token, sent as Authorization: Bearer). */
  token?: string;
  /** URL the worker registers (worker.advertiseUrl), e.g. an attacker's server. */
  advertiseUrl?: string;
  /** Device memory the worker states (worker.memory), e.g. `{ cpu: '1GiB' }`. */
  memory?: Record<string, string | number>;
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
      ...(opts.token ? { token: opts.token } : {}),
      ...(opts.advertiseUrl ? { advertiseUrl: opts.advertiseUrl } : {}),
      ...(opts.memory ? { memory: opts.memory } : {}),
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
  `{ workers { id status embedded endpoint heartbeatIntervalMs assignedModels devices { id kind } ` +
  `instances { id modelId status statusReason backend endpoint workerId } } }`;

export interface WorkerInfo {
  id: string;
  status: string;
  embedded: boolean;
  endpoint: string;
  heartbeatIntervalMs: number;
  assignedModels: string[];
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
