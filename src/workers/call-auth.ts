/**
 * Gateway → worker call credentials. Every call the gateway makes to a worker's HTTP server
 * (infer, stream, instance health) carries `Authorization: Bearer <call token>`; the worker refuses
 * anything else with 401.
 *
 * The token is derived, never stored: HMAC-SHA256(K, worker id, session, endpoint), where K is the
 * gateway's worker-call key (env MCP_WORKER_CALL_KEY, else a random key kept in
 * `<dataDir>/worker-call.key`), `session` a random value the worker process picks at start and
 * `endpoint` the URL it registered. The worker gets its token over its authenticated channel
 * (GraphQL `workerCallToken`, with its own worker credential) before it registers; each gateway
 * replica recomputes it from K and the instance's (non-secret) options. A database dump holds only
 * worker ids, sessions and endpoints: no usable token. Binding the endpoint means a token computed
 * for any other URL (an instance someone pointed elsewhere) is worthless to the real worker.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { McpError } from '../errors.ts';
import { createPrivateFileOnce, removeStaleTemps } from '../security/private-file.ts';

/** Environment variable holding the worker-call key (the same value on every gateway replica). */
export const WORKER_CALL_KEY_ENV = 'MCP_WORKER_CALL_KEY';
/** File in the gateway's data folder holding a generated key when the environment has none. */
export const WORKER_CALL_KEY_FILE = 'worker-call.key';
const MIN_KEY_CHARS = 32;
const LABEL = 'capibara-mcp worker-call v1';

/** A worker session: random, URL-safe, 16 to 64 characters (the worker picks it at start). */
export const WORKER_SESSION_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;

export function newWorkerSession(): string {
  return randomBytes(18).toString('base64url');
}

/** The call token of one worker process (worker id, its session, the endpoint it registered). */
export function deriveWorkerCallToken(key: Buffer, workerId: string, session: string, endpoint: string): string {
  return createHmac('sha256', key).update(`${LABEL}\0${workerId}\0${session}\0${endpoint}`).digest('base64url');
}

/** The worker-call key from the environment, or `null` when unset; too short → MCP_CONFIG_INVALID. */
export function workerCallKeyFromEnv(env: NodeJS.ProcessEnv = process.env): Buffer | null {
  const raw = env[WORKER_CALL_KEY_ENV];
  if (raw === undefined || raw === '') return null;
  if (raw.length < MIN_KEY_CHARS) {
    throw new McpError('MCP_CONFIG_INVALID', `${WORKER_CALL_KEY_ENV} must be at least ${MIN_KEY_CHARS} characters (e.g. openssl rand -base64 32)`, {
      details: { paths: [WORKER_CALL_KEY_ENV] },
    });
  }
  return Buffer.from(raw, 'utf8');
}

/**
 * The worker-call key: MCP_WORKER_CALL_KEY, else `<dataDir>/worker-call.key` (32 random bytes,
 * created once with mode 0600; concurrent starts agree on one file through an atomic link).
 */
export async function loadWorkerCallKey(dataDir: string, env: NodeJS.ProcessEnv = process.env): Promise<Buffer> {
  const fromEnv = workerCallKeyFromEnv(env);
  if (fromEnv) return fromEnv;
  const file = join(dataDir, WORKER_CALL_KEY_FILE);
  removeStaleTemps(file);
  const read = async () => Buffer.from((await readFile(file, 'utf8')).trim(), 'base64url');
  try {
    return await read();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dataDir, { recursive: true });
  createPrivateFileOnce(file, `${randomBytes(32).toString('base64url')}\n`); // another start's file wins
  return read();
}

/** Constant-time comparison of a presented `Authorization` header with the expected token. */
export function bearerMatches(header: string | undefined, expected: string | undefined): boolean {
  if (!header || !expected) return false;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return false;
  const a = createHash('sha256').update(m[1]!).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * What the `worker` backend plugin offers besides Backend: the call token the gateway will present
 * to a worker process (so the gateway can hand it to that worker). Only the plugin holds the key.
 */
export interface WorkerCallSigner {
  workerCallToken(workerId: string, session: string, endpoint: string): Promise<string>;
}

export function isWorkerCallSigner(x: unknown): x is WorkerCallSigner {
  return typeof x === 'object' && x !== null && typeof (x as Partial<WorkerCallSigner>).workerCallToken === 'function';
}
