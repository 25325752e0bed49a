import { z } from 'zod';

/** `audit`: the append-only, hash-chained audit log (docs/security/audit.md). */
export const auditConfigSchema = z
  .strictObject({
    /**
     * Audit rows for inference calls: `off` (none; the `inferences` usage records are still kept),
     * `buffered` (group-committed with the inference record; a kill -9 can lose the last window),
     * `durable` (the answer waits until its record and audit row are committed).
     */
    inference: z.enum(['off', 'buffered', 'durable']).default('buffered'),
    /** Group commit of audit events that are not inference calls (logins, denials, mutations): window, ms. */
    flushIntervalMs: z.number().int().positive().max(60_000).default(100),
    /** Rows per flush transaction at most. */
    maxBatch: z.number().int().min(1).max(5000).default(500),
    /** Events kept while the database cannot take them; beyond this new events are refused (503), never dropped. */
    maxBuffered: z.number().int().min(1).max(10_000_000).default(100_000),
    /** First retry delay after a failed flush, ms; doubles up to retryMaxMs. */
    retryBaseMs: z.number().int().positive().default(100),
    retryMaxMs: z.number().int().positive().default(2_000),
    /** Mutations not audited one by one (the worker heartbeat every few seconds would flood the log). */
    skipMutations: z.array(z.string()).default(['workerHeartbeat']),
  })
  .prefault({});
export type AuditConfig = z.output<typeof auditConfigSchema>;
