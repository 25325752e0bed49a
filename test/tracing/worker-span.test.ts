/**
 * Workers record spans of their own: the worker's HTTP server (as the worker process runs it, with
 * tracing on) makes a server span per call, a child of the gateway's attempt named by the
 * `traceparent` header, and hands the backend a traceparent of that span. Spans go to the
 * OpenTelemetry in-memory exporter.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { McpError } from '../../src/errors.ts';
import type { BackendCall, LoadedInstance } from '../../src/plugin/contract.ts';
import { tracingConfigSchema } from '../../src/tracing/config.ts';
import { createTracing, type Tracing } from '../../src/tracing/tracing.ts';
import { createWorkerHttpServer } from '../../src/workers/http-server.ts';

const TOKEN = 'worker-span-test-call-token';
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

describe('worker spans', () => {
  const exporter = new InMemorySpanExporter();
  const calls: BackendCall[] = [];
  let tracing: Tracing;
  let server: Server;
  let base: string;
  const instance: LoadedInstance = {
    runtime: 'tfjs-node',
    device: 'cpu',
    tasks: ['generate'],
    async infer(input, call) {
      calls.push(call);
      if (input.task === 'generate' && input.prompt === 'boom') throw new McpError('MCP_UPSTREAM_UNAVAILABLE', 'model server went away');
      return { text: 'ok', finishReason: 'stop' };
    },
    async health() {
      return { ok: true };
    },
    async unload() {},
  };

  beforeAll(async () => {
    const config = tracingConfigSchema.parse({ enabled: true, serviceName: 'capibara-worker-test', batch: { delayMs: 50 } });
    tracing = (await createTracing(config, pino({ level: 'silent' }), exporter))!;
    server = createWorkerHttpServer({ instances: new Map([['i1', instance]]), callToken: () => TOKEN, logger: pino({ level: 'silent' }), tracing });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/worker/v1`;
  });
  afterAll(async () => {
    await tracing?.shutdown();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const infer = (prompt: string) =>
    fetch(`${base}/instances/i1/infer`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', traceparent: `00-${TRACE}-${PARENT}-01`, 'x-request-id': 'req-1' },
      body: JSON.stringify({ task: 'generate', prompt }),
    });

  it("records a server span per call as a child of the gateway's attempt, with an error status when the call fails", async () => {
    expect((await infer('hi')).status).toBe(200);
    expect((await infer('boom')).status).toBe(503);
    await tracing.flush();
    const spans = exporter.getFinishedSpans();
    expect(spans.map((s) => s.name)).toEqual(['worker infer', 'worker infer']);
    for (const s of spans) {
      expect(s.kind).toBe(SpanKind.SERVER);
      expect(s.spanContext().traceId).toBe(TRACE);
      expect(s.parentSpanContext?.spanId).toBe(PARENT);
      expect(s.attributes['capibara.instance']).toBe('i1');
    }
    expect(spans[0]!.status.code).not.toBe(2);
    expect(spans[1]!.status.code).toBe(2); // ERROR
    expect(spans[1]!.attributes['error.type']).toBe('MCP_UPSTREAM_UNAVAILABLE');
    // The backend gets the worker span's context to send further upstream.
    expect(calls[0]!.traceparent).toBe(`00-${TRACE}-${spans[0]!.spanContext().spanId}-01`);
  });
});
