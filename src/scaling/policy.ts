/**
 * A model version's scaling policy (GraphQL `setScalingPolicy`, stored in scaling_policies): which
 * scaler plugin decides and with what options, the bounds, whether zero is allowed, the host's
 * stabilisation against flapping, and which actuator applies the decisions.
 */
import { z } from 'zod';

export const scalingPolicySchema = z
  .strictObject({
    /**
     * Name of a configured scaler plugin (`target-ongoing`, `kpa`, `slo`, or a third-party one). Its options are
     * the plugin entry's: configure one entry per option set (`plugins: [{ use: kpa, name: kpa-fast, options: {...} }]`).
     */
    scaler: z.string().min(1).max(128),
    /** Fewest instances (0 only with scaleToZero). */
    minInstances: z.number().int().min(0).max(1000).default(1),
    /** Most instances. */
    maxInstances: z.number().int().min(1).max(1000).default(4),
    /** Whether the version may go to zero instances; requests then wait (bounded by holdMs) for the first one. */
    scaleToZero: z.boolean().default(false),
    /** How long a request waits for the first instance when the version is at zero, ms; then MCP_SCALE_FROM_ZERO_TIMEOUT. */
    holdMs: z.number().int().min(0).max(600_000).default(60_000),
    /** Scale-up stabilisation window, ms: the lowest recommendation over it is applied (0: at once). */
    scaleUpStabilizationMs: z.number().int().min(0).max(3_600_000).default(0),
    /** Scale-down stabilisation window, ms: the highest recommendation over it is applied. */
    scaleDownStabilizationMs: z.number().int().min(0).max(3_600_000).default(60_000),
    /** Least time between two changes in opposite directions, ms (no up-down-up flapping). */
    reverseCooldownMs: z.number().int().min(0).max(3_600_000).default(30_000),
    /** How long samples are kept for the scaler's windows, ms. */
    historyMs: z.number().int().min(1_000).max(3_600_000).default(900_000),
    /** Actuator name (`instances`, or one configured under scaling.actuators) and its options for this version. */
    actuator: z
      .strictObject({
        name: z.string().min(1).max(128).default('instances'),
        options: z.record(z.string(), z.unknown()).default({}),
      })
      .prefault({}),
    /** Drain time for an instance going away, ms: its in-flight requests finish first. */
    drainMs: z.number().int().min(0).max(600_000).default(30_000),
  })
  .refine((p) => p.minInstances <= p.maxInstances, { message: 'minInstances must be at most maxInstances', path: ['minInstances'] })
  .refine((p) => p.scaleToZero || p.minInstances >= 1, { message: 'minInstances 0 needs scaleToZero: true', path: ['minInstances'] });

export type ScalingPolicy = z.infer<typeof scalingPolicySchema>;
export type ScalingPolicyInput = z.input<typeof scalingPolicySchema>;
