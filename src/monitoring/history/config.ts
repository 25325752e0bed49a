import { z } from 'zod';
import { periodSchema } from '../../limits/config.ts';

/** Rollups are per minute: what the database keeps beyond the in-memory ring. */
export const ROLLUP_MS = 60_000;
/** Shortest snapshot interval a `metricsUpdates` subscriber may ask for, ms. */
export const MIN_INTERVAL_MS = 250;

/** `monitoring.history`: the metrics history behind the GraphQL `metrics` query, `metricsUpdates` and alert rules. */
export const historyConfigSchema = z
  .strictObject({
    /** Sample the gateway's metrics on a tick (default true). Off: `metrics` answers nothing and `metricsUpdates` never emits. */
    enabled: z.boolean().default(true),
    /** Sampling period, ms: one point per series per tick (250 ms … 60 s, default 1 s). */
    tickMs: z.number().int().min(MIN_INTERVAL_MS).max(60_000).default(1000),
    /** How far back the in-memory ring reaches at tick resolution (default 3h, at most 24h). */
    ring: periodSchema.pipe(z.number().max(86_400_000, 'at most 24h')).default(3 * 3_600_000),
    /** Write per-minute rollups to the database (default true); reads beyond the ring come from them. */
    persist: z.boolean().default(true),
    /** Rollups older than this are deleted (default 30 days, at most 400). */
    retentionDays: z.number().int().min(1).max(400).default(30),
    /** Series the history keeps at most (labels come from the registry; this bounds memory: series × ring/tick × 4 bytes). */
    maxSeries: z.number().int().min(16).max(20_000).default(1000),
    /** Points per series one `metrics` answer may carry (window / step). */
    maxPointsPerSeries: z.number().int().min(10).max(100_000).default(2000),
    /** Series one `metrics` answer or snapshot may carry. */
    maxSeriesPerAnswer: z.number().int().min(1).max(20_000).default(500),
  })
  .refine((c) => c.ring >= c.tickMs * 60 && c.ring >= ROLLUP_MS * 2, { message: 'ring must hold at least 60 ticks and 2 minutes' });
export type HistoryConfig = z.output<typeof historyConfigSchema>;

/** `monitoring`: settings of the metrics history. */
export const monitoringConfigSchema = z.strictObject({ history: historyConfigSchema.prefault({}) }).prefault({});
