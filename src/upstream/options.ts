/** Zod schema of the options every remote backend plugin shares (timeouts, pool size, headers). */
import { z } from 'zod';
import { DEFAULT_UPSTREAM_TIMEOUTS, type UpstreamClientOptions } from './client.ts';

const ms = (def: number) => z.number().int().positive().default(def);

export const upstreamTimeoutsSchema = z
  .strictObject({
    connectMs: ms(DEFAULT_UPSTREAM_TIMEOUTS.connectMs),
    firstByteMs: ms(DEFAULT_UPSTREAM_TIMEOUTS.firstByteMs),
    idleMs: ms(DEFAULT_UPSTREAM_TIMEOUTS.idleMs),
    totalMs: ms(DEFAULT_UPSTREAM_TIMEOUTS.totalMs),
    healthMs: ms(DEFAULT_UPSTREAM_TIMEOUTS.healthMs),
  })
  .prefault({});

export const upstreamPluginOptions = z
  .strictObject({
    timeouts: upstreamTimeoutsSchema,
    /** Max keep-alive connections per upstream origin. */
    connections: z.number().int().positive().default(32),
    keepAliveMs: z.number().int().positive().default(4_000),
    /** Headers sent with every upstream request. */
    headers: z.record(z.string(), z.string()).default({}),
    maxResponseBytes: z
      .number()
      .int()
      .positive()
      .default(64 * 1024 * 1024),
  })
  .prefault({});

export type UpstreamPluginOptions = z.output<typeof upstreamPluginOptions>;

export function clientOptionsFrom(options: UpstreamPluginOptions): UpstreamClientOptions {
  return {
    timeouts: options.timeouts,
    connections: options.connections,
    keepAliveMs: options.keepAliveMs,
    headers: options.headers,
    maxResponseBytes: options.maxResponseBytes,
  };
}
