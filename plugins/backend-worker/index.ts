/**
 * `worker` backend: the client of the worker wire protocol (the server side is `capibara-mcp worker`, createWorkerHttpServer).
 * Instance endpoint = worker base URL; `remoteInstanceId` (default: the instance id) names the
 * instance on the worker. runtime/device/tasks/signature are the remote instance's, as reported
 * by its health route (read at load and refreshed by every health probe).
 *
 * Every call carries `Authorization: Bearer <call token>`: HMAC of the gateway's worker-call key over
 * the instance's `worker`, `session` (set by the worker's registration) and its endpoint. The key is
 * MCP_WORKER_CALL_KEY (the same on every replica) or a generated `<dataDir>/worker-call.key`; only
 * this plugin reads it. `workerCallToken` lets the gateway hand a worker the token it will present.
 */
import { z, type ZodType } from 'zod';
import type { Logger } from 'pino';
import {
  ERROR_CODES,
  McpError,
  definePlugin,
  type ErrorCode,
  type InferenceChunk,
  type InferenceInput,
  type InferenceOutput,
  type InferenceTask,
  type Backend,
  type BackendCall,
  type HealthReport,
  type InstanceSpec,
  type LoadedInstance,
  type ModelSignature,
  type WorkerCallSigner,
  deriveWorkerCallToken,
  loadWorkerCallKey,
  workerCallKeyFromEnv,
  WORKER_CALL_KEY_ENV,
  WORKER_CALL_KEY_FILE,
} from 'capibara-mcp';
import { join } from 'node:path';
import { UpstreamClient, joinUrl, mapHttpError, parseErrorBody, probeFailure, parseNdjson, clientOptionsFrom, upstreamPluginOptions } from 'capibara-mcp/sdk';
import type { IncomingHttpHeaders } from 'node:http';

export const workerInstanceOptions = z.object({
  /** Instance id on the worker; default: this instance's id. */
  remoteInstanceId: z.string().min(1).optional(),
  /** Extra headers sent to the worker (the call token's `authorization` header replaces any given here). */
  headers: z.record(z.string(), z.string()).default({}),
  /** Worker id and session the call token is derived for (set by the worker's registration). */
  worker: z.string().min(1).max(63).optional(),
  session: z.string().min(16).max(64).optional(),
});

interface RemoteHealth {
  ok?: boolean;
  detail?: string;
  runtime?: string;
  device?: string;
  tasks?: InferenceTask[];
  signature?: ModelSignature;
}

function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, code);
}

/** Rebuilds the McpError a worker sent (`{error:{code,message,details,retryable,mayHaveExecuted}}`). */
export function errorFromWorker(
  error: { code?: unknown; message?: unknown; details?: unknown; retryable?: unknown; mayHaveExecuted?: unknown },
  status?: number,
): McpError {
  const code = isErrorCode(error.code) ? error.code : 'MCP_UPSTREAM_ERROR';
  const details = typeof error.details === 'object' && error.details !== null ? (error.details as Record<string, unknown>) : undefined;
  return new McpError(code, typeof error.message === 'string' ? error.message : undefined, {
    details,
    retryable: typeof error.retryable === 'boolean' ? error.retryable : status !== undefined && status >= 502 && status <= 504,
    mayHaveExecuted: typeof error.mayHaveExecuted === 'boolean' ? error.mayHaveExecuted : true,
    // keep the worker's HTTP status when it sent one for a known code (e.g. 405 for MCP_NOT_FOUND)
    status: isErrorCode(error.code) && status !== undefined && status >= 400 ? status : undefined,
  });
}

