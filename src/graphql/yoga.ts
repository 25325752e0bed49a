import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import { createYoga, type GraphiQLOptions, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { Counter } from 'prom-client';
import { useAuditLog } from '../audit/graphql-plugin.ts';
import { McpError, isMcpError } from '../errors.ts';
import { authRequestOf, readBody, requestIdOf, sendGraphQLError } from '../http/common.ts';
import { eligible, serve, type GraphQLServerContext } from './json-post.ts';
import type { Services } from '../services.ts';
import type { GraphQLContext } from './context.ts';
import { buildSchema } from './schema.ts';

/** Converts our errors to GraphQL errors with `extensions.code`; masks everything else (logged with the request id). */
function maskError(services: Services) {
  return (error: unknown): Error => {
    let original: unknown = error;
    while (original instanceof GraphQLError && original.originalError) original = original.originalError;
    if (isMcpError(original)) {
      return new GraphQLError(original.message, {
        path: error instanceof GraphQLError ? error.path : undefined,
        extensions: { code: original.code, ...(original.details ? { details: original.details } : {}), http: { status: original.status } },
      });
    }
    if (original instanceof GraphQLError) {
      // Parse/validation errors and argument coercion: client errors.
      return new GraphQLError(original.message, {
        nodes: original.nodes,
        positions: original.positions,
        path: original.path,
        extensions: { ...original.extensions, code: (original.extensions?.code as string) ?? 'MCP_BAD_REQUEST' },
      });
    }
    services.logger.error({ err: original }, 'unexpected GraphQL error');
    return new GraphQLError('Unexpected error.', {
      path: error instanceof GraphQLError ? error.path : undefined,
      extensions: { code: 'MCP_INTERNAL' },
    });
  };
}

function headersFromConnectionParams(params: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(params ?? {})) if (typeof v === 'string') out[k.toLowerCase()] = v;
  return out;
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
      extensions: { ...e.extensions, code: 'MCP_BAD_REQUEST', graphqlCode, http: { status: 400 } },
    });
  /** Yoga's HTTP-level errors (invalid JSON, batches, bad parameters): code BAD_REQUEST, sometimes the parser's error attached. */
  const recodeRequestError = (e: unknown): unknown => {
    if (!(e instanceof GraphQLError) || e.extensions?.code !== 'BAD_REQUEST') return e;
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
   * through the envelop pipeline (json-post.ts), everything else through Yoga.
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
    help: 'GraphQL HTTP requests by the path that answered: direct (plain JSON POSTs through the envelop pipeline) or yoga.',
    labelNames: ['path'],
    registers: [services.metricsRegistry],
  });
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
    plugins: [useCodedValidationErrors(), useAuditLog(services.audit, services.config.audit.skipMutations)],
    context: async ({ req, requestId: givenId, logger, connectionParams, signal }) => {
      const headers = { ...(req.headers as Record<string, string | undefined>), ...headersFromConnectionParams(connectionParams) };
      const requestId = givenId ?? requestIdOf(req);
      const principal = await services.auth.authenticate({ ...authRequestOf(req, connectionParams ? 'websocket' : 'graphql'), headers });
      return {
        requestId,
        ip: req.socket?.remoteAddress,
        logger: logger ?? services.logger.child({ reqId: requestId }),
        principal,
        services,
        headers,
        signal: signal ?? new AbortController().signal,
        unauthorized: () =>
          principal
            ? new McpError('MCP_FORBIDDEN', 'this operation needs a role the principal does not have')
            : new McpError('MCP_UNAUTHENTICATED', 'send an API key or token: Authorization: Bearer …'),
      };
    },
  });

  return {
    yoga,
    async handle(req, res, ctx) {
      if (!eligible(req, corsEnabled)) {
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
      served.inc({ path: await serve(yoga, mask, raw, res, ctx) });
    },
    attachWebSocket(server) {
      const wss = new WebSocketServer({ server, path: '/graphql', maxPayload: 1024 * 1024 });
      const disposable = useServer<Record<string, unknown>, { request: IncomingMessage }>(
        {
          connectionInitWaitTimeout: 3000,
          execute: (args) => (args.rootValue as { execute(a: ExecutionArgs): unknown }).execute(args) as never,
          subscribe: (args) => (args.rootValue as { subscribe(a: ExecutionArgs): unknown }).subscribe(args) as never,
          onSubscribe: async (ctx, _id, params) => {
            const ctl = new AbortController();
            const {
              schema: s,
              execute,
              subscribe,
              contextFactory,
              parse,
              validate,
            } = yoga.getEnveloped({
              req: ctx.extra.request,
              connectionParams: ctx.connectionParams,
              signal: ctl.signal,
            });
            const args: ExecutionArgs = {
              schema: s,
              operationName: params.operationName,
              document: parse(params.query),
              variableValues: params.variables,
              contextValue: await contextFactory(),
              rootValue: { execute, subscribe },
            };
            const errors = validate(args.schema, args.document);
            if (errors.length) return errors;
            return args;
          },
        },
        wss,
      );
      return {
        close: async () => {
          for (const c of wss.clients) c.terminate();
          await disposable.dispose();
          await new Promise<void>((r) => wss.close(() => r()));
        },
      };
    },
  };
}
