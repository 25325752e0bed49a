/**
 * The worker wire protocol (server side). The gateway routes requests to worker processes
 * over HTTP; a worker serves its loaded instances here:
 *
 *   POST /worker/v1/instances/{id}/infer   InferenceInput JSON → 200 InferenceOutput JSON
 *   POST /worker/v1/instances/{id}/stream  InferenceInput JSON → 200 application/x-ndjson, one InferenceChunk per line
 *   GET  /worker/v1/instances/{id}/health  → { ok, detail?, runtime, device, tasks, signature? }
 *   GET  /worker/v1/health                 → { ok: true }   (liveness; the only route open without credentials)
 *
 * Every instance route needs `Authorization: Bearer <call token>`, the token the gateway derives for
 * this worker process (src/workers/call-auth.ts); without it, or before the worker learned its token,
 * the answer is 401 MCP_UNAUTHENTICATED and the instance is not touched.
 * The body is validated against the one inference input schema (src/inference/schema.ts), as at
 * every gateway entry point: a refusal is 400 MCP_VALIDATION_FAILED naming the path (`input.…`).
 * Errors: `{ error: { code, message, details?, retryable, mayHaveExecuted } }` with the McpError's status; a
 * failure after a stream started is sent as one last NDJSON line of that shape.
 * Headers: `x-request-id` (echoed; generated when absent), `x-mcp-deadline` (ms since epoch).
 * A client disconnect aborts the instance call's AbortSignal.
 */
import type { Tracing } from '../tracing/tracing.ts';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { McpError, toMcpError } from '../errors.ts';
import { bearerMatches } from './call-auth.ts';
import type { BackendCall, LoadedInstance } from '../plugin/contract.ts';
import { parseInferenceInput } from '../inference/request.ts';
import type { InferenceChunk } from '../inference/types.ts';

export interface WorkerHttpServerOptions {
  instances: { get(id: string): LoadedInstance | undefined };
  logger: Logger;
  /**
   * The gateway's call token for this worker (undefined until known: every instance route is then refused).
   * Read on every request, so a new token applies at once.
   */
  callToken: () => string | undefined;
  /** Largest request body accepted; default 16 MiB. */
  maxBodyBytes?: number;
  /** Budget of an instance health probe; default 10 s. */
  healthTimeoutMs?: number;
  /** With tracing on: a span per infer/stream call, a child of the gateway's attempt (its `traceparent` header). */
  tracing?: Tracing;
}

/** The JSON the health route returns. */
export interface WorkerInstanceHealth {
  ok: boolean;
  detail?: string;
  runtime: string;
  device: string;
  tasks: readonly string[];
  signature?: LoadedInstance['signature'];
}

export const WORKER_PROTOCOL_PREFIX = '/worker/v1';
const INSTANCE_ROUTE = /^\/worker\/v1\/instances\/([^/]+)\/(infer|stream|health)$/;
const RETRYABLE_BY_DEFAULT = new Set(['MCP_INSTANCE_NOT_FOUND', 'MCP_SHUTTING_DOWN', 'MCP_QUEUE_FULL', 'MCP_OVERLOADED', 'MCP_UPSTREAM_UNAVAILABLE']);

interface WorkerErrorBody {
  code: string;
  message: string;
  details?: Record<string, unknown>;
  retryable: boolean;
  mayHaveExecuted: boolean;
}

