import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Config } from '../config/schema.ts';
import { McpError } from '../errors.ts';
import type { GraphQLServer } from '../graphql/yoga.ts';
import { OverloadGuard } from '../limits/overload-guard.ts';
import { recordDenial } from '../audit/denials.ts';
import { renderMetrics, wantsOpenMetrics } from '../monitoring/exposition.ts';
import type { Services } from '../services.ts';
import { authRequestOf, clientGone, errorHeaders, reportError, requestIdOf, sendGraphQLError, sendJson, type HttpExchange } from './common.ts';
import { serveDashboard } from './dashboard.ts';
import { handleRest } from './rest.ts';

/** A query flag: present without a value (`?strict`) or with any value but 0/false. */
function isOn(value: string | null): boolean {
  return value !== null && value !== '0' && value.toLowerCase() !== 'false';
}

/** An HTTP API mounted under a path prefix (REST, OpenAI, KServe v2). */
export interface HttpAdapter {
  prefix: string;
  /** Handles the request; false when no route matched (404). */
  handle(services: Services, x: HttpExchange): Promise<boolean>;
  /** The error body in this API's own shape; defaults to `{ error: { code, message, details } }`. */
  errorBody?(e: McpError): unknown;
}

const restAdapter: HttpAdapter = { prefix: '/api/v1/', handle: handleRest };

/** The `entry` label of mcp_overload_rejected_total per mounted API. */
const ENTRY_OF_PREFIX: Record<string, string> = { '/api/v1/': 'rest', '/v1/': 'openai', '/v2': 'kserve' };

function defaultErrorBody(e: McpError): unknown {
  return { error: e.toJSON() };
}

/** Why a /graphql request's body is refused before reading it: too large, or no Content-Length on a POST. */
function graphqlBodyProblem(req: IncomingMessage, limit: number): McpError | undefined {
  if (req.method !== 'POST') return undefined;
  const raw = req.headers['content-length'];
  if (raw === undefined) {
    return req.headers['transfer-encoding'] ? new McpError('MCP_LENGTH_REQUIRED', 'POST /graphql needs a Content-Length header') : undefined;
  }
  const declared = Number(raw);
  if (declared > limit) return new McpError('MCP_PAYLOAD_TOO_LARGE', `the body is ${declared} bytes; the limit is ${limit}`);
  return undefined;
}

/**
 * Node's HTTP server options from `server`: the whole request (headers and body) must arrive
 * within requestTimeoutMs and its headers within headersTimeoutMs (slow-header sockets are closed
 * with 408); an idle keep-alive connection is closed after keepAliveTimeoutMs. The answer is not
 * bounded by these (Node's requestTimeout covers receiving the request), so SSE streams run on.
 * Node checks the timeouts every connectionsCheckingInterval: a fraction of the shortest one.
 */
function serverOptions(s: Config['server']): ServerOptions {
  const headersTimeout = Math.min(s.headersTimeoutMs, s.requestTimeoutMs);
  return {
    headersTimeout,
    requestTimeout: s.requestTimeoutMs,
    keepAliveTimeout: s.keepAliveTimeoutMs,
    maxHeaderSize: s.maxHeaderBytes,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
  };
}

/** Closes a new TCP connection at once when its address already has `max` open (HTTP and upgraded WebSocket sockets alike). */
function capSocketsPerIp(server: Server, max: number): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const ip = socket.remoteAddress ?? '';
    const n = open.get(ip) ?? 0;
    if (n >= max) {
      socket.destroy();
      return;
    }
    open.set(ip, n + 1);
    socket.once('close', () => {
      const left = (open.get(ip) ?? 1) - 1;
      if (left <= 0) open.delete(ip);
      else open.set(ip, left);
    });
  });
}

export interface GatewayHttpServer {
  server: Server;
  /** Stops accepting, waits for in-flight requests up to graceMs, then closes every connection. */
  shutdown(graceMs: number): Promise<void>;
}

