import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Database } from '../db/client.ts';
import { appendInTransaction, listAudit, verifyChain, type AuditFilter, type AuditPage, type ChainVerdict } from './chain.ts';
import type { AuditConfig } from './config.ts';
import { GroupCommit, type JournalStats } from './group-commit.ts';
import type { AuditEntry, AuditRecorder } from './types.ts';

/** Where the audit rows of inference calls go (InferenceRecorder: with the `inferences` rows, in the same transaction). */
export interface InferenceAuditSink {
  appendAudit(entry: AuditEntry, durable: boolean): Promise<void> | undefined;
  readonly stats: JournalStats;
}

/**
 * The audit log: events other than inference calls (logins, denials, mutations, key and user
 * changes) are group-committed here, hash-chained (chain.ts) under the chain lock, kept and
 * retried when the database fails, refused when the buffer is full. Admin changes write their
 * row in their own transaction instead (appendInTransaction, from ModelRegistry). Inference calls'
 * entries go with the inference records (InferenceAuditSink) when recording is on, here otherwise;
 * either way each write appends them as one batch row (chain.ts).
 */
export class AuditLog implements AuditRecorder, InferenceAuditSink {
  private readonly journal: GroupCommit<AuditEntry>;

  constructor(
    private readonly database: Database,
    readonly config: AuditConfig,
    logger: Logger,
    metrics: Registry,
    /** The inference records' writer, whose buffer carries the inference audit rows (when recording is on). */
    private readonly inferenceSink?: InferenceAuditSink,
  ) {
    this.journal = new GroupCommit<AuditEntry>(
      'audit log',
      (entries) => this.database.db.transaction(async (tx) => void (await appendInTransaction(tx, entries))),
      config,
      logger,
    );
    this.registerMetrics(metrics);
  }

  get stats(): JournalStats {
    return { ...this.journal.stats, buffered: this.journal.size };
  }

  record(entry: AuditEntry, opts: { durable?: boolean } = {}): Promise<void> {
    try {
      return opts.durable ? this.journal.push(entry, true) : (this.journal.push(entry), Promise.resolve());
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** InferenceAuditSink, used when inference recording is off: inference audit rows share this buffer. */
  appendAudit(entry: AuditEntry, durable: boolean): Promise<void> | undefined {
    return durable ? this.journal.push(entry, true) : this.journal.push(entry);
  }

  /** The sink inference audit rows go to: the inference records' buffer when recording is on. */
  get inferenceAudit(): InferenceAuditSink {
    return this.inferenceSink ?? this;
  }

  /** Writes what is buffered now (tests, shutdown). */
  flush(): Promise<void> {
    return this.journal.flush();
  }

  verify(opts: { fromId?: number; limit?: number } = {}): Promise<ChainVerdict> {
    return verifyChain(this.database.db, opts);
  }

  list(filter: AuditFilter, page: { first?: number; after?: string }): Promise<AuditPage> {
    return listAudit(this.database.db, filter, page);
  }

  close(): Promise<void> {
    return this.journal.close();
  }

  private registerMetrics(registry: Registry): void {
    const buffers = () => {
      const out: Array<[string, JournalStats]> = [['audit', this.stats]];
      if (this.inferenceSink) out.push(['inferences', this.inferenceSink.stats]);
      return out;
    };
    type Stats = ReturnType<typeof buffers>[number][1];
    new Gauge({
      name: 'mcp_audit_buffered',
      help: 'Records waiting to be written (audit events; inference records with their audit rows).',
      labelNames: ['buffer'],
      registers: [registry],
      collect() {
        for (const [buffer, s] of buffers()) this.set({ buffer }, s.buffered);
      },
    });
    // Running totals kept by the buffers, exposed as counters (read at scrape time).
    const counter = (name: string, help: string, pick: (s: Stats) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['buffer'],
        registers: [registry],
        collect() {
          this.reset();
          for (const [buffer, s] of buffers()) this.inc({ buffer }, pick(s));
        },
      });
    counter('mcp_audit_written_total', 'Rows written since start (audit: audit rows; inferences: inference records).', (s) => s.written);
    counter('mcp_audit_write_failures_total', 'Failed group-commit writes since start (their rows were kept and retried).', (s) => s.failedWrites);
    counter('mcp_audit_refused_total', 'Records refused since start because the buffer was full (the request failed with 503).', (s) => s.refused);
    counter(
      'mcp_audit_rejected_total',
      'Records the database refused on their own since start (a data or constraint error), dropped so the records behind them were written.',
      (s) => s.rejected,
    );
  }
}
