import { McpError } from '../errors.ts';

/** Socket errors of a connection to the database (raw, or as the cause of a failed query). */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * PostgreSQL SQLSTATEs that mean "the server cannot serve now", not "this statement is wrong":
 * class 08 (connection exception), admin/crash shutdown and "cannot connect now" (57P01-57P03),
 * too many connections (53300).
 */
function unavailableSqlState(code: string): boolean {
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300';
}

/** Messages node-postgres, pg-pool and PGlite give when the connection (not the statement) failed. */
const CONNECTION_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'Client has encountered a connection error and is not queryable',
  'Cannot use a pool after calling end on the pool',
  'PGlite is closed',
];

function isConnectionFailure(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || (/^[0-9A-Z]{5}$/.test(code) && unavailableSqlState(code)))) return true;
  return CONNECTION_MESSAGES.some((m) => err.message.startsWith(m));
}

/** The SQLSTATE of a failed statement (PostgreSQL's or PGlite's error, or one in its `cause` chain), if any. */
export function sqlStateOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}

/**
 * The one place that recognises a storage failure: a failed query or transaction because the
 * database cannot be reached (PostgreSQL down, restarting, partitioned, the pool timing out;
 * PGlite closed). It looks through `cause` (drizzle wraps the driver's error with the SQL text).
 * Returns MCP_STORAGE_UNAVAILABLE with the fixed public message (no SQL, no address), or
 * undefined for anything else (a constraint violation stays the caller's to map).
 */
export function storageFailure(err: unknown): McpError | undefined {
  // Already classified (e.g. by the credential store plugins call): keep it, with its cause for the health's log.
  if (err instanceof McpError) return err.code === 'MCP_STORAGE_UNAVAILABLE' && err.cause !== undefined ? err : undefined;
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (isConnectionFailure(e)) return new McpError('MCP_STORAGE_UNAVAILABLE', undefined, { cause: err, retryable: true });
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** A short, secret-free reason for the log: the driver's error code or first line, never the SQL or its parameters. */
export function storageFailureReason(err: unknown): string {
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (isConnectionFailure(e)) {
      const x = e as Error & { code?: unknown };
      return typeof x.code === 'string' ? x.code : x.message.split('\n')[0]!.slice(0, 200);
    }
    e = (e as { cause?: unknown }).cause;
  }
  return 'unknown';
}

/** The part of a logger logBackgroundFailure writes to (a pino Logger fits). */
interface FailureLog {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/**
 * Logs a background task's failure (a periodic check, a write off the request path). An unreachable
 * database is the storage health's to report, once per outage: here it is a debug line with a short
 * reason, never the SQL or its parameters. Anything else is a warning with the error.
 */
export function logBackgroundFailure(logger: FailureLog, err: unknown, extra: Record<string, unknown>, msg: string): void {
  if (storageFailure(err)) logger.debug({ ...extra, reason: storageFailureReason(err) }, `${msg}: storage unavailable`);
  else logger.warn({ ...extra, err }, msg);
}
