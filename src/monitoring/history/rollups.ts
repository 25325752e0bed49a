import { and, gte, inArray, lt, sql } from 'drizzle-orm';
import type { Db } from '../../db/client.ts';
import { metricRollups } from '../../db/schema.ts';

/**
 * One minute of one series: what the ring's samples of that minute add up to. For metrics whose
 * replicas add up (catalog.ts isAdditiveMean) a replica writes count 0 and, as `sum`, its
 * time-weighted mean over the minute (its samples' sum × tick ÷ minute): rows of several replicas
 * (and of one replica restarted within the minute) then merge into the fleet's total.
 */
export interface Rollup {
  metric: string;
  labelsKey: string;
  labels: Readonly<Record<string, string>>;
  minute: number;
  count: number;
  sum: number;
  min: number;
  max: number;
}

/** A step of one series read back: the rollups of its minutes combined. */
export interface RollupBucket {
  metric: string;
  labels: Record<string, string>;
  /** Start of the step, ms since the epoch. */
  at: number;
  count: number;
  sum: number;
  max: number;
  /** Minutes (rows) combined into the step. */
  minutes: number;
  /** Sum over those minutes of each minute's value: `sum` of a count-0 row, `sum / count` of the others. */
  minuteValues: number;
}

const CHUNK = 500;

/** The per-minute rollups table: writes, reads aggregated per step, retention. */
export class RollupStore {
  constructor(private readonly db: Db) {}

  async write(rows: readonly Rollup[]): Promise<void> {
    for (let i = 0; i < rows.length; i += CHUNK) {
      const chunk = rows.slice(i, i + CHUNK).map((r) => ({ ...r, labels: { ...r.labels }, minute: new Date(r.minute) }));
      await this.db
        .insert(metricRollups)
        .values(chunk)
        .onConflictDoUpdate({
          target: [metricRollups.metric, metricRollups.labelsKey, metricRollups.minute],
          set: {
            count: sql`${metricRollups.count} + excluded.count`,
            sum: sql`${metricRollups.sum} + excluded.sum`,
            min: sql`least(${metricRollups.min}, excluded.min)`,
            max: sql`greatest(${metricRollups.max}, excluded.max)`,
          },
        });
    }
  }

  /** The rollups of `metrics` with from ≤ minute < to, combined per series and step (aligned to multiples of stepMs). */
  async read(metrics: readonly string[], from: number, to: number, stepMs: number): Promise<RollupBucket[]> {
    if (!metrics.length || to <= from) return [];
    // The step inlined (an integer): GROUP BY must see the same expression as the select list.
    const bucket = sql<number>`floor(extract(epoch from ${metricRollups.minute}) * 1000 / ${sql.raw(String(Math.max(1, Math.trunc(stepMs))))})`;
    const rows = await this.db
      .select({
        metric: metricRollups.metric,
        labels: sql<Record<string, string>>`min(${metricRollups.labels}::text)::jsonb`,
        bucket: sql<string>`${bucket}::bigint`,
        count: sql<string>`sum(${metricRollups.count})::bigint`,
        sum: sql<number>`sum(${metricRollups.sum})`,
        max: sql<number>`max(${metricRollups.max})`,
        minutes: sql<string>`count(*)::bigint`,
        minuteValues: sql<number>`sum(case when ${metricRollups.count} = 0 then ${metricRollups.sum} else ${metricRollups.sum} / ${metricRollups.count} end)`,
      })
      .from(metricRollups)
      .where(and(inArray(metricRollups.metric, [...metrics]), gte(metricRollups.minute, new Date(from)), lt(metricRollups.minute, new Date(to))))
      .groupBy(metricRollups.metric, metricRollups.labelsKey, bucket);
    return rows.map((r) => ({
      metric: r.metric,
      labels: typeof r.labels === 'string' ? (JSON.parse(r.labels) as Record<string, string>) : r.labels,
      at: Number(r.bucket) * stepMs,
      count: Number(r.count),
      sum: Number(r.sum),
      max: Number(r.max),
      minutes: Number(r.minutes),
      minuteValues: Number(r.minuteValues),
    }));
  }

  /** Deletes the rollups of minutes before `before`; returns how many. */
  async deleteBefore(before: number): Promise<number> {
    const gone = await this.db
      .delete(metricRollups)
      .where(lt(metricRollups.minute, new Date(before)))
      .returning({ m: metricRollups.minute });
    return gone.length;
  }
}
