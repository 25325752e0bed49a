/**
 * The one mapping from upstream failures (transport errors, HTTP statuses, timeouts, aborts)
 * to McpError, shared by every remote backend (openai, kserve-v2, worker).
 */
import { McpError, type ErrorCode } from '../errors.ts';

/** Which timeout fired. `connect` is the only retryable one (nothing reached the model). */
export type TimeoutKind = 'connect' | 'firstByte' | 'idle' | 'total' | 'deadline';

/** Transport error codes that mean "the server could not be reached / the connection broke". */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'ECONNABORTED',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_INFO',
]);

/** Of those, the ones raised before a connection existed: the request cannot have reached the model. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** Parses Retry-After (delta seconds or HTTP date) into ms from `now`; undefined when absent or unparsable. */
export function parseRetryAfter(value: string | string[] | undefined | null, now = Date.now()): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined || raw === null) return undefined;
  const text = raw.trim();
  if (text === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

function errorCodeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; errors?: unknown; cause?: unknown };
  if (typeof e.code === 'string') return e.code;
  // happy-eyeballs connect errors come as AggregateError whose members carry the code
  if (Array.isArray(e.errors))
    for (const inner of e.errors) {
      const c = errorCodeOf(inner);
      if (c) return c;
    }
  if (e.cause !== undefined && e.cause !== err) return errorCodeOf(e.cause);
  return undefined;
}

export function deadlineError(kind: TimeoutKind, ms?: number, cause?: unknown): McpError {
  const what = kind === 'firstByte' ? 'first byte' : kind;
  return new McpError('MCP_DEADLINE_EXCEEDED', `upstream ${what} timeout${ms !== undefined ? ` after ${ms} ms` : ''}`, {
    details: ms !== undefined ? { timeout: kind, timeoutMs: ms } : { timeout: kind },
    retryable: kind === 'connect',
    mayHaveExecuted: kind !== 'connect',
    cause,
  });
}

export function cancelledError(cause?: unknown): McpError {
  return new McpError('MCP_CANCELLED', 'the request was cancelled; the upstream call was aborted', { cause });
}

/**
 * Maps an error thrown by undici (or by reading a body) to an McpError.
 * Timeout values are only used for messages/details.
 */
export function mapTransportError(err: unknown, timeouts: { connectMs?: number; firstByteMs?: number; idleMs?: number } = {}): McpError {
  if (err instanceof McpError) return err;
  const code = errorCodeOf(err);
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return deadlineError('connect', timeouts.connectMs, err);
    case 'UND_ERR_HEADERS_TIMEOUT':
      return deadlineError('firstByte', timeouts.firstByteMs, err);
    case 'UND_ERR_BODY_TIMEOUT':
      return deadlineError('idle', timeouts.idleMs, err);
    case 'UND_ERR_ABORTED':
    case 'ABORT_ERR':
      return cancelledError(err);
    default:
      break;
  }
  if (code !== undefined && UNAVAILABLE_CODES.has(code)) {
    return new McpError('MCP_UPSTREAM_UNAVAILABLE', `model server unreachable (${code})`, {
      retryable: true,
      mayHaveExecuted: !NOT_SENT_CODES.has(code),
      details: { cause: code },
      cause: err,
    });
  }
  if (err instanceof Error && err.name === 'AbortError') return cancelledError(err);
  if (err instanceof Error && err.name === 'TimeoutError') return deadlineError('total', undefined, err);
  return new McpError('MCP_UPSTREAM_ERROR', `upstream call failed${code ? ` (${code})` : ''}`, {
    retryable: false,
    details: code ? { cause: code } : undefined,
    cause: err,
  });
}

/** What an upstream error body said, in the shapes OpenAI, KServe, FastAPI and the worker protocol use. */
export interface UpstreamErrorBody {
  message?: string;
  /** Upstream code/type, e.g. OpenAI `error.code` / `error.type`, or an MCP_* code from a worker. */
  code?: string;
  type?: string;
  param?: string;
  details?: Record<string, unknown>;
  retryable?: boolean;
  /** Worker protocol: false when the worker knows the request did not run. */
  mayHaveExecuted?: boolean;
}

export function parseErrorBody(text: string): UpstreamErrorBody {
  const trimmed = text.trim();
  if (trimmed === '') return {};
  let json: unknown;
  try {
    json = JSON.parse(trimmed);
  } catch {
    return { message: trimmed.slice(0, 500) };
  }
  if (typeof json !== 'object' || json === null) return { message: trimmed.slice(0, 500) };
  const obj = json as Record<string, unknown>;
  const err = obj.error;
  if (typeof err === 'string') return { message: err };
  if (typeof err === 'object' && err !== null) {
    const e = err as Record<string, unknown>;
    return {
      message: typeof e.message === 'string' ? e.message : undefined,
      code: typeof e.code === 'string' ? e.code : typeof e.code === 'number' ? String(e.code) : undefined,
      type: typeof e.type === 'string' ? e.type : undefined,
      param: typeof e.param === 'string' ? e.param : undefined,
      details: typeof e.details === 'object' && e.details !== null ? (e.details as Record<string, unknown>) : undefined,
      retryable: typeof e.retryable === 'boolean' ? e.retryable : undefined,
      mayHaveExecuted: typeof e.mayHaveExecuted === 'boolean' ? e.mayHaveExecuted : undefined,
    };
  }
  if (typeof obj.message === 'string') return { message: obj.message };
  if (typeof obj.detail === 'string') return { message: obj.detail };
  if (Array.isArray(obj.detail)) return { message: JSON.stringify(obj.detail).slice(0, 500) };
  return { message: trimmed.slice(0, 500) };
}

