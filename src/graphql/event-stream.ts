/**
 * GraphQL over SSE (`POST /graphql`, `accept: text/event-stream`, the "distinct connections" mode
 * Yoga serves) for shared subscriptions (`metricsUpdates`, ./shared-results.ts), written straight
 * to the response: each snapshot is executed and serialised once per feed, its `next` frame
 * encoded once, and the same bytes written to every subscriber's response within the tick (no
 * result object, JSON.stringify, web stream or promise per subscriber).
 *
 * The request runs through the envelop pipeline Yoga builds (./json-post.ts does the same for
 * queries): the same parse cache, limits, context (authentication), permission check in the
 * field's subscribe, expiry (./expiry.ts: the last frame is the MCP_UNAUTHENTICATED error, then
 * `complete`), audit log and error masking. Anything else — another operation, a body that does
 * not parse or validate, CORS — is answered by Yoga, streamed back as it comes.
 *
 * A slow reader skips snapshots, it never queues them: while its response has not drained the
 * previous write (Node's `writableNeedDrain`, past the 16 KiB high-water mark), a snapshot is
 * not written to it and is counted in mcp_metrics_snapshots_skipped_total{transport="sse"}. So a
 * stalled client holds at most that buffer plus one frame, whose bytes are shared with the others.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ExecutionResult, GraphQLError } from 'graphql';
import { getSSEProcessor, type YogaServerInstance } from 'graphql-yoga';
import type { Counter } from 'prom-client';
import type { GraphQLContext, SharedPayload } from './context.ts';
import { answerByYoga, bodyParams, validDocument, type GraphQLServerContext } from './json-post.ts';
import { isSharedSubscription, serialiseResult } from './shared-results.ts';

type Yoga = YogaServerInstance<GraphQLServerContext, GraphQLContext>;

/** A comment line: sent first (some clients wait for a byte before handing the stream over) and as a keep-alive. */
const PING = Buffer.from(':\n\n');
const COMPLETE = Buffer.from('event: complete\ndata:\n\n');
/** Keep-alive interval (Yoga's). */
export const SSE_PING_MS = 12_000;

const HEADERS = { 'content-type': 'text/event-stream', connection: 'keep-alive', 'cache-control': 'no-cache', 'content-encoding': 'none' };

/** Whether the headers allow this path: a JSON POST asking for an event stream only, no CORS. */
export function eventStreamEligible(req: IncomingMessage, corsEnabled: boolean): boolean {
  if (req.method !== 'POST' || corsEnabled || req.headers.origin !== undefined) return false;
  const type = req.headers['content-type'];
  if (!type || !/^application\/json\s*(;|$)/i.test(type)) return false;
  return /^text\/event-stream\s*$/i.test(req.headers.accept ?? '');
}

export function nextFrame(payload: SharedPayload): Buffer {
  return (payload.sseFrame ??= Buffer.from(`event: next\ndata: ${payload.json}\n\n`));
}

/** The open event streams of this path: one keep-alive timer for all of them, and the skip counter. */
export class EventStreams {
  private readonly open = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly skipped: Counter.Internal,
    private readonly pingMs = SSE_PING_MS,
  ) {}

  get size(): number {
    return this.open.size;
  }

  add(res: ServerResponse): void {
    this.open.add(res);
    if (this.timer) return;
    this.timer = setInterval(() => {
      // A response still holding unsent bytes needs no keep-alive.
      for (const r of this.open) if (!r.writableNeedDrain) r.write(PING);
    }, this.pingMs);
    this.timer.unref();
  }

  delete(res: ServerResponse): void {
    this.open.delete(res);
    if (this.open.size || !this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Writes one shared payload's frame to `res`, or skips it (counted) while `res` has not drained. */
  writer(res: ServerResponse): (payload: SharedPayload) => void {
    return (payload) => {
      if (!res.headersSent || res.writableEnded || res.destroyed) return;
      if (res.writableNeedDrain) return void this.skipped.inc();
      res.write(nextFrame(payload));
    };
  }
}

/** Resolves when `res` drained or closed. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Streams a web Response to `res` (Yoga's answers): its status and headers, then its body as it comes. */
async function pipe(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => {
    headers[k] = v;
  });
  res.writeHead(response.status, headers);
  if (!response.body) return void res.end();
  const reader = response.body.getReader();
  const cancel = () => void reader.cancel().catch(() => undefined);
  res.once('close', cancel);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || res.destroyed) break;
      if (!res.write(value)) await drained(res);
    }
  } catch {
    // The stream failed or was cancelled: end what was sent.
  } finally {
    res.off('close', cancel);
    res.end();
  }
}

/**
 * Serves one eligible request whose body has been read (`raw`); resolves when the answer ends.
 * `mask` is Yoga's maskedErrors function. `answeredBy` is told at once which path answers:
 * `sse` (this one) or `yoga`.
 */
export async function serveEventStream(
  yoga: Yoga,
  mask: (error: unknown) => Error,
  streams: EventStreams,
  raw: Buffer,
  res: ServerResponse,
  ctx: GraphQLServerContext,
  answeredBy: (path: 'sse' | 'yoga') => void,
): Promise<void> {
  const { text, params } = bodyParams(raw);
  const enveloped = params ? yoga.getEnveloped(ctx) : undefined;
  const document = params && enveloped ? validDocument(enveloped, params, isSharedSubscription) : undefined;
  if (!params || !enveloped || !document) {
    answeredBy('yoga');
    return pipe(res, await answerByYoga(yoga, ctx, text));
  }
  answeredBy('sse');
  let result: ExecutionResult | AsyncIterable<ExecutionResult>;
  try {
    const contextValue = await enveloped.contextFactory();
    (contextValue as GraphQLContext).writeNext = streams.writer(res);
    result = (await enveloped.subscribe({
      schema: enveloped.schema,
      document,
      variableValues: params.variables,
      operationName: params.operationName,
      contextValue,
    })) as ExecutionResult | AsyncIterable<ExecutionResult>;
  } catch (err) {
    result = { errors: [mask(err) as GraphQLError] };
  }
  if (!(Symbol.asyncIterator in result)) {
    // Refused (authentication, permission, arguments): Yoga's answer for it (status from the error, one event, complete).
    return pipe(res, await getSSEProcessor()(result, yoga.fetchAPI, 'text/event-stream'));
  }
  const it = result[Symbol.asyncIterator]();
  if (res.destroyed) return void (await it.return?.());
  const stop = () => void Promise.resolve(it.return?.()).catch(() => undefined);
  res.once('close', stop);
  res.writeHead(200, HEADERS);
  res.write(PING);
  streams.add(res);
  try {
    // Shared snapshots go through the writer; what the stream itself yields (the expiry error) is written here.
    for (;;) {
      const r = await it.next();
      if (r.done || res.destroyed) break;
      res.write(`event: next\ndata: ${serialiseResult(r.value, mask)}\n\n`);
    }
  } catch (err) {
    if (!res.destroyed) res.write(`event: next\ndata: ${serialiseResult({ errors: [mask(err) as GraphQLError] }, mask)}\n\n`);
  } finally {
    streams.delete(res);
    res.off('close', stop);
    if (!res.destroyed) res.end(COMPLETE);
  }
}
