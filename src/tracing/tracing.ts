import type { IncomingHttpHeaders } from 'node:http';
import type { Logger } from 'pino';
import type { TracingConfig } from './config.ts';
import type { InferenceTrace } from './inference-trace.ts';

/** What an entry point says about the request it starts tracing. */
export interface EntryInfo {
  /** The entry point (openai, kserve, rest, graphql). */
  entry: string;
  /** Span name of the entry: the route (`POST /v1/chat/completions`) or the GraphQL field. */
  name: string;
  /** HTTP method and route template, when the entry is an HTTP route. */
  method?: string;
  route?: string;
}

/**
 * Tracing of inferences. `undefined` on the services when `tracing.enabled` is false: no tracer
 * provider exists, entry points check that one field and create nothing (the OpenTelemetry SDK is
 * not even loaded).
 */
export interface Tracing {
  /**
   * Starts the entry span of one inference (at `startTime`, epoch ms, when it began earlier: GraphQL authenticates
   * before the field runs), continuing the caller's trace when `headers` carry a `traceparent`.
   */
  begin(
    info: EntryInfo,
    headers: IncomingHttpHeaders | Readonly<Record<string, string | string[] | undefined>> | undefined,
    startTime?: number,
  ): InferenceTrace;
  /**
   * Starts a worker's span for one backend call it serves (kind server), a child of the gateway's
   * attempt when `headers` carry its `traceparent`.
   */
  workerSpan(name: string, headers: IncomingHttpHeaders, attributes: Record<string, string>): WorkerSpan;
  /** Exports the spans finished so far (tests, shutdown). */
  flush(): Promise<void>;
  /** Exports what is left and stops the exporter. */
  shutdown(): Promise<void>;
}

/** A worker's span of one call: `traceparent` continues the trace further upstream (BackendCall.traceparent). */
export interface WorkerSpan {
  readonly traceparent: string | undefined;
  /** Ends the span, with an error status when `error` is given. */
  end(error?: unknown): void;
}

/**
 * The tracing of `config`, or undefined when it is off (the SDK is loaded only when on). `exporter`
 * (an OpenTelemetry SpanExporter, e.g. the in-memory one in tests) replaces the OTLP/HTTP exporter.
 */
export async function createTracing(config: TracingConfig, logger: Logger, exporter?: unknown): Promise<Tracing | undefined> {
  if (!config.enabled) return undefined;
  const { createOtelTracing } = await import('./provider.ts');
  return createOtelTracing(config, logger, exporter as Parameters<typeof createOtelTracing>[2]);
}
