/**
 * An actuator applies a scaling decision: it owns the instances (or processes, or pods) it started for
 * a model version and brings their number to what the controller asks. Built in: `instances`
 * (instances on existing workers: through placement when the version states resource requirements,
 * else through the admin service), `local-process` (worker processes on
 * this machine) and `kubernetes` (the scale subresource of a Deployment or StatefulSet).
 */
import { McpError } from '../errors.ts';
import type { ZodType } from 'zod';

/** The model version an actuator acts on, with the policy's options for it. */
export interface ScalingTarget {
  model: string;
  version: string;
  /** The policy's `actuator.options`, as `checkOptions` returned them. */
  options: Record<string, unknown>;
  /** Time an instance going away gets for its in-flight requests, ms. */
  drainMs: number;
}

export interface Actuator {
  /** Name policies use. */
  readonly name: string;
  /** `instances`, `local-process` or `kubernetes`. */
  readonly type: string;
  /** Validates a policy's options for this actuator (MCP_VALIDATION_FAILED naming the path); answers them with defaults. */
  checkOptions(options: unknown): Record<string, unknown>;
  /** Instances this actuator keeps for the target now, those still starting included. */
  current(target: ScalingTarget): Promise<number>;
  /**
   * Brings the target to `desired` instances: starts what is missing (answers once started, not
   * necessarily ready) or drains and stops the surplus (answers once they are gone, after their
   * in-flight requests finished). May answer a note on how it did it (recorded with the decision's
   * reason). Throws McpError when it could not.
   */
  scaleTo(target: ScalingTarget, desired: number, signal: AbortSignal): Promise<string | void>;
  /** Stops what the actuator runs on its own (processes), at gateway shutdown. */
  close?(): Promise<void>;
}

/** Parses actuator options with a zod schema; errors name the option path under `actuator.options`. */
export function parseActuatorOptions<T>(schema: ZodType<T>, raw: unknown, actuator: string): T {
  const r = schema.safeParse(raw ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = ['actuator', 'options', ...issue.path.map(String)].join('.');
  throw new McpError('MCP_VALIDATION_FAILED', `${path}: ${issue.message} (actuator "${actuator}")`, { details: { path } });
}
