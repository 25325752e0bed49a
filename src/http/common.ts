import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { StorageHealth } from '../db/storage-health.ts';
import { McpError } from '../errors.ts';
import { policiesOf, rateLimitHeaders } from '../limits/headers.ts';
import type { AuthRequest } from '../plugin/contract.ts';
import { checkId } from '../validation.ts';

/** Per-request state shared by the REST, OpenAI and KServe adapters. */
export interface HttpExchange {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  logger: Logger;
  /** Path without the query string. */
  path: string;
  /** Aborts when the client goes away before the response is finished. */
  signal: AbortSignal;
}

export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && given.length > 0 && given.length <= 128 && /^[\w.:-]+$/.test(given) ? given : randomUUID();
}

/** An AbortSignal that fires when the client closes the connection before we answered. */
export function clientGone(req: IncomingMessage, res: ServerResponse): AbortSignal {
  const ctl = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) ctl.abort(new McpError('MCP_CANCELLED', 'the client went away'));
  });
  return ctl.signal;
}

export function authRequestOf(req: IncomingMessage, entry: string): AuthRequest {
  return { headers: req.headers as Record<string, string | undefined>, ip: req.socket.remoteAddress, entry };
}

/**
 * Decodes one percent-encoded path segment (an id): a malformed encoding is MCP_BAD_REQUEST (not a
 * URIError → 500); an id with a control character, empty or too long is MCP_VALIDATION_FAILED (checkId).
 */
export function pathParam(raw: string, name: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new McpError('MCP_BAD_REQUEST', `${name}: malformed percent-encoding in the path`, { details: { path: name } });
  }
  return checkId(decoded, name);
}

/** Reads the whole body up to `limit` bytes (413 beyond), as a Buffer. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(new McpError('MCP_PAYLOAD_TOO_LARGE', `the body is ${declared} bytes; the limit is ${limit}`, { details: { limit } }));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new McpError('MCP_PAYLOAD_TOO_LARGE', `the body exceeds the limit of ${limit} bytes`, { details: { limit } }));
        req.resume();
        chunks.length = 0;
        return;
      }
      chunks.push(c);
    });
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once('error', (err) => reject(new McpError('MCP_BAD_REQUEST', `could not read the body: ${err.message}`)));
  });
}

/** Reads and parses a JSON body; an invalid body is MCP_INVALID_JSON, an empty one too unless `whenEmpty` is given (then answered). */
export async function readJson(req: IncomingMessage, limit: number, whenEmpty?: unknown): Promise<unknown> {
  const body = await readBody(req, limit);
  if (body.length === 0) {
    if (whenEmpty !== undefined) return whenEmpty;
    throw new McpError('MCP_INVALID_JSON', 'the body is empty; send a JSON object');
  }
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new McpError('MCP_INVALID_JSON', `the body is not valid JSON: ${(err as Error).message}`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** A /graphql request refused before GraphQL ran (body too large, unreadable): the GraphQL error shape, and the connection closed. */
export function sendGraphQLError(res: ServerResponse, e: McpError): void {
  sendJson(res, e.status, { errors: [{ message: e.message, extensions: { code: e.code } }] }, { connection: 'close' });
}

/** Headers that go with an error status: Retry-After (seconds) for 429/503 when known, and a rate limit's RateLimit-Policy / RateLimit. */
export function errorHeaders(e: McpError): Record<string, string> {
  const retryAfterMs = Number(e.details?.retryAfterMs ?? 0);
  const retry: Record<string, string> = retryAfterMs > 0 ? { 'retry-after': String(Math.ceil(retryAfterMs / 1000)) } : {};
  return e.code === 'MCP_RATE_LIMITED' ? { ...retry, ...rateLimitHeaders(policiesOf(e.details)) } : retry;
}

/**
 * Logs unexpected errors (with the request id) and masks them; returns the McpError to send.
 * Client errors are logged at debug, server errors at warn/error. A storage failure is
 * MCP_STORAGE_UNAVAILABLE (storage.classify), logged once per outage by the storage health, so
 * at debug here.
 */
export function reportError(err: unknown, logger: Logger, storage: StorageHealth): McpError {
  const e = storage.classify(err);
  if (e.code === 'MCP_INTERNAL') logger.error({ err }, 'unexpected error');
  else if (e.code === 'MCP_STORAGE_UNAVAILABLE') logger.debug({ code: e.code }, 'request failed: storage unavailable');
  else if (e.status >= 500) logger.warn({ code: e.code, msg: e.message }, 'request failed');
  else logger.debug({ code: e.code, msg: e.message }, 'request rejected');
  return e;
}

/**
 * A validation error of the internal inference input (`input.parameters.temperature`, …) restated
 * in the client's own terms: `rename` maps an internal path to the client's parameter (or returns
 * it unchanged), in `details.path`, each issue's path and the message's leading path. Anything
 * else is returned as it is.
 */
export function inClientTerms(err: unknown, rename: (path: string) => string): unknown {
  if (!(err instanceof McpError) || typeof err.details?.path !== 'string') return err;
  const path = err.details.path;
  const renamed = rename(path);
  const issues = Array.isArray(err.details.issues)
    ? (err.details.issues as Array<{ path: string; message: string }>).map((i) => ({ ...i, path: rename(i.path) }))
    : undefined;
  if (renamed === path && !issues?.some((i, n) => i.path !== (err.details!.issues as Array<{ path: string }>)[n]!.path)) return err;
  const message = err.message.startsWith(`${path}:`) ? `${renamed}${err.message.slice(path.length)}` : err.message;
  return new McpError(err.code, message, { details: { ...err.details, path: renamed, ...(issues ? { issues } : {}) }, cause: err, status: err.status });
}

/** The response cache's outcome as the `x-mcp-cache` header (hit, miss, bypass), set before the answer is written. */
export function cacheHeader(res: ServerResponse): (outcome: 'hit' | 'miss' | 'bypass') => void {
  return (outcome) => {
    if (!res.headersSent) res.setHeader('x-mcp-cache', outcome);
  };
}
