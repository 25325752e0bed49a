import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import { createYoga, type GraphiQLOptions, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { Counter } from 'prom-client';
import { unauthenticated } from '../auth/auth-service.ts';
import { useAuditLog } from '../audit/graphql-plugin.ts';
import { McpError, isMcpError } from '../errors.ts';
import { authRequestOf, readBody, requestIdOf, sendGraphQLError } from '../http/common.ts';
import { eligible, serve, type GraphQLServerContext } from './json-post.ts';
import type { Services } from '../services.ts';
import type { GraphQLContext } from './context.ts';
import { useCompiledExecution } from './compiled-execution.ts';
import { useBoundedDocuments } from './document-cache.ts';
import { EventStreams, eventStreamEligible, serveEventStream } from './event-stream.ts';
import { snapshotsSkipped, useSharedSubscriptionResults } from './shared-results.ts';
import { useSubscriptionExpiry } from './expiry.ts';
import { useForwardCompatibleInputs } from './forward-compatible-inputs.ts';
import { useGraphQLLimits } from './limits.ts';
import { buildSchema } from './schema.ts';
import { attachGraphQLWebSocket, headersFromConnectionParams } from './websocket.ts';

/** Converts our errors to GraphQL errors with `extensions.code`; masks everything else (logged with the request id). */
function maskError(services: Services) {
  return (error: unknown): Error => {
    let original: unknown = error;
    while (original instanceof GraphQLError && original.originalError) original = original.originalError;
    if (original instanceof GraphQLError) {
      // Parse/validation errors and argument coercion: client errors.
      return new GraphQLError(original.message, {
        nodes: original.nodes,
        positions: original.positions,
        path: original.path,
        extensions: { ...original.extensions, code: (original.extensions?.code as string) ?? 'MCP_BAD_REQUEST' },
      });
    }
    // The same classification as the HTTP error path: a storage failure is MCP_STORAGE_UNAVAILABLE (logged once per outage).
    const e = services.storage.classify(original);
    if (e.code === 'MCP_INTERNAL' && !isMcpError(original)) {
      services.logger.error({ err: original }, 'unexpected GraphQL error');
      return new GraphQLError('Unexpected error.', {
        path: error instanceof GraphQLError ? error.path : undefined,
        extensions: { code: 'MCP_INTERNAL' },
      });
    }
    return new GraphQLError(e.message, {
      path: error instanceof GraphQLError ? error.path : undefined,
      extensions: { code: e.code, ...(e.details ? { details: e.details } : {}), http: { status: e.status } },
    });
  };
}

/**
 * Parse, validation and request errors carry MCP_BAD_REQUEST like every other client error
 * (GraphQL's or Yoga's own code kept as `graphqlCode`).
 */
function useCodedValidationErrors(): Plugin {
  const recode = (e: GraphQLError, graphqlCode: string) =>
    new GraphQLError(e.message, {
      nodes: e.nodes,
      source: e.source,
      positions: e.positions,
      path: e.path,
      extensions: {
        ...e.extensions,
        code: 'MCP_BAD_REQUEST',
        graphqlCode: (e.extensions?.graphqlCode as string | undefined) ?? graphqlCode,
        http: { status: 400 },
      },
    });
  /** Yoga's HTTP-level errors (invalid JSON, batches, bad parameters): code BAD_REQUEST, sometimes the parser's error attached. */
  const recodeRequestError = (e: unknown): unknown => {
    if (!(e instanceof GraphQLError)) return e;
    const given = e.extensions?.http as { status?: number; spec?: boolean } | undefined;
    if (e.extensions?.code === 'MCP_BAD_REQUEST' && given?.spec) {
      // Yoga marks parse errors `spec` (an application/json answer would then say 200): ours are 400 whatever the Accept.
      return new GraphQLError(e.message, {
        nodes: e.nodes,
        source: e.source,
        positions: e.positions,
        path: e.path,
        extensions: { ...e.extensions, http: { status: given.status ?? 400 } },
      });
    }
    if (e.extensions?.code !== 'BAD_REQUEST') return e;
    const { originalError: _dropped, http, ...extensions } = e.extensions as Record<string, unknown> & { http?: { status?: number } };
    // Yoga answers these 400 (its `http.spec` flag would let an application/json answer say 200).
    return new GraphQLError(e.message, {
      extensions: { ...extensions, code: 'MCP_BAD_REQUEST', graphqlCode: 'BAD_REQUEST', http: { status: http?.status ?? 400 } },
    });
  };
  return {
    onResultProcess: ({ result, setResult }) => {
      if (Array.isArray(result) || !('errors' in result) || !result.errors?.length) return;
      setResult({ ...result, errors: result.errors.map(recodeRequestError) as GraphQLError[] });
    },
    onValidate:
      () =>
      ({ result, setResult }) => {
        if (result.length) setResult(result.map((e) => recode(e, 'GRAPHQL_VALIDATION_FAILED')));
      },
    onParse:
      () =>
      ({ result, replaceParseResult }) => {
        if (result instanceof Error) replaceParseResult(recode(result as GraphQLError, 'GRAPHQL_PARSE_FAILED'));
      },
  };
}

/** Whether a POST body is JSON (the only kind /graphql takes: no forms, multipart or text/plain, which browsers send cross-site without a preflight). */
export function isJsonMediaType(type: string | undefined): boolean {
  return type !== undefined && /^application\/(json|graphql-response\+json)\s*(;|$)/i.test(type);
}

/**
 * CSRF prevention (as Yoga's useCSRFPrevention): an operation that does not come as a JSON POST
 * (a GET) must carry one of `headers`, which a browser adds to a cross-site request only after
 * a CORS preflight. Runs after GraphiQL's page (a GET for text/html) is served.
 */
function useCsrfPrevention(headers: readonly string[]): Plugin {
  return {
    onRequestParse({ request }) {
      if (request.method === 'POST' && isJsonMediaType(request.headers.get('content-type') ?? undefined)) return;
      if (headers.some((h) => request.headers.has(h))) return;
      throw new GraphQLError(`this request needs one of the headers ${headers.join(', ')} (CSRF prevention), or a JSON POST`, {
        extensions: { code: 'MCP_FORBIDDEN', graphqlCode: 'CSRF_HEADER_REQUIRED', http: { status: 403 } },
      });
    },
  };
}

let graphiqlPage: Promise<string> | undefined;

/** GraphiQL with its assets inlined (Yoga's default page loads them from a CDN, which fails offline). */
function renderOfflineGraphiQL(options: GraphiQLOptions): Promise<string> {
  graphiqlPage ??= import('@graphql-yoga/render-graphiql').then((m) => m.renderGraphiQL(options));
  return graphiqlPage;
}

export interface GraphQLServer {
  yoga: YogaServerInstance<GraphQLServerContext, GraphQLContext>;
  /**
   * Serves a /graphql request (its declared size already checked): plain JSON POSTs directly
   * through the envelop pipeline (json-post.ts), shared subscriptions over SSE written directly
   * (event-stream.ts), everything else through Yoga.
   */
  handle(req: IncomingMessage, res: ServerResponse, ctx: GraphQLServerContext): Promise<void>;
  /** Serves graphql-ws on the same server and path; returns a closer. */
  attachWebSocket(server: Server): { close(): Promise<void> };
}

export function createGraphQLServer(services: Services): GraphQLServer {
  const schema = buildSchema();
  const mask = maskError(services);
  const corsEnabled = services.config.server.corsOrigins.length > 0;
  const served = new Counter({
    name: 'mcp_graphql_http_requests_total',
    help: 'GraphQL HTTP requests by the path that answered: direct (plain JSON POSTs through the envelop pipeline), sse (shared subscriptions over SSE written directly) or yoga.',
    labelNames: ['path'],
    registers: [services.metricsRegistry],
  });
  const sharedSse = services.config.server.graphql.sseSharedWrites;
  const streams = new EventStreams(snapshotsSkipped(services.metricsRegistry).labels('sse'));
  const yoga = createYoga<GraphQLServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    graphiql: services.config.server.playground ? { title: 'Capibara MCP', subscriptionsProtocol: 'WS' } : false,
    renderGraphiQL: renderOfflineGraphiQL,
    landingPage: false,
    // Checked by the HTTP server from Content-Length (see createGatewayHttpServer).
    maxRequestBodySize: false,
    cors: services.config.server.corsOrigins.length ? { origin: services.config.server.corsOrigins, credentials: true } : false,
    logging: false,
    maskedErrors: { maskError: mask },
    // Replaced by useBoundedDocuments: Yoga's cache is bounded by entry count, not bytes.
    parserAndValidationCache: false,
    plugins: [
      useBoundedDocuments(services.config.server.graphql),
      useGraphQLLimits(services.config.server.graphql, services.config.security.mode === 'strict'),
      useCsrfPrevention(services.config.server.graphql.csrfHeaders),
      useSubscriptionExpiry(),
      useSharedSubscriptionResults(mask),
      useCodedValidationErrors(),
      // Before the compiled executor: it checks and coerces the variables this one prunes.
      useForwardCompatibleInputs(),
      // Before the plugins that wrap execution (the audit log): they wrap whichever executor is set when they run.
      ...(services.config.server.graphql.jit ? [useCompiledExecution()] : []),
      useAuditLog(services.audit, services.config.audit.skipMutations),
    ],
    context: async ({ req, requestId: givenId, logger, connectionParams, signal }) => {
      const headers = { ...(req.headers as Record<string, string | undefined>), ...headersFromConnectionParams(connectionParams) };
      const requestId = givenId ?? requestIdOf(req);
      const request = { ...authRequestOf(req, connectionParams ? 'websocket' : 'graphql'), headers };
      // With tracing on, when authentication ran (epoch ms): the inference fields' traces get it as their auth span.
      const authStart = services.tracing ? performance.timeOrigin + performance.now() : 0;
      const principal = await services.auth.authenticate(request);
      return {
        ...(services.tracing ? { authSpan: [authStart, performance.timeOrigin + performance.now()] as const } : {}),
        requestId,
        logger: logger ?? services.logger.child({ reqId: requestId }),
        principal,
        services,
        headers,
        ip: request.ip,
        signal: signal ?? new AbortController().signal,
        unauthorized: () =>
          principal ? new McpError('MCP_FORBIDDEN', 'the credential lacks the permission (or the model) this field needs') : unauthenticated(),
      };
    },
  });

  return {
    yoga,
    async handle(req, res, ctx) {
      if (req.method === 'POST' && !isJsonMediaType(req.headers['content-type'])) {
        // Refused before reading or running anything: a form or text/plain POST is what a foreign page can send without a preflight.
        return sendGraphQLError(res, new McpError('MCP_BAD_REQUEST', 'POST /graphql takes a JSON body (content-type: application/json)', { status: 415 }));
      }
      const sse = sharedSse && eventStreamEligible(req, corsEnabled);
      if (!sse && !eligible(req, corsEnabled)) {
        served.inc({ path: 'yoga' });
        return yoga(req, res, ctx);
      }
      let raw: Buffer;
      try {
        raw = await readBody(req, services.config.server.maxBodyBytes);
      } catch (err) {
        // A body over the limit (whatever Content-Length said) or cut off: a GraphQL-shaped error.
        const e = err instanceof McpError ? err : new McpError('MCP_BAD_REQUEST', 'could not read the body');
        return sendGraphQLError(res, e);
      }
      // An event stream is counted when it starts (it may last hours).
      if (sse) return serveEventStream(yoga, mask, streams, raw, res, ctx, (path) => served.inc({ path }));
      served.inc({ path: await serve(yoga, mask, raw, res, ctx) });
    },
    attachWebSocket(server) {
      return attachGraphQLWebSocket(server, yoga, services, mask);
    },
  };
}
