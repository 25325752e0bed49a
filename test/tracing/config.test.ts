import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { configSchema } from '../../src/config/schema.ts';
import { createTracing } from '../../src/tracing/tracing.ts';

describe('tracing config', () => {
  it('is off by default, with a local OTLP endpoint, ratio 1 and no export headers', () => {
    const t = configSchema.parse({}).tracing;
    expect(t.enabled).toBe(false);
    expect(t.sampleRatio).toBe(1);
    expect(t.otlp.endpoint).toBe('http://127.0.0.1:4318/v1/traces');
    expect(t.otlp.headers).toEqual({});
    expect(t.serviceName).toBe('capibara-mcp');
  });

  it('refuses a ratio outside 0…1, a non-HTTP endpoint and an unknown key, naming the path', () => {
    const issues = (tracing: unknown) => configSchema.safeParse({ tracing }).error?.issues.map((i) => i.path.join('.'));
    expect(issues({ sampleRatio: 1.5 })).toEqual(['tracing.sampleRatio']);
    expect(issues({ otlp: { endpoint: 'ftp://collector/v1/traces' } })).toEqual(['tracing.otlp.endpoint']);
    expect(issues({ exporter: 'zipkin' })).toEqual(['tracing']);
    expect(issues({ otlp: { headers: { 'bad header': 'env:X' } } })?.[0]).toMatch(/^tracing\.otlp\.headers/);
  });

  it('off: no tracing object; on: an export header whose secret reference is missing stops the start with MCP_CONFIG_INVALID naming the variable', async () => {
    const logger = pino({ level: 'silent' });
    expect(await createTracing(configSchema.parse({}).tracing, logger)).toBeUndefined();
    const tracing = configSchema.parse({ tracing: { enabled: true, otlp: { headers: { 'x-api-key': 'env:MCP_TEST_NO_SUCH_VARIABLE' } } } }).tracing;
    await expect(createTracing(tracing, logger)).rejects.toMatchObject({
      code: 'MCP_CONFIG_INVALID',
      message: expect.stringContaining('MCP_TEST_NO_SUCH_VARIABLE'),
    });
  });
});
