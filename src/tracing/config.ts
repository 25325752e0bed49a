import { z } from 'zod';
import { secretReference } from '../sdk/secret-ref.ts';

/** `tracing`: OpenTelemetry spans for every inference, exported over OTLP/HTTP. Off by default (no tracer is installed). */
export const tracingConfigSchema = z
  .strictObject({
    /** Record spans and export them; false: no tracer provider, no span, no `traceparent` sent upstream. */
    enabled: z.boolean().default(false),
    /** `service.name` of the exported resource. */
    serviceName: z.string().min(1).max(128).default('capibara-mcp'),
    /**
     * Fraction of new traces recorded (0 … 1). A request that arrives with a `traceparent` follows the caller's
     * sampling decision; unsampled requests still pass their trace context upstream.
     */
    sampleRatio: z.number().min(0).max(1).default(1),
    otlp: z
      .strictObject({
        /** OTLP/HTTP traces endpoint (JSON encoding), the full URL. */
        endpoint: z.url({ protocol: /^https?$/ }).default('http://127.0.0.1:4318/v1/traces'),
        /** Headers sent with every export (an API key of a tracing vendor): values are secret references `env:NAME` / `file:PATH`. */
        headers: z.record(z.string().regex(/^[A-Za-z0-9-]{1,64}$/), secretReference).default({}),
        /** Export timeout, ms. */
        timeoutMs: z.number().int().min(100).max(60_000).default(10_000),
      })
      .prefault({}),
    /** Batch span processor: the longest a finished span waits before export, ms, and the queue bound (spans beyond it are dropped). */
    batch: z
      .strictObject({
        delayMs: z.number().int().min(1).max(60_000).default(1000),
        maxQueueSize: z.number().int().min(16).max(100_000).default(2048),
        maxExportBatchSize: z.number().int().min(1).max(10_000).default(512),
      })
      .prefault({}),
  })
  .prefault({});
export type TracingConfig = z.output<typeof tracingConfigSchema>;
