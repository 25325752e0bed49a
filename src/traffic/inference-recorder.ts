import { eq, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/client.ts';
import { inferences } from '../db/schema.ts';
import { appendInTransaction } from '../audit/chain.ts';
import { GroupCommit, type JournalStats } from '../audit/group-commit.ts';
import { copyRecords, recordsInsert, type InferenceRecord } from './record-rows.ts';
import type { AuditEntry } from '../audit/types.ts';
import { sqlStateOf } from '../db/storage-errors.ts';

/** SQLSTATE unique_violation. */
const UNIQUE_VIOLATION = '23505';

export type { InferenceRecord } from './record-rows.ts';

export interface InferenceRecorderOptions {
  flushIntervalMs: number;
  maxBatch: number;
  /** Records kept while the database cannot take them; beyond, new records are refused (counted, logged), never old ones dropped. */
  maxBuffered: number;
  /** Records older than this are deleted, hours; 0 keeps them. */
  retentionHours: number;
  pruneIntervalMs: number;
  /** First retry delay after a failed write, ms (default 100, doubling up to retryMaxMs, default 2000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
}

/** Rows deleted per statement when pruning, so no delete holds its locks for long. */
const PRUNE_BATCH = 5000;

/** One buffered write: an `inferences` row, or the audit row of an inference call. */
type Pending = { row: InferenceRecord; audit?: undefined } | { row?: undefined; audit: AuditEntry };

/**
 * The one writer of per-inference records: the `inferences` rows and, when `audit.inference` is
 * on, the audit entries of inference calls. Both go through one group commit (GroupCommit): one
 * transaction per batch writes the batch's `inferences` rows and appends its audit entries to the
 * chain as one batch row (appendInTransaction), so a record and its audit entry commit together. A failed write is kept and retried with
 * backoff; a full buffer refuses new records (counted, logged) and never drops old ones. A durable
 * audit append resolves when committed, and since batches commit in order, so is everything
 * recorded before it (the request's own `inferences` row included). close() writes what is left.
 */
export class InferenceRecorder {
  private readonly journal: GroupCommit<Pending>;
  private rowsWritten = 0;

  private readonly pruneTimer: ReturnType<typeof setInterval> | undefined;
  private pruning: Promise<number> | undefined;
  private closed = false;

  constructor(
    private readonly database: Database,
    private readonly o: InferenceRecorderOptions,
    private readonly logger: Logger,
  ) {
    this.journal = new GroupCommit<Pending>(
      'inference records',
      (items) => this.write(items),
      { ...o, retryBaseMs: o.retryBaseMs ?? 100, retryMaxMs: o.retryMaxMs ?? 2000, cost: (p) => ((p as Pending).row ? 1 : 0) },
      logger,
    );
    if (o.retentionHours > 0) {
      this.pruneTimer = setInterval(
        () => void this.prune().catch((err: unknown) => this.logger.warn({ err }, 'could not delete old inference records')),
        o.pruneIntervalMs,
      );
      this.pruneTimer.unref?.();
    }
  }

  /** `inferences` rows written, write transactions, failed writes (retried), records refused (buffer full); `buffered` now. */
  get stats(): JournalStats {
    return { ...this.journal.stats, written: this.rowsWritten, buffered: this.journal.size };
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

  /**
   * Buffers an `inferences` row; false when the buffer is full and the row was refused (counted in
   * stats.refused and logged; the inference audit, when on, fails the request in that case).
   */
  record(row: InferenceRecord): boolean {
    try {
      this.journal.push({ row });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Buffers the audit row of an inference call behind the records already buffered. Durable: resolves
   * once it (and everything buffered before it) is committed. Throws when the buffer is full.
   */
  appendAudit(entry: AuditEntry, durable: boolean): Promise<void> | undefined {
    return durable ? this.journal.push({ audit: entry }, true) : this.journal.push({ audit: entry });
  }

  /** Whether a row with this id is still waiting to be written. */
  pending(id: string): boolean {
    return this.journal.has((p) => p.row?.id === id);
  }

  /** Writes everything buffered now; rejects when the database refuses (the records stay buffered and are retried). */
  flush(): Promise<void> {
    return this.journal.flush();
  }

  private async write(items: Pending[]): Promise<void> {
    const rows: InferenceRecord[] = [];
    const audits: AuditEntry[] = [];
    for (const p of items) {
      if (p.row) rows.push(p.row);
      else audits.push(p.audit);
    }
    const bulk = this.database.bulk;
    if (bulk && rows.length) {
      // The embedded database: the records by COPY, which PGlite takes for far less CPU per row than an INSERT.
      try {
        if (audits.length === 0) await copyRecords(bulk.copy, rows);
        else
          await bulk.transaction(async (tx, copy) => {
            await copyRecords(copy, rows);
            await appendInTransaction(tx, audits);
          });
        this.rowsWritten += rows.length;
        return;
      } catch (err) {
        // A record's id is its request's, which a client may choose (X-Request-Id): one id twice fails COPY, which
        // has no ON CONFLICT, and would fail it on every retry. The batch (rolled back whole) goes in by INSERT
        // instead, which keeps the first record of an id, as on PostgreSQL.
        if (sqlStateOf(err) !== UNIQUE_VIOLATION) throw err;
        this.logger.warn({ records: rows.length }, 'inference records: a request id came twice; this batch is written by INSERT, which keeps the first');
      }
    }
    if (audits.length === 0) await this.database.db.execute(recordsInsert(rows));
    // The records' INSERT goes with the audit chain's reservation, in one statement (a round trip less).
    else await this.database.db.transaction((tx) => appendInTransaction(tx, audits, { alongside: rows.length ? recordsInsert(rows) : undefined }));
    this.rowsWritten += rows.length;
  }

  /** Stores feedback on a recorded inference; returns its model and version, or undefined when unknown. */
  async feedback(id: string, score: number, label: string | null): Promise<{ modelId: string; version: string; shadow: boolean } | undefined> {
    if (this.pending(id)) await this.flush();
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
    this.closed = true;
    await this.journal.close();
    await this.pruning?.catch(() => 0);
  }
}
