import { eq, getTableColumns, getTableName, sql, type SQL } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/client.ts';
import { inferences } from '../db/schema.ts';

/** The columns the hot path fills; the others (feedback, created_at) keep their defaults. */
const RECORD_COLUMNS = [
  'id',
  'modelId',
  'version',
  'instanceId',
  'variant',
  'principalId',
  'entry',
  'ok',
  'errorCode',
  'latencyMs',
  'promptTokens',
  'completionTokens',
  'shadow',
  'output',
] as const;

export type InferenceRecord = Pick<typeof inferences.$inferInsert, (typeof RECORD_COLUMNS)[number]>;

/**
 * `insert … select from jsonb_to_recordset($1)`: a batch is one JSON parameter, so the SQL text
 * is constant and building it costs a JSON.stringify (drizzle's per-value query builder was
 * ~20% of the inference path's CPU at 500 rows a batch).
 */
const columns = getTableColumns(inferences);
const sqlNames = RECORD_COLUMNS.map((k) => columns[k].name);
const INSERT_HEAD = sql.raw(`insert into ${getTableName(inferences)} (${sqlNames.join(', ')}) select ${sqlNames.join(', ')} from jsonb_to_recordset(`);
const INSERT_TAIL = sql.raw(`::jsonb) as t(${RECORD_COLUMNS.map((k) => `${columns[k].name} ${columns[k].getSQLType()}`).join(', ')}) on conflict do nothing`);

function insertBatch(rows: readonly InferenceRecord[]): SQL {
  const out = new Array<Record<string, unknown>>(rows.length);
  for (let j = 0; j < rows.length; j++) {
    const r = rows[j]!;
    const o: Record<string, unknown> = {};
    for (let i = 0; i < RECORD_COLUMNS.length; i++) o[sqlNames[i]!] = r[RECORD_COLUMNS[i]!] ?? null;
    out[j] = o;
  }
  return sql`${INSERT_HEAD}${JSON.stringify(out)}${INSERT_TAIL}`;
}

export interface InferenceRecorderOptions {
  flushIntervalMs: number;
  maxBatch: number;
  maxBuffered: number;
  /** Records older than this are deleted, hours; 0 keeps them. */
  retentionHours: number;
  pruneIntervalMs: number;
}

/** Rows deleted per statement when pruning, so no delete holds its locks for long. */
const PRUNE_BATCH = 5000;

/**
 * Group commit for the `inferences` table: the hot path only pushes a row into an array; a
 * timer (or a full batch) writes the buffer with one multi-row INSERT per `maxBatch` rows.
 * One flush runs at a time; rows that arrive meanwhile wait for the next one. When the
 * database is slower than the traffic the buffer is capped (`maxBuffered`) and the excess is
 * dropped and counted, never queued without bound. close() writes what is left.
 */
export class InferenceRecorder {
  private buffer: InferenceRecord[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;
  /** Rows written, rows dropped (buffer full or failed INSERT), INSERT statements issued. */
  readonly stats = { written: 0, dropped: 0, batches: 0 };

  private readonly pruneTimer: ReturnType<typeof setInterval> | undefined;
  private pruning: Promise<number> | undefined;

  constructor(
    private readonly database: Database,
    private readonly o: InferenceRecorderOptions,
    private readonly logger: Logger,
  ) {
    if (o.retentionHours > 0) {
      this.pruneTimer = setInterval(
        () => void this.prune().catch((err: unknown) => this.logger.warn({ err }, 'could not delete old inference records')),
        o.pruneIntervalMs,
      );
      this.pruneTimer.unref?.();
    }
  }

  /**
   * Deletes records older than the retention (in batches of PRUNE_BATCH rows, oldest first);
   * returns how many. One prune runs at a time.
   */
  prune(now: Date = new Date()): Promise<number> {
    if (this.o.retentionHours <= 0) return Promise.resolve(0);
    this.pruning ??= (async () => {
      const before = new Date(now.getTime() - this.o.retentionHours * 3_600_000);
      let total = 0;
      for (;;) {
        const expired = sql`${inferences.createdAt} < ${before.toISOString()}`;
        const deleted = await this.database.db
          .delete(inferences)
          .where(sql`${inferences.id} in (select ${inferences.id} from ${inferences} where ${expired} order by ${inferences.createdAt} limit ${PRUNE_BATCH})`)
          .returning({ id: inferences.id });
        total += deleted.length;
        if (deleted.length < PRUNE_BATCH || this.closed) break;
      }
      if (total) this.logger.info({ deleted: total, before }, 'old inference records deleted');
      return total;
    })().finally(() => {
      this.pruning = undefined;
    });
    return this.pruning;
  }

  record(row: InferenceRecord): void {
    if (this.closed) return;
    if (this.buffer.length >= this.o.maxBuffered) {
      this.stats.dropped++;
      return;
    }
    this.buffer.push(row);
    if (this.buffer.length >= this.o.maxBatch) {
      void this.flush();
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.o.flushIntervalMs);
      this.timer.unref?.();
    }
  }

  /** Whether a row with this id is still waiting in the buffer. */
  pending(id: string): boolean {
    return this.buffer.some((r) => r.id === id);
  }

  /** Writes everything buffered now (waits for a flush in progress first). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.buffer.length === 0) return;
    const rows = this.buffer;
    this.buffer = [];
    this.flushing = this.write(rows).finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
  }

  private async write(rows: InferenceRecord[]): Promise<void> {
    for (let i = 0; i < rows.length; i += this.o.maxBatch) {
      const batch = rows.slice(i, i + this.o.maxBatch);
      try {
        this.stats.batches++;
        await this.database.db.execute(insertBatch(batch));
        this.stats.written += batch.length;
      } catch (err) {
        this.stats.dropped += batch.length;
        this.logger.warn({ err, rows: batch.length }, 'could not record inferences; rows dropped');
      }
    }
  }

  /** Stores feedback on a recorded inference; returns its model and version, or undefined when unknown. */
  async feedback(id: string, score: number, label: string | null): Promise<{ modelId: string; version: string; shadow: boolean } | undefined> {
    if (this.pending(id) || this.flushing) await this.flush();
    const [row] = await this.database.db
      .update(inferences)
      .set({ feedbackScore: score, feedbackLabel: label })
      .where(eq(inferences.id, id))
      .returning({ modelId: inferences.modelId, version: inferences.version, shadow: inferences.shadow });
    return row;
  }

  /** Mean feedback score and count per version (and shadow flag) of a model. */
  async accuracy(modelId: string): Promise<Array<{ version: string; shadow: boolean; accuracy: number; samples: number }>> {
    const rows = await this.database.db
      .select({
        version: inferences.version,
        shadow: inferences.shadow,
        accuracy: sql<number>`avg(${inferences.feedbackScore})::float8`,
        samples: sql<number>`count(${inferences.feedbackScore})::int`,
      })
      .from(inferences)
      .where(sql`${inferences.modelId} = ${modelId} and ${inferences.feedbackScore} is not null`)
      .groupBy(inferences.version, inferences.shadow);
    return rows.map((r) => ({ ...r, accuracy: Number(r.accuracy), samples: Number(r.samples) }));
  }

  async close(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    await this.flush();
    this.closed = true;
    await this.pruning?.catch(() => 0);
  }
}
