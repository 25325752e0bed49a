/**
 * The one table of error codes. Every error a client can see carries one of these codes
 * (GraphQL `extensions.code`, REST/OpenAI/KServe `error.code`) and the HTTP status here.
 * The README's error table is checked against this object by a test.
 */
export const ERROR_CODES = {
  MCP_BAD_REQUEST: { status: 400, message: 'The request is malformed or a field has the wrong type.' },
  MCP_INVALID_JSON: { status: 400, message: 'The body is not valid JSON.' },
  MCP_VALIDATION_FAILED: { status: 400, message: 'An argument failed validation; `path` names it.' },
  MCP_UNSUPPORTED_PARAMETER: { status: 400, message: 'A parameter is not supported by this model or endpoint.' },
  MCP_INVALID_INPUT_SHAPE: { status: 400, message: 'An input tensor has the wrong shape or dtype for the model signature.' },
  MCP_PAYLOAD_TOO_LARGE: { status: 413, message: 'The body is larger than the configured limit.' },
  MCP_LENGTH_REQUIRED: { status: 411, message: 'A POST to /graphql needs a Content-Length header.' },
  MCP_UNAUTHENTICATED: { status: 401, message: 'No valid credentials were presented.' },
  MCP_FORBIDDEN: { status: 403, message: 'The principal lacks the permission this operation needs.' },
  MCP_NOT_FOUND: { status: 404, message: 'No such route.' },
  MCP_MODEL_NOT_FOUND: { status: 404, message: 'No model with this id.' },
  MCP_VERSION_NOT_FOUND: { status: 404, message: 'The model has no version with this name.' },
  MCP_INSTANCE_NOT_FOUND: { status: 404, message: 'No instance with this id.' },
  MCP_WORKER_NOT_FOUND: { status: 404, message: 'No worker with this id.' },
  MCP_DUPLICATE_ID: { status: 409, message: 'An object with this id already exists.' },
  MCP_CONFLICT: { status: 409, message: 'The object is in a state that does not allow this operation.' },
  MCP_UNKNOWN_PLUGIN: { status: 400, message: 'No plugin of that kind and name is configured.' },
  MCP_RATE_LIMITED: { status: 429, message: 'Too many requests; retry after the time in Retry-After.' },
  MCP_RATE_LIMIT_UNAVAILABLE: { status: 503, message: 'The rate-limit store cannot be reached and limits.failurePolicy is closed.' },
  MCP_NO_HEALTHY_INSTANCE: { status: 503, message: 'No ready, healthy instance can serve the model now.' },
  MCP_INSUFFICIENT_RESOURCES: {
    status: 503,
    message: 'No worker has the device memory a placement needs, even after allowed evictions; the message names what is short.',
  },
  MCP_SCALE_FROM_ZERO_TIMEOUT: { status: 503, message: 'The model version was at zero instances and none became ready within the hold time.' },
  MCP_QUEUE_FULL: { status: 503, message: 'The request queue is full.' },
  MCP_OVERLOADED: { status: 503, message: 'The request was shed under load.' },
  MCP_ADMISSION_QUEUE_FULL: {
    status: 429,
    message: "The model version's admission queue is full (or the request was displaced by a more urgent one); retry after Retry-After.",
  },
  MCP_TENANT_OVER_SHARE: {
    status: 429,
    message: "The tenant holds more than its weighted share of the model version's full admission queue; retry after Retry-After.",
  },
  MCP_QUEUE_TIMEOUT: { status: 503, message: 'The request waited in the admission queue longer than its queue timeout.' },
  MCP_DEADLINE_UNMEETABLE: { status: 503, message: 'The request cannot meet its deadline given the current queue wait; refused at once.' },
  MCP_CIRCUIT_OPEN: { status: 503, message: 'Every candidate instance has an open circuit breaker.' },
  MCP_UPSTREAM_ERROR: { status: 502, message: 'The model server answered with an error.' },
  MCP_UPSTREAM_UNAVAILABLE: { status: 503, message: 'The model server could not be reached.' },
  MCP_UPSTREAM_RATE_LIMITED: { status: 429, message: 'The model server is rate limiting us.' },
  MCP_UPSTREAM_FORBIDDEN: { status: 502, message: "The model server's address is not allowed by the gateway's upstream address policy." },
  MCP_DEADLINE_EXCEEDED: { status: 504, message: 'The request deadline passed before an answer.' },
  MCP_CANCELLED: { status: 499, message: 'The client went away; the work was abandoned.' },
  MCP_SHUTTING_DOWN: { status: 503, message: 'The gateway is shutting down.' },
  MCP_DASHBOARD_NOT_BUILT: { status: 503, message: 'The dashboard bundle is not built (npm run build).' },
  MCP_CONFIG_INVALID: { status: 500, message: 'The configuration is invalid (boot-time only).' },
  MCP_PLUGIN_INVALID: { status: 500, message: 'A plugin failed to load or validate (boot-time only).' },
  MCP_PLUGIN_SETUP_FAILED: { status: 500, message: 'A plugin failed during setup (boot-time only).' },
  MCP_STORAGE_UNAVAILABLE: { status: 503, message: 'The database cannot be reached.' },
  MCP_INTERNAL: { status: 500, message: 'Unexpected error; logged with the request id.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error with a stable code. Anything thrown that is not an McpError is masked as MCP_INTERNAL. */
export class McpError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;
  /** Whether retrying the same request elsewhere may succeed (used by the router). */
  readonly retryable: boolean;
  /**
   * Whether the request may have run on the model. `false` only when it certainly did not (the
   * connection was refused, the server answered 429 or 503, the request waited in a queue that
   * refused or dropped it, the instance was unloaded): the router then retries it elsewhere even
   * for a model that is not idempotent. Defaults to `true`.
   */
  readonly mayHaveExecuted: boolean;

  constructor(
    code: ErrorCode,
    message?: string,
    options: { details?: Record<string, unknown>; cause?: unknown; retryable?: boolean; mayHaveExecuted?: boolean; status?: number } = {},
  ) {
    super(message ?? ERROR_CODES[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'McpError';
    this.code = code;
    this.status = options.status ?? ERROR_CODES[code].status;
    this.details = options.details;
    this.retryable = options.retryable ?? false;
    this.mayHaveExecuted = options.mayHaveExecuted ?? true;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details ? { code: this.code, message: this.message, details: this.details } : { code: this.code, message: this.message };
  }
}

export function isMcpError(err: unknown): err is McpError {
  return err instanceof McpError;
}

/** Converts anything thrown into an McpError; unknown errors become MCP_INTERNAL (message masked). */
export function toMcpError(err: unknown): McpError {
  if (err instanceof McpError) return err;
  if (err instanceof Error && err.name === 'AbortError') return new McpError('MCP_CANCELLED', undefined, { cause: err });
  return new McpError('MCP_INTERNAL', undefined, { cause: err });
}
