/**
 * GraphQL over WebSocket (graphql-ws on /graphql), through the same envelop pipeline as HTTP (the
 * same limits, parse cache and error masking), hardened:
 * - the handshake is refused (403) for an Origin that is neither the server's own nor in
 *   `server.corsOrigins` (clients that send no Origin, i.e. not browsers, are let through), and
 *   (429) past `server.websocket.maxSocketsPerIp` sockets from one address;
 * - credentials are checked at `connection_init` with services.auth, like the HTTP path: missing,
 *   invalid or expired credentials close the socket with 4401; past `maxSocketsPerPrincipal` 4429;
 * - each socket runs at most `maxSubscriptionsPerSocket` subscriptions and `maxOperationsInFlight`
 *   queries/mutations at once (one more is answered with an error, MCP_RATE_LIMITED);
 * - when the principal's `expiresAt` passes, its subscriptions end with an MCP_UNAUTHENTICATED error
 *   (./expiry.ts, for SSE too) and the socket is closed (4401);
 * - shared subscriptions (`metricsUpdates`, see ./shared-results.ts) get `writeNext` in their
 *   context: their pre-serialised payloads are written as `next` messages straight to the socket,
 *   the writes of one tick corked into one syscall per socket; a socket with more than
 *   SLOW_READER_BYTES unsent skips snapshots instead of queueing them (counted in
 *   mcp_metrics_snapshots_skipped_total{transport="websocket"}).
 */
import { recordDenial } from '../audit/denials.ts';
import type { IncomingMessage, Server } from 'node:http';
import { GraphQLError, getOperationAST, type DocumentNode, type ExecutionArgs } from 'graphql';
import type { Context } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import type { YogaServerInstance } from 'graphql-yoga';
import { WebSocket, WebSocketServer } from 'ws';
import { McpError, isMcpError } from '../errors.ts';
import type { Principal } from '../inference/types.ts';
import type { Services } from '../services.ts';
import type { GraphQLContext, SharedPayload } from './context.ts';
import { expiredError } from './expiry.ts';
import type { GraphQLServerContext } from './json-post.ts';
import { snapshotsSkipped } from './shared-results.ts';

/** Close codes (graphql-ws uses 4400–4499 for protocol refusals). */
export const WS_CLOSE = { unauthenticated: 4401, forbidden: 4403, tooManySockets: 4429 } as const;

/** Unsent bytes past which a socket skips shared snapshots (a slow reader skips, never queues). */
export const SLOW_READER_BYTES = 1024 * 1024;

/** Grace between ending the subscriptions of an expired principal and closing its socket, ms. */
const EXPIRY_CLOSE_GRACE_MS = 100;

type Extra = { socket: WebSocket; request: IncomingMessage };
type WsContext = Context<Record<string, unknown>, Extra>;

/** Per socket: who it is, and what it runs. */
interface SocketState {
  principal: Principal;
  /** Ids of open subscriptions, and of queries/mutations executing. */
  subscriptions: Set<string>;
  operations: Set<string>;
  /** Aborts an operation when it completes or the socket closes (reaches resolvers as ctx.signal). */
  aborts: Map<string, AbortController>;
  /** Set when the principal's credentials expired (the socket is then closed). */
  isExpired: boolean;
  timer?: NodeJS.Timeout;
  /** The TCP socket is corked until the next tick (shared writes of one tick go out together). */
  corked: boolean;
}

export function headersFromConnectionParams(params: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(params ?? {})) if (typeof v === 'string') out[k.toLowerCase()] = v;
  return out;
}

/** Same origin (the Origin's host is the Host the browser connected to) or listed in server.corsOrigins. */
export function originAllowed(origin: string | undefined, host: string | undefined, allowed: readonly string[]): boolean {
  if (origin === undefined) return true;
  if (allowed.includes('*') || allowed.includes(origin)) return true;
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}

function graphqlError(e: McpError): GraphQLError {
  return new GraphQLError(e.message, { extensions: { code: e.code, ...(e.details ? { details: e.details } : {}), http: { status: e.status } } });
}