/** Maps a non-2xx worker answer: the worker's own McpError when the body carries an MCP_* code, else the generic mapping. */
export function mapWorkerHttpError(status: number, headers: IncomingHttpHeaders, bodyText: string): McpError {
  if (status === 401) {
    // the gateway's credential, not the client's: never a 401 to the caller
    return new McpError(
      'MCP_UPSTREAM_ERROR',
      `the worker refused the gateway's call token (every replica needs the same ${WORKER_CALL_KEY_ENV}; the worker re-registers to get a new one)`,
      { details: { status }, retryable: false, mayHaveExecuted: false },
    );
  }
  const body = parseErrorBody(bodyText);
  if (isErrorCode(body.code)) {
    return errorFromWorker(
      { code: body.code, message: body.message, details: body.details, retryable: body.retryable, mayHaveExecuted: body.mayHaveExecuted },
      status,
    );
  }
  return mapHttpError(status, headers, bodyText);
}

class WorkerInstance implements LoadedInstance {
  private remote: Required<Pick<RemoteHealth, 'runtime' | 'device'>> & { tasks: readonly InferenceTask[]; signature?: ModelSignature };
  private unloaded = false;

  constructor(
    private readonly client: UpstreamClient,
    private readonly base: string,
    private readonly headers: Record<string, string>,
    initial: RemoteHealth,
  ) {
    this.remote = { runtime: 'remote', device: 'remote', tasks: [] };
    this.update(initial);
  }

  get runtime(): string {
    return this.remote.runtime;
  }
  get device(): string {
    return this.remote.device;
  }
  get tasks(): readonly InferenceTask[] {
    return this.remote.tasks;
  }
  get signature(): ModelSignature | undefined {
    return this.remote.signature;
  }

  private update(h: RemoteHealth | undefined): void {
    if (!h || typeof h !== 'object') return;
    if (typeof h.runtime === 'string') this.remote.runtime = h.runtime;
    if (typeof h.device === 'string') this.remote.device = h.device;
    if (Array.isArray(h.tasks)) this.remote.tasks = h.tasks;
    if (h.signature && typeof h.signature === 'object') this.remote.signature = h.signature;
  }

  private callHeaders(call: BackendCall): Record<string, string> {
    return call.deadline !== undefined ? { ...this.headers, 'x-mcp-deadline': String(call.deadline) } : this.headers;
  }

  private check(): void {
    if (this.unloaded) throw new McpError('MCP_UPSTREAM_UNAVAILABLE', 'the instance was unloaded', { retryable: true, mayHaveExecuted: false });
  }

  async infer(input: InferenceInput, call: BackendCall): Promise<InferenceOutput> {
    this.check();
    const { data } = await this.client.json<InferenceOutput>({
      url: `${this.base}/infer`,
      json: input,
      headers: this.callHeaders(call),
      call,
      mapError: mapWorkerHttpError,
    });
    if (typeof data !== 'object' || data === null) throw new McpError('MCP_UPSTREAM_ERROR', 'the worker answered with an empty body');
    return data;
  }

  async *stream(input: InferenceInput, call: BackendCall): AsyncGenerator<InferenceChunk> {
    this.check();
    const upstream = await this.client.open({
      url: `${this.base}/stream`,
      json: input,
      headers: { ...this.callHeaders(call), accept: 'application/x-ndjson' },
      call,
      mapError: mapWorkerHttpError,
    });
    let finished = false;
    try {
      for await (const line of parseNdjson(upstream.body)) {
        const obj = line as InferenceChunk & { error?: Record<string, unknown> };
        if (obj.error && typeof obj.error === 'object') throw errorFromWorker(obj.error);
        if (typeof obj.text !== 'string') throw new McpError('MCP_UPSTREAM_ERROR', 'the worker sent a chunk without text');
        if (obj.finishReason !== undefined) finished = true;
        yield obj;
      }
    } finally {
      upstream.close();
    }
    if (!finished) throw new McpError('MCP_UPSTREAM_ERROR', 'the worker ended the stream before the answer was complete');
  }

