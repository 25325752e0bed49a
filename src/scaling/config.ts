import { z } from 'zod';

/** One actuator configured for the gateway (policies name it); options are the actuator type's. */
export const actuatorConfigSchema = z.strictObject({
  /** Name policies use (`actuator.name`). */
  name: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'lower-case letters, digits and "-"'),
  /** `local-process` (worker processes on this machine) or `kubernetes` (the scale subresource). */
  type: z.enum(['local-process', 'kubernetes']),
  /** The type's options (src/scaling/actuators/<type>.ts documents them). */
  options: z.record(z.string(), z.unknown()).default({}),
});

/** Config `scaling`: the controller loop and the actuators beyond the built-in `instances`. */
export const scalingConfigSchema = z
  .strictObject({
    /** Run the scaling controller (on one replica at a time). */
    enabled: z.boolean().default(true),
    /** Tick of the controller: signals are sampled and scalers asked this often, ms. */
    intervalMs: z.number().int().min(50).max(600_000).default(1_000),
    /** Leader lease (`scaling-controller`) time to live and renewal period, ms. */
    leaseTtlMs: z.number().int().min(500).max(600_000).default(15_000),
    leaseRenewMs: z.number().int().min(100).max(600_000).default(5_000),
    /** Decisions kept per model version (older ones are deleted). */
    historyLimit: z.number().int().min(10).max(100_000).default(500),
    /** Requests held at once per version while it scales from zero; more are refused with MCP_QUEUE_FULL. */
    maxHeld: z.number().int().min(0).max(100_000).default(1_000),
    actuators: z.array(actuatorConfigSchema).max(32).default([]),
  })
  .refine((s) => s.leaseRenewMs < s.leaseTtlMs, { message: 'leaseRenewMs must be below leaseTtlMs', path: ['leaseRenewMs'] })
  .prefault({});
export type ScalingConfig = z.infer<typeof scalingConfigSchema>;
