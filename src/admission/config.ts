import { z } from 'zod';
import { PRIORITY_NAMES } from './priority.ts';

const priority = z.enum(PRIORITY_NAMES);

/** One model version's admission policy; every field optional in `models` (the rest from `defaults`). */
const policyShape = {
  /**
   * Requests running at once per ready instance, across the gateway replicas (capacity = ready
   * instances × this; each replica admits its share, ./replica-share.ts). 0: no limit,
   * no queue (today's behaviour, and the default).
   */
  maxConcurrentPerInstance: z.number().int().min(0).max(100_000),
  /** Requests waiting at most (all priorities); a full queue refuses with 429. */
  maxQueueSize: z.number().int().min(0).max(1_000_000),
  /** Longest wait in the queue, ms; a request may ask for less (`x-mcp-queue-timeout-ms`). */
  queueTimeoutMs: z.number().int().min(1).max(3_600_000),
  /**
   * What a request whose queue timeout passes gets (Triton's timeout_action): `reject` (503
   * MCP_QUEUE_TIMEOUT) or `delay` (stays queued behind every request that has not timed out, until its deadline).
   */
  timeoutAction: z.enum(['reject', 'delay']),
  /** Refuse at once a request whose deadline cannot be met given the current wait estimate. */
  deadlineShedding: z.boolean(),
};

export const admissionPolicySchema = z.strictObject({
  maxConcurrentPerInstance: policyShape.maxConcurrentPerInstance.default(0),
  maxQueueSize: policyShape.maxQueueSize.default(1000),
  queueTimeoutMs: policyShape.queueTimeoutMs.default(30_000),
  timeoutAction: policyShape.timeoutAction.default('reject'),
  deadlineShedding: policyShape.deadlineShedding.default(true),
});
export type AdmissionPolicy = z.infer<typeof admissionPolicySchema>;

const partialPolicySchema = z.strictObject({
  maxConcurrentPerInstance: policyShape.maxConcurrentPerInstance.optional(),
  maxQueueSize: policyShape.maxQueueSize.optional(),
  queueTimeoutMs: policyShape.queueTimeoutMs.optional(),
  timeoutAction: policyShape.timeoutAction.optional(),
  deadlineShedding: policyShape.deadlineShedding.optional(),
});

const idKey = z.string().min(1).max(256);

/**
 * Admission queues per model version (src/admission): a concurrency limit per instance, a
 * bounded queue with priority levels, weighted fair queuing across tenants, queue timeouts
 * (REJECT/DELAY) and deadline-aware shedding. With no ready instance admission steps aside
 * (scale from zero is the router's cold-start hold: the scaling policy's `holdMs`).
 */
export const admissionConfigSchema = z
  .strictObject({
    /** Policy of every model version not listed in `models`. */
    defaults: admissionPolicySchema.prefault({}),
    /** Per model (`model-id`) or model version (`model-id@version`, wins over the model's entry): fields that differ from `defaults`. */
    models: z.record(idKey, partialPolicySchema).default({}),
    /** Who shares fairly: each principal, each API key (other principals by id), or a team (claim `teamClaim`, else the principal). */
    tenantBy: z.enum(['principal', 'apiKey', 'team']).default('principal'),
    /** The principal claim that names its team (tenantBy: team). */
    teamClaim: z.string().min(1).max(64).default('team'),
    /** Tenant → weight in weighted fair queuing (default 1): a tenant of weight 2 gets twice the share of a tenant of weight 1. */
    weights: z.record(idKey, z.number().positive().max(1000)).default({}),
    /** Priority of a request that asks for none. */
    defaultPriority: priority.default('normal'),
    /** The best priority a principal may use: by principal/API key id, else the best of its roles, else `default`. */
    maxPriority: z
      .strictObject({
        default: priority.default('normal'),
        roles: z.record(idKey, priority).default({ admin: 'critical', operator: 'high' }),
        principals: z.record(idKey, priority).default({}),
      })
      .prefault({}),
    /** Tenants with their own metrics label per model version; the rest are summed as `other`. */
    metricsMaxTenants: z.number().int().min(0).max(1000).default(20),
  })
  .prefault({});
export type AdmissionConfig = z.infer<typeof admissionConfigSchema>;