/** Serves graphql-ws on the server's /graphql; returns a closer. */
export function attachGraphQLWebSocket(
  server: Server,
  yoga: YogaServerInstance<GraphQLServerContext, GraphQLContext>,
  services: Services,
  mask: (error: unknown) => Error,
): { close(): Promise<void> } {
  const limits = services.config.server.websocket;
  const corsOrigins = services.config.server.corsOrigins;
  const perIp = new Map<string, number>();
  const perPrincipal = new Map<string, number>();
  const states = new WeakMap<WsContext, SocketState>();
  const dec = (m: Map<string, number>, k: string) => {
    const n = (m.get(k) ?? 1) - 1;
    if (n <= 0) m.delete(k);
    else m.set(k, n);
  };

  const wss = new WebSocketServer({
    server,
    path: '/graphql',
    maxPayload: limits.maxMessageBytes,
    verifyClient: (info, accept) => {
      if (!originAllowed(info.req.headers.origin, info.req.headers.host, corsOrigins)) return accept(false, 403, 'origin not allowed');
      const ip = info.req.socket.remoteAddress ?? '';
      if ((perIp.get(ip) ?? 0) >= limits.maxSocketsPerIp) return accept(false, 429, 'too many WebSocket connections from this address');
      accept(true);
    },
  });
  wss.on('connection', (socket, req) => {
    const ip = req.socket.remoteAddress ?? '';
    perIp.set(ip, (perIp.get(ip) ?? 0) + 1);
    socket.once('close', () => dec(perIp, ip));
  });

  const refuse = (ctx: WsContext, code: number, reason: string): false => {
    ctx.extra.socket.close(code, reason);
    return false;
  };

  const disposable = useServer<Record<string, unknown>, Extra>(
    {
      connectionInitWaitTimeout: limits.connectionInitWaitTimeoutMs,
      execute: (args) => (args.rootValue as { execute(a: ExecutionArgs): unknown }).execute(args) as never,
      subscribe: (args) => (args.rootValue as { subscribe(a: ExecutionArgs): unknown }).subscribe(args) as never,
      onConnect: async (ctx) => {
        const req = ctx.extra.request;
        const headers = { ...(req.headers as Record<string, string | undefined>), ...headersFromConnectionParams(ctx.connectionParams) };
        let principal: Principal | undefined;
        const ip = req.socket.remoteAddress;
        const denied = (code: 'MCP_UNAUTHENTICATED' | 'MCP_FORBIDDEN', who?: Principal) =>
          recordDenial(services.audit, { principal: who, ip, entry: 'websocket', target: 'websocket:connection_init', code });
        try {
          principal = await services.auth.authenticate({ headers, ip, entry: 'websocket' });
        } catch (err) {
          if (isMcpError(err) && err.code === 'MCP_RATE_LIMITED') return refuse(ctx, WS_CLOSE.tooManySockets, 'Too many requests');
          if (isMcpError(err) && err.status === 403) {
            denied('MCP_FORBIDDEN');
            return refuse(ctx, WS_CLOSE.forbidden, 'Forbidden');
          }
          if (!isMcpError(err) || err.status >= 500) services.logger.warn({ err }, 'WebSocket authentication failed');
          denied('MCP_UNAUTHENTICATED');
          return refuse(ctx, WS_CLOSE.unauthenticated, 'Unauthorized');
        }
        if (!principal || (principal.expiresAt !== undefined && principal.expiresAt <= Date.now())) {
          denied('MCP_UNAUTHENTICATED', principal);
          return refuse(ctx, WS_CLOSE.unauthenticated, 'Unauthorized');
        }
        if (ctx.extra.socket.readyState !== WebSocket.OPEN) return false;
        if ((perPrincipal.get(principal.id) ?? 0) >= limits.maxSocketsPerPrincipal) {
          return refuse(ctx, WS_CLOSE.tooManySockets, 'Too many connections for this principal');
        }
        perPrincipal.set(principal.id, (perPrincipal.get(principal.id) ?? 0) + 1);
        const state: SocketState = { principal, subscriptions: new Set(), operations: new Set(), aborts: new Map(), isExpired: false, corked: false };
        if (principal.expiresAt !== undefined) {
          // setTimeout holds at most 2^31-1 ms (~24.8 days); a later expiry is re-armed then.
          const arm = () => {
            const left = principal.expiresAt! - Date.now();
            state.timer = setTimeout(
              () => {
                if (principal.expiresAt! > Date.now()) return arm();
                // Its subscriptions end with an error by themselves (useSubscriptionExpiry); then the socket closes.
                state.isExpired = true;
                setTimeout(() => ctx.extra.socket.close(WS_CLOSE.unauthenticated, 'Credentials expired'), EXPIRY_CLOSE_GRACE_MS).unref();
              },
              Math.max(0, Math.min(left, 2 ** 31 - 1)),
            );
            state.timer.unref();
          };
          arm();
        }
        states.set(ctx, state);
        return true;
      },
      onClose: (ctx) => {
        const state = states.get(ctx);
        if (!state) return;
        states.delete(ctx);
        clearTimeout(state.timer);
        dec(perPrincipal, state.principal.id);
        for (const ctl of state.aborts.values()) ctl.abort(new McpError('MCP_CANCELLED', 'the WebSocket closed'));
      },
      onComplete: (ctx, id) => {
        const state = states.get(ctx);
        if (!state) return;
        state.subscriptions.delete(id);
        state.operations.delete(id);
        state.aborts.get(id)?.abort(new McpError('MCP_CANCELLED', 'the operation completed'));
        state.aborts.delete(id);
      },
      onSubscribe: async (ctx, id, params) => {
        const state = states.get(ctx);
        if (!state) return [graphqlError(new McpError('MCP_UNAUTHENTICATED', 'the connection is not authenticated'))];
        if (state.isExpired) return [expiredError()];
        // Operations graphql-ws no longer runs (ended without onComplete) free their slots.
        for (const set of [state.subscriptions, state.operations]) for (const known of set) if (!(known in ctx.subscriptions)) set.delete(known);
        const ctl = new AbortController();
        const enveloped = yoga.getEnveloped({ req: ctx.extra.request, connectionParams: ctx.connectionParams, signal: ctl.signal });
        let document: DocumentNode;
        try {
          document = enveloped.parse(params.query);
        } catch (err) {
          return [err instanceof GraphQLError ? err : (mask(err) as GraphQLError)];
        }
        const errors = enveloped.validate(enveloped.schema, document);
        if (errors.length) return errors as GraphQLError[];
        const op = getOperationAST(document, params.operationName);
        if (!op) return [new GraphQLError('Unable to identify the operation', { extensions: { code: 'MCP_BAD_REQUEST', http: { status: 400 } } })];
        // Reserved before any await: a burst of messages cannot overshoot the caps.
        const subscription = op.operation === 'subscription';
        const set = subscription ? state.subscriptions : state.operations;
        const cap = subscription ? limits.maxSubscriptionsPerSocket : limits.maxOperationsInFlight;
        if (set.size >= cap) {
          const what = subscription ? 'subscriptions open' : 'operations executing';
          return [graphqlError(new McpError('MCP_RATE_LIMITED', `at most ${cap} ${what} per WebSocket`, { details: { limit: cap } }))];
        }
        set.add(id);
        state.aborts.set(id, ctl);
        let contextValue: unknown;
        try {
          contextValue = await enveloped.contextFactory();
        } catch (err) {
          set.delete(id);
          state.aborts.delete(id);
          return [mask(err) as GraphQLError];
        }
        if (subscription && limits.sharedWrites) (contextValue as GraphQLContext).writeNext = nextWriter(ctx, id, state);
        return {
          schema: enveloped.schema,
          operationName: params.operationName,
          document,
          variableValues: params.variables,
          contextValue,
          rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
        } satisfies ExecutionArgs;
      },
    },
    wss,
  );
  const skipped = snapshotsSkipped(services.metricsRegistry).labels('websocket');
  /** Writes `next` messages of subscription `id` whose payload is already JSON. */
  function nextWriter(ctx: WsContext, id: string, state: SocketState): (payload: SharedPayload) => void {
    const socket = ctx.extra.socket;
    const tcp = ctx.extra.request.socket;
    const prefix = `{"id":${JSON.stringify(id)},"type":"next","payload":`;
    const uncork = () => {
      state.corked = false;
      tcp.uncork();
    };
    return (payload) => {
      // Not after the client completed it, nor past an expiry (its error is the last message).
      if (socket.readyState !== WebSocket.OPEN || !(id in ctx.subscriptions) || state.isExpired) return;
      if (socket.bufferedAmount > SLOW_READER_BYTES) return void skipped.inc();
      if (!state.corked) {
        state.corked = true;
        tcp.cork();
        process.nextTick(uncork);
      }
      socket.send(prefix + payload.json + '}');
    };
  }

  return {
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await disposable.dispose();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}