  async health(signal: AbortSignal): Promise<HealthReport> {
    try {
      const { data } = await this.client.json<RemoteHealth>({
        url: `${this.base}/health`,
        headers: this.headers,
        signal,
        timeoutMs: this.client.timeouts.healthMs,
        mapError: mapWorkerHttpError,
      });
      this.update(data);
      const report: HealthReport = { ok: data?.ok === true };
      if (typeof data?.detail === 'string') report.detail = data.detail;
      return report;
    } catch (err) {
      return probeFailure(err);
    }
  }

  async unload(): Promise<void> {
    this.unloaded = true;
  }
}

/** The worker-call key, read once on first use (MCP_WORKER_CALL_KEY or `<dataDir>/worker-call.key`). */
function callKeyOf(dataDir: string, logger?: Logger): () => Promise<Buffer> {
  let key: Promise<Buffer> | undefined;
  return () => {
    key ??= loadWorkerCallKey(dataDir).then(
      (k) => {
        if (!workerCallKeyFromEnv()) {
          logger?.info(
            { file: join(dataDir, WORKER_CALL_KEY_FILE) },
            `worker call tokens derive from the key in the data folder; gateway replicas need the same ${WORKER_CALL_KEY_ENV}`,
          );
        }
        return k;
      },
      (err: unknown) => {
        key = undefined;
        throw err;
      },
    );
    return key;
  };
}

export function createWorkerBackend(client: UpstreamClient, dataDir: string, logger?: Logger): Backend & WorkerCallSigner {
  const callKey = callKeyOf(dataDir, logger);
  const workerCallToken = async (workerId: string, session: string, endpoint: string) => deriveWorkerCallToken(await callKey(), workerId, session, endpoint);
  return {
    workerCallToken,
    instanceOptions: workerInstanceOptions as unknown as ZodType<Record<string, unknown>>,
    async load(spec: InstanceSpec, signal: AbortSignal): Promise<LoadedInstance> {
      if (!spec.endpoint) {
        throw new McpError('MCP_VALIDATION_FAILED', `worker instance '${spec.id}' needs an endpoint (worker base URL)`, { details: { path: 'endpoint' } });
      }
      const parsed = workerInstanceOptions.safeParse(spec.options ?? {});
      if (!parsed.success) {
        throw new McpError('MCP_VALIDATION_FAILED', `invalid options for worker instance '${spec.id}': ${parsed.error.message}`, {
          details: { path: 'options' },
        });
      }
      const o = parsed.data;
      const remoteId = o.remoteInstanceId ?? spec.id;
      const base = joinUrl(spec.endpoint, `worker/v1/instances/${encodeURIComponent(remoteId)}`);
      const headers = { ...o.headers };
      if (o.worker && o.session) headers.authorization = `Bearer ${await workerCallToken(o.worker, o.session, spec.endpoint)}`;
      const { data } = await client.json<RemoteHealth>({
        url: `${base}/health`,
        headers,
        signal,
        timeoutMs: client.timeouts.healthMs,
        mapError: mapWorkerHttpError,
      });
      logger?.debug({ instance: spec.id, remoteId, endpoint: spec.endpoint, runtime: data?.runtime }, 'worker instance connected');
      return new WorkerInstance(client, base, headers, data ?? {});
    },
    devices: () => [{ id: 'remote', kind: 'remote', name: 'Capibara worker' }],
  };
}

export default definePlugin({
  name: 'worker',
  kind: 'backend',
  apiVersion: '^1.0.0',
  description: 'Instances hosted by Capibara worker processes, over the worker HTTP protocol',
  options: upstreamPluginOptions,
  setup(ctx, options) {
    workerCallKeyFromEnv(); // a malformed MCP_WORKER_CALL_KEY stops the boot, not the first call
    const client = new UpstreamClient({ ...clientOptionsFrom(options), policy: ctx.addressPolicy, logger: ctx.logger });
    ctx.onClose(() => client.close());
    return createWorkerBackend(client, ctx.dataDir, ctx.logger);
  },
});
