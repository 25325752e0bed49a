import { z } from 'zod';
import { pluginEntrySchema } from '../config/plugin-entry.ts';
import { alertEvaluationSchema, alertRuleSchema } from './rules.ts';

/** How alert notifications reach their sinks (config `alerts.delivery`). */
export const alertDeliverySchema = z
  .strictObject({
    /** Attempts per notification and sink, the first included; then a dead-letter record. */
    maxAttempts: z.number().int().min(1).max(100).default(5),
    /** Wait before the first retry, ms; each later one waits `backoffMultiplier` times longer. */
    initialBackoffMs: z.number().int().min(1).max(3_600_000).default(1_000),
    backoffMultiplier: z.number().min(1).max(10).default(2),
    /** Longest wait between two attempts, ms. */
    maxBackoffMs: z.number().int().min(1).max(3_600_000).default(60_000),
    /** Fraction of each wait drawn at random (0: none; 0.5: between half and all of it), so replicas and sinks do not retry in lock-step. */
    jitter: z.number().min(0).max(1).default(0.5),
    /** One attempt is aborted after this, ms (the sink's own timeout may be shorter). */
    attemptTimeoutMs: z.number().int().min(10).max(600_000).default(30_000),
    /** Notifications waiting per sink; beyond this a new one is dead-lettered (`queue_full`) at once. */
    queueSize: z.number().int().min(1).max(100_000).default(1_000),
    /** At shutdown, queued notifications get this long to be delivered, ms; the rest are dead-lettered (`shutdown`). */
    drainMs: z.number().int().min(0).max(600_000).default(5_000),
  })
  .refine((d) => d.maxBackoffMs >= d.initialBackoffMs, { message: 'maxBackoffMs must be at least initialBackoffMs', path: ['maxBackoffMs'] });

export const alertsConfigSchema = z
  .strictObject({
    /**
     * Alert-sink plugins (kind `alertSink`) every alert notification goes to, like `plugins:` entries:
     * `{ use: alert-webhook, name?: ops-hook, options: {...} }`. Sinks listed under `plugins:` receive them too.
     */
    sinks: z.array(pluginEntrySchema).default([]),
    delivery: alertDeliverySchema.prefault({}),
    /** Alert rules (docs/monitoring/alerts.md); more can be made over GraphQL (`createAlertRule`). */
    rules: z.array(alertRuleSchema).max(10_000).default([]),
    /** How often rules are evaluated, the leader lease across replicas, re-sends of firing alerts, bounds. */
    evaluation: alertEvaluationSchema.prefault({}),
  })
  .prefault({});

export type AlertsConfig = z.infer<typeof alertsConfigSchema>;
export type AlertDeliveryConfig = z.infer<typeof alertDeliverySchema>;