/** The error body of the worker protocol (also used for a failing stream's last line). */
export function workerErrorBody(err: McpError): { error: WorkerErrorBody } {
  const body: WorkerErrorBody = {
    code: err.code,
    message: err.message,
    retryable: err.retryable || RETRYABLE_BY_DEFAULT.has(err.code),
    mayHaveExecuted: err.mayHaveExecuted,
  };
  if (err.details) body.details = err.details;
  return { error: body };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const buf = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(buf.length) });
  res.end(buf);
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    throw new McpError('MCP_PAYLOAD_TOO_LARGE', `the body is larger than ${limit} bytes`, { details: { limitBytes: limit } });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > limit) throw new McpError('MCP_PAYLOAD_TOO_LARGE', `the body is larger than ${limit} bytes`, { details: { limitBytes: limit } });
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof McpError) throw err;
    throw new McpError('MCP_CANCELLED', 'the client went away while sending the body', { cause: err });
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new McpError('MCP_INVALID_JSON', undefined, { cause: err });
  }
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Writes one chunk, waiting for drain when the socket buffer is full; false when the client went away. */
function writeLine(res: ServerResponse, obj: unknown): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  if (res.write(`${JSON.stringify(obj)}\n`)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

export function createWorkerHttpServer(opts: WorkerHttpServerOptions): Server {
  const { instances, logger } = opts;
  const maxBodyBytes = opts.maxBodyBytes ?? 16 * 1024 * 1024;
  const healthTimeoutMs = opts.healthTimeoutMs ?? 10_000;

  function fail(res: ServerResponse, err: unknown, requestId: string): void {
    const e = toMcpError(err);
    if (e.code === 'MCP_INTERNAL') logger.error({ err: (err as { cause?: unknown })?.cause ?? err, requestId }, 'worker request failed');
    else logger.debug({ code: e.code, requestId }, 'worker request failed');
    if (res.destroyed) return;
    if (res.headersSent) {
      // a stream already started: the error is its last line
      res.end(`${JSON.stringify(workerErrorBody(e))}\n`);
      return;
    }
    if (e.code === 'MCP_PAYLOAD_TOO_LARGE') res.setHeader('connection', 'close');
    sendJson(res, e.status, workerErrorBody(e));
  }

  async function handle(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === `${WORKER_PROTOCOL_PREFIX}/health`) {
      if (req.method !== 'GET') throw new McpError('MCP_NOT_FOUND', 'method not allowed', { status: 405 });
      sendJson(res, 200, { ok: true });
      return;
    }
    const m = INSTANCE_ROUTE.exec(path);
    if (!m) throw new McpError('MCP_NOT_FOUND', `no route ${req.method ?? ''} ${path}`);
    if (!bearerMatches(headerValue(req, 'authorization'), opts.callToken())) {
      res.setHeader('www-authenticate', 'Bearer realm="capibara-mcp worker"');
      res.setHeader('connection', 'close'); // the body is not read: do not drain a stranger's upload
      throw new McpError('MCP_UNAUTHENTICATED', 'this worker serves only its gateway: send the call token as Authorization: Bearer …');
    }
    const action = m[2] as 'infer' | 'stream' | 'health';
    let id: string;
    try {
      id = decodeURIComponent(m[1]!);
    } catch {
      throw new McpError('MCP_BAD_REQUEST', 'malformed instance id');
    }
    if (req.method !== (action === 'health' ? 'GET' : 'POST')) {
      throw new McpError('MCP_NOT_FOUND', 'method not allowed', { status: 405 });
    }
    const instance = instances.get(id);
    if (!instance)
      throw new McpError('MCP_INSTANCE_NOT_FOUND', `no instance '${id}' on this worker`, {
        retryable: true,
        mayHaveExecuted: false,
        details: { instanceId: id },
      });

    // the call's signal: client disconnect, deadline
    const controller = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) controller.abort(new McpError('MCP_CANCELLED'));
    };
    res.once('close', onClose);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const span =
      action === 'health'
        ? undefined
        : opts.tracing?.workerSpan(`worker ${action}`, req.headers, {
            'capibara.instance': id,
            'capibara.request_id': requestId,
            'capibara.runtime': instance.runtime,
          });
    let failed: unknown;
    try {
      if (action === 'health') {
        timer = setTimeout(() => controller.abort(new McpError('MCP_DEADLINE_EXCEEDED', 'health probe timed out')), healthTimeoutMs);
        const report = await instance.health(controller.signal);
        const body: WorkerInstanceHealth = { ...report, runtime: instance.runtime, device: instance.device, tasks: instance.tasks };
        if (instance.signature) body.signature = instance.signature;
        sendJson(res, 200, body);
        return;
      }

      const input = parseInferenceInput(await readJson(req, maxBodyBytes));
      let deadline: number | undefined;
      const rawDeadline = headerValue(req, 'x-mcp-deadline');
      if (rawDeadline !== undefined) {
        deadline = Number(rawDeadline);
        if (!Number.isFinite(deadline) || deadline <= 0) throw new McpError('MCP_BAD_REQUEST', 'x-mcp-deadline must be ms since epoch');
        const left = deadline - Date.now();
        if (left <= 0) throw new McpError('MCP_DEADLINE_EXCEEDED', 'the deadline passed before the worker started the request');
        timer = setTimeout(() => controller.abort(new McpError('MCP_DEADLINE_EXCEEDED')), left);
      }
      const call: BackendCall = { requestId, signal: controller.signal };
      if (deadline !== undefined) call.deadline = deadline;
      if (span?.traceparent) call.traceparent = span.traceparent;
      const abortReason = (): McpError | undefined => (controller.signal.aborted ? toMcpError(controller.signal.reason) : undefined);

      if (action === 'infer') {
        let out;
        try {
          out = await instance.infer(input, call);
        } catch (err) {
          throw abortReason() ?? err;
        }
        if (abortReason()) throw abortReason();
        sendJson(res, 200, out);
        return;
      }

      // stream
      if (!instance.stream) {
        let out;
        try {
          out = await instance.infer(input, call);
        } catch (err) {
          throw abortReason() ?? err;
        }
        const chunk: InferenceChunk = { text: out.text ?? '', finishReason: out.finishReason ?? 'stop' };
        if (out.usage) chunk.usage = out.usage;
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
        res.end(`${JSON.stringify(chunk)}\n`);
        return;
      }
      const it = instance.stream(input, call)[Symbol.asyncIterator]();
      let first: IteratorResult<InferenceChunk>;
      try {
        first = await it.next();
      } catch (err) {
        throw abortReason() ?? err;
      }
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
      res.flushHeaders();
      let step = first;
      try {
        while (!step.done) {
          if (!(await writeLine(res, step.value)) || controller.signal.aborted) {
            await it.return?.();
            return;
          }
          step = await it.next();
        }
      } catch (err) {
        throw abortReason() ?? err;
      }
      res.end();
    } catch (err) {
      failed = err;
      throw err;
    } finally {
      span?.end(failed);
      if (timer !== undefined) clearTimeout(timer);
      res.off('close', onClose);
    }
  }

  const server = createServer({ keepAlive: true, noDelay: true }, (req, res) => {
    const incoming = headerValue(req, 'x-request-id');
    const requestId = incoming && incoming.length <= 200 ? incoming : randomUUID();
    res.setHeader('x-request-id', requestId);
    handle(req, res, requestId).catch((err: unknown) => fail(res, err, requestId));
  });
  return server;
}