const UNSUPPORTED_RE = /unsupported|not supported|unrecognized|unknown (parameter|field|argument|option)|not permitted|extra (fields|inputs)/i;

/** An upstream code, type or parameter name worth passing on: a short identifier, nothing free-form. */
const TOKEN_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const token = (v: string | undefined) => (v !== undefined && TOKEN_RE.test(v) ? v : undefined);

/**
 * Maps a non-2xx upstream HTTP answer to an McpError. The message is ours (what happened and the
 * upstream status), never the upstream body: an internal service's error text can carry secrets.
 * Only short identifiers from the body (code, type, param) go into `details`. The client logs the
 * body, cut short.
 * 429 → RATE_LIMITED (retryable, retryAfterMs); 502/504 → UPSTREAM_ERROR, 503 → UPSTREAM_UNAVAILABLE (retryable);
 * 404 → MODEL_NOT_FOUND; 400/422 → BAD_REQUEST or UNSUPPORTED_PARAMETER; 413 → PAYLOAD_TOO_LARGE;
 * 401/403 → UPSTREAM_ERROR (our credentials, not the client's); other 4xx → BAD_REQUEST; other 5xx → UPSTREAM_ERROR.
 */
export function mapHttpError(status: number, headers: Record<string, string | string[] | undefined>, bodyText: string, now = Date.now()): McpError {
  const body = parseErrorBody(bodyText);
  const upstreamMessage = body.message;
  const details: Record<string, unknown> = { status };
  const code = token(body.code);
  const type = token(body.type);
  const param = token(body.param);
  if (code !== undefined) details.upstreamCode = code;
  if (type !== undefined) details.upstreamType = type;
  if (param !== undefined) details.param = param;
  const msg = (what: string) => `${what} (upstream status ${status})`;
  const make = (code: ErrorCode, message: string, retryable: boolean, mayHaveExecuted = true) =>
    new McpError(code, message, { details, retryable, mayHaveExecuted });

  if (status === 429) {
    const retryAfterMs = parseRetryAfter(headers['retry-after'], now);
    if (retryAfterMs !== undefined) details.retryAfterMs = retryAfterMs;
    return make('MCP_UPSTREAM_RATE_LIMITED', msg('the model server is rate limiting us'), true, false);
  }
  if (status === 503) {
    const retryAfterMs = parseRetryAfter(headers['retry-after'], now);
    if (retryAfterMs !== undefined) details.retryAfterMs = retryAfterMs;
    return make('MCP_UPSTREAM_UNAVAILABLE', msg('the model server is unavailable'), true, false);
  }
  if (status === 502 || status === 504) return make('MCP_UPSTREAM_ERROR', msg('bad gateway upstream'), true);
  if (status === 404) return make('MCP_MODEL_NOT_FOUND', msg('the model server does not know this model'), false);
  if (status === 413) return make('MCP_PAYLOAD_TOO_LARGE', msg('the model server rejected the body as too large'), false);
  if (status === 401 || status === 403) return make('MCP_UPSTREAM_ERROR', msg("the model server rejected the gateway's credentials"), false);
  if (status === 408) return make('MCP_UPSTREAM_ERROR', msg('upstream request timeout'), true);
  if (status >= 400 && status < 500) {
    const unsupported =
      (upstreamMessage !== undefined && UNSUPPORTED_RE.test(upstreamMessage)) || body.code === 'unsupported_parameter' || body.code === 'unsupported_value';
    return unsupported
      ? make('MCP_UNSUPPORTED_PARAMETER', msg(`the model server does not support a parameter${param ? ` (${param})` : ''}`), false)
      : make('MCP_BAD_REQUEST', msg('the model server rejected the request'), false);
  }
  return make('MCP_UPSTREAM_ERROR', msg('the model server failed'), false);
}

/** A failed health probe as a report (the HTTP status when the server answered), never a throw. */
export function probeFailure(err: unknown): { ok: false; detail: string } {
  const e = err instanceof McpError ? err : new McpError('MCP_UPSTREAM_ERROR', String(err));
  const status = e.details?.status;
  return { ok: false, detail: status !== undefined ? `not ready (status ${String(status)}): ${e.message}` : `${e.code}: ${e.message}` };
}
