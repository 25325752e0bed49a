import { z } from 'zod';

/** `audit`: the append-only, hash-chained audit log. */
export const auditConfigSchema = z.strictObject({}).prefault({});
export type AuditConfig = z.output<typeof auditConfigSchema>;
