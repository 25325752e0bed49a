/**
 * Plain JSON POSTs to /graphql (a query or mutation, answered as JSON) served straight through
 * the envelop pipeline Yoga builds: the same schema, plugins, context, error masking, parser and
 * validation caches, and Yoga's own result processor for status, headers and body. What it
 * skips is Yoga's Fetch-API layer (a web Request and Response around every call): about a
 * quarter of the CPU of a small request (317 vs 416 µs, `bench/overhead.ts --only=a,c,g`). Everything else (GET,
 * GraphiQL, SSE and multipart answers, subscriptions, CORS, batches, unusual parameters, bodies
 * that are not JSON) goes to Yoga: `eligible` decides from the headers alone, and `serve`
 * hands a request whose body it cannot run to Yoga's fetch entry with the body it read.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { getOperationAST, type DocumentNode, type OperationDefinitionNode, type ExecutionResult, type GraphQLError } from 'graphql';
import { processRegularResult, type YogaServerInstance } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { GraphQLContext } from './context.ts';

/** What the HTTP server (and graphql-ws) passes to Yoga as its server context. */
export interface GraphQLServerContext {
  req: IncomingMessage;
  /** Set by the HTTP server (the same id as its access log and x-request-id). */
  requestId?: string;
  /** The request's logger, from the HTTP server. */
  logger?: Logger;
  /** Set for graphql-ws operations. */
  connectionParams?: Record<string, unknown>;
  /** Aborts when the client goes away. */
  signal?: AbortSignal;
}

type Yoga = YogaServerInstance<GraphQLServerContext, GraphQLContext>;

/** The JSON media type the answer gets (Yoga's choice for the same Accept), or undefined: not ours. */
function acceptedJson(accept: string | undefined): 'application/json' | 'application/graphql-response+json' | undefined {
  if (accept === undefined || accept === '' || accept === '*/*') return 'application/json';
  const type = accept.split(';', 1)[0]!.trim().toLowerCase();
  if (type === 'application/json' && !accept.includes(',')) return 'application/json';
  if (type === 'application/graphql-response+json' && !accept.includes(',')) return 'application/graphql-response+json';
  return undefined;
}

/** Whether the headers allow the direct path: a JSON POST that wants a JSON answer. */
export function eligible(req: IncomingMessage, corsEnabled: boolean): boolean {
  if (req.method !== 'POST' || corsEnabled || req.headers.origin !== undefined) return false;
  const type = req.headers['content-type'];
  if (!type || !/^application\/json\s*(;|$)/i.test(type)) return false;
  return acceptedJson(req.headers.accept) !== undefined;
}

export interface Params {
  query: string;
  variables?: Record<string, unknown>;
  operationName?: string;
}

/** The body as GraphQL-over-HTTP parameters we can run directly, or undefined (Yoga decides). */
export function paramsOf(body: unknown): Params | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (k !== 'query' && k !== 'variables' && k !== 'operationName' && k !== 'extensions') return undefined;
  if (typeof b.query !== 'string') return undefined;
  if (b.variables != null && (typeof b.variables !== 'object' || Array.isArray(b.variables))) return undefined;
  if (b.operationName != null && typeof b.operationName !== 'string') return undefined;
  if (b.extensions != null && (typeof b.extensions !== 'object' || Array.isArray(b.extensions))) return undefined;
  return {
    query: b.query,
    variables: (b.variables ?? undefined) as Record<string, unknown> | undefined,
    operationName: (b.operationName ?? undefined) as string | undefined,
  };
}

/** A JSON POST body as its text and, when we can run it directly, its parameters. */
export function bodyParams(raw: Buffer): { text: string; params: Params | undefined } {
  const text = raw.toString('utf8');
  try {
    return { text, params: paramsOf(JSON.parse(text)) };
  } catch {
    return { text, params: undefined };
  }
}

/** Yoga's own answer to a POST whose body was already read (`text`), for what the direct paths leave to it. */
export function answerByYoga(yoga: Yoga, ctx: GraphQLServerContext, text: string): Promise<Response> {
  const url = `http://${ctx.req.headers.host ?? 'localhost'}${ctx.req.url ?? '/graphql'}`;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(ctx.req.headers)) if (typeof v === 'string') headers[k] = v;
  return Promise.resolve(yoga.fetch(url, { method: 'POST', headers, body: text }, ctx));
}

/**
 * The parsed document when it is valid for these parameters and its operation is one `wanted`
 * takes; undefined for a syntax or validation error, an unknown operation or one not wanted (Yoga
 * answers those). Parse and validation go through the envelop pipeline (its caches and limits).
 */
export function validDocument(
  enveloped: ReturnType<Yoga['getEnveloped']>,
  params: Params,
  wanted: (op: OperationDefinitionNode | null | undefined) => boolean,
): DocumentNode | undefined {
  let document: DocumentNode;
  try {
    document = enveloped.parse(params.query) as DocumentNode;
  } catch {
    return undefined;
  }
  if (enveloped.validate(enveloped.schema, document).length) return undefined;
  return wanted(getOperationAST(document, params.operationName)) ? document : undefined;
}

/** A query or mutation (subscriptions are Yoga's, or the event-stream path's). */
const queryOrMutation = (op: OperationDefinitionNode | null | undefined) => op != null && op.operation !== 'subscription';

async function send(res: ServerResponse, response: Response): Promise<void> {
  const body = await response.text();
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => {
    headers[k] = v;
  });
  headers['content-length'] = String(Buffer.byteLength(body));
  res.writeHead(response.status, headers);
  res.end(body);
}

/**
 * Serves one eligible request whose body has been read (`raw`, at most the body limit).
 * `mask` is Yoga's maskedErrors function: an error thrown while building the context or
 * executing becomes the same GraphQL error Yoga would answer. Says which path answered.
 */
export async function serve(
  yoga: Yoga,
  mask: (error: unknown) => Error,
  raw: Buffer,
  res: ServerResponse,
  ctx: GraphQLServerContext,
): Promise<'direct' | 'yoga'> {
  const { text, params } = bodyParams(raw);
  const enveloped = params ? yoga.getEnveloped(ctx) : undefined;
  const document = params && enveloped ? validDocument(enveloped, params, queryOrMutation) : undefined;
  if (!params || !enveloped || !document) {
    // Not a plain query/mutation we can run: Yoga answers, with the body it would have read.
    await send(res, await answerByYoga(yoga, ctx, text));
    return 'yoga';
  }
  let result: ExecutionResult;
  try {
    result = (await enveloped.execute({
      schema: enveloped.schema,
      document,
      variableValues: params.variables,
      operationName: params.operationName,
      contextValue: await enveloped.contextFactory(),
    })) as ExecutionResult;
  } catch (err) {
    result = { errors: [mask(err) as GraphQLError] };
  }
  await send(res, await processRegularResult(result, yoga.fetchAPI, acceptedJson(ctx.req.headers.accept)!));
  return 'direct';
}