export function createGatewayHttpServer(services: Services, graphql: GraphQLServer, adapters: HttpAdapter[] = []): GatewayHttpServer {
  const mounted = [restAdapter, ...adapters];
  const accessLog = services.config.log.access;
  let inflight = 0;
  let draining = false;
  let onIdle: (() => void) | undefined;

  async function dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path === '/healthz') return sendJson(res, 200, { status: 'live' });
    if (path === '/readyz') {
      const strict = q !== -1 && isOn(new URLSearchParams(url.slice(q + 1)).get('strict'));
      const r = await services.readiness({ strict });
      const ready = r.ready && !draining;
      const status = !ready ? 'not ready' : r.storage === 'up' ? 'ready' : 'degraded';
      return sendJson(res, ready ? 200 : 503, { status, storage: r.storage, checks: r.checks });
    }
    if (path === '/metrics') {
      if (!services.config.auth.publicMetrics) {
        try {
          await services.auth.requirePermission(authRequestOf(req, 'metrics'), 'metrics:read');
        } catch (err) {
          const e = reportError(err, services.logger, services.storage);
          return sendJson(res, e.status, defaultErrorBody(e));
        }
      }
      const { contentType, body } = await renderMetrics(services.metricsRegistry, wantsOpenMetrics(req.headers.accept));
      res.writeHead(200, { 'content-type': contentType, vary: 'accept' });
      res.end(body);
      return;
    }
    const requestId = requestIdOf(req);
    res.setHeader('x-request-id', requestId);
    const logger = services.logger.child({ reqId: requestId });
    if (accessLog) {
      const started = performance.now();
      res.once('close', () =>
        logger.info({ method: req.method, path, status: res.statusCode, ms: Math.round((performance.now() - started) * 100) / 100 }, 'request'),
      );
    }
    if (path === '/graphql') {
      // The body limit is enforced here from Content-Length (Yoga's own check pipes every body
      // through a web TransformStream: ~8% of a request's CPU). Bodies of unknown length are refused.
      const rejected = graphqlBodyProblem(req, services.config.server.maxBodyBytes);
      if (rejected) {
        return sendGraphQLError(res, rejected);
      }
      // The signal reaches resolvers: a client hanging up aborts the upstream call or stream.
      await graphql.handle(req, res, { req, requestId, logger, signal: clientGone(req, res) });
      return;
    }
    const adapter = mounted.find((a) => path.startsWith(a.prefix));
    const x: HttpExchange = { req, res, requestId, logger, path, signal: clientGone(req, res) };
    try {
      if (draining) throw new McpError('MCP_SHUTTING_DOWN');
      if (path === '/' && req.method === 'GET') {
        return sendJson(res, 200, {
          name: 'capibara-mcp',
          graphql: '/graphql',
          rest: '/api/v1',
          openai: '/v1',
          kserve: '/v2',
          health: ['/healthz', '/readyz'],
          metrics: '/metrics',
          ...(services.config.server.dashboard ? { dashboard: '/dashboard' } : {}),
        });
      }
      if (services.config.server.dashboard && serveDashboard(path, req.method, req.headers['accept-encoding'], res)) return;
      if (!adapter || !(await adapter.handle(services, x))) {
        throw new McpError('MCP_NOT_FOUND', `no route ${req.method} ${path}`);
      }
    } catch (err) {
      const e = reportError(err, logger, services.storage);
      if (e.status === 401 || e.status === 403) {
        const target = `${req.method} ${path}`;
        recordDenial(services.audit, { ip: req.socket.remoteAddress, requestId, entry: adapter?.prefix ?? 'http', target, code: e.code });
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendJson(res, e.status, (adapter?.errorBody ?? defaultErrorBody)(e), errorHeaders(e));
    }
  }

  const guard = new OverloadGuard(services.config.server.overload, services.metricsRegistry);

  /**
   * Refuses a request past the overload bound, from its URL alone (no body read, no auth, no parse):
   * 503 MCP_OVERLOADED with Retry-After in the shape of the API it was sent to. The connection stays
   * open unless a body larger than a small one is on its way (Node would read it to reuse the connection).
   */
  function refuseOverloaded(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    const reason = guard.tryAdmit();
    if (reason === undefined) return false;
    let entry = 'other';
    let body: unknown;
    if (path === '/graphql') {
      entry = 'graphql';
      body = { errors: [{ message: guard.error.message, extensions: { code: guard.error.code } }] };
    } else {
      const adapter = mounted.find((a) => path.startsWith(a.prefix));
      if (adapter) entry = ENTRY_OF_PREFIX[adapter.prefix] ?? 'other';
      body = (adapter?.errorBody ?? defaultErrorBody)(guard.error);
    }
    guard.rejected(reason, entry);
    const headers = errorHeaders(guard.error);
    if (Number(req.headers['content-length'] ?? 0) > 64 * 1024 || req.headers['transfer-encoding']) headers.connection = 'close';
    sendJson(res, guard.error.status, body, headers);
    return true;
  }

  const server = createServer(serverOptions(services.config.server), (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const exempt = path === '/healthz' || path === '/readyz' || path === '/metrics';
    const admitted = !exempt && !draining;
    if (admitted && refuseOverloaded(req, res, path)) return;
    // In flight until the response is closed *and* its handler has finished: a client that hangs
    // up closes the response while resolvers may still be using storage, which shutdown closes next.
    inflight++;
    let open = 2;
    const settled = () => {
      if (--open > 0) return;
      inflight--;
      if (admitted) guard.release();
      if (inflight === 0 && onIdle) onIdle();
    };
    res.once('close', settled);
    dispatch(req, res)
      .catch((err) => {
        const e = reportError(err, services.logger, services.storage);
        if (!res.headersSent) sendJson(res, e.status, defaultErrorBody(e));
        else res.destroy();
      })
      .finally(settled);
  });
  server.maxHeadersCount = services.config.server.maxHeadersCount;
  capSocketsPerIp(server, services.config.server.maxSocketsPerIp);
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy(err);
    const status =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? '408 Request Timeout'
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? '431 Request Header Fields Too Large'
          : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });

  return {
    server,
    async shutdown(graceMs) {
      draining = true;
      guard.close();
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      if (inflight > 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, graceMs);
          t.unref();
          onIdle = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
      server.closeAllConnections();
      await closed;
    },
  };
}
