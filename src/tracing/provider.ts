import { ROOT_CONTEXT, SpanKind, SpanStatusCode, defaultTextMapGetter, defaultTextMapSetter, trace, type Context } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_ROUTE, ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { PACKAGE_ROOT } from '../package-root.ts';
import { resolveSecret } from '../sdk/secret-ref.ts';
import type { TracingConfig } from './config.ts';
import { InferenceTrace } from './inference-trace.ts';
import type { EntryInfo, Tracing, WorkerSpan } from './tracing.ts';

/** Export headers with their secret references resolved (the values are never logged). */
function exportHeaders(config: TracingConfig, logger: Logger): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, ref] of Object.entries(config.otlp.headers)) {
    const secret = resolveSecret(ref);
    if (secret.literal) logger.warn({ header: name }, 'tracing.otlp.headers holds a literal value; use env:NAME or file:PATH');
    out[name] = secret.value;
  }
  return out;
}

/** The OpenTelemetry tracer provider (not registered globally: each gateway has its own), its OTLP/HTTP exporter and the W3C propagator. */
export function createOtelTracing(config: TracingConfig, logger: Logger, given?: SpanExporter): Tracing {
  const { version } = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };
  const exporter = given ?? new OTLPTraceExporter({ url: config.otlp.endpoint, headers: exportHeaders(config, logger), timeoutMillis: config.otlp.timeoutMs });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: config.serviceName, [ATTR_SERVICE_VERSION]: version }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
    spanProcessors: [
      new BatchSpanProcessor(exporter, {
        scheduledDelayMillis: config.batch.delayMs,
        maxQueueSize: config.batch.maxQueueSize,
        maxExportBatchSize: Math.min(config.batch.maxExportBatchSize, config.batch.maxQueueSize),
        exportTimeoutMillis: config.otlp.timeoutMs,
      }),
    ],
  });
  const tracer = provider.getTracer('capibara-mcp', version);
  const propagator = new W3CTraceContextPropagator();
  const shown = new URL(config.otlp.endpoint);
  shown.username = shown.password = shown.search = ''; // credentials in the URL stay out of the log
  logger.info({ endpoint: shown.href, sampleRatio: config.sampleRatio }, 'tracing on: spans exported over OTLP/HTTP');
  return {
    begin(info: EntryInfo, headers, startTime): InferenceTrace {
      const parent: Context = headers?.traceparent ? propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter) : ROOT_CONTEXT;
      const attributes = info.method ? { [ATTR_HTTP_REQUEST_METHOD]: info.method, [ATTR_HTTP_ROUTE]: info.route ?? '' } : undefined;
      const span = tracer.startSpan(info.name, { kind: SpanKind.SERVER, startTime, attributes: { 'capibara.entry': info.entry, ...attributes } }, parent);
      return new InferenceTrace(tracer, propagator, span, trace.setSpan(parent, span));
    },
    workerSpan(name, headers, attributes): WorkerSpan {
      const parent: Context = headers.traceparent ? propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter) : ROOT_CONTEXT;
      const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
      const carrier: { traceparent?: string } = {};
      propagator.inject(trace.setSpan(parent, span), carrier, defaultTextMapSetter);
      return {
        traceparent: carrier.traceparent,
        end(error?: unknown) {
          if (error !== undefined) {
            const code = (error as { code?: unknown }).code;
            span.setStatus({ code: SpanStatusCode.ERROR, message: typeof code === 'string' ? code : 'error' });
            if (typeof code === 'string') span.setAttribute('error.type', code);
          }
          span.end();
        },
      };
    },
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}
