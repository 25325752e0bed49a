/**
 * `instances`: more or fewer instances of the version on existing workers. Two paths:
 *
 * - **placement** — the version states resource requirements (`setResourceRequirements`): scaling to
 *   N sets its replica count in placement (PlacementReconciler.setReplicas), which chooses remote
 *   workers and devices by memory, spreads the replicas, evicts idle lower-priority instances, and on
 *   scale-down drains the surplus (in-flight requests finish) before unloading it. The options'
 *   backend/source/workers are not used: the requirements say how a worker loads it.
 * - **direct** — no requirements: instances through the admin service on the embedded worker (the
 *   gateway process, which placement does not place on) by default, or remote workers named in the
 *   options, spread in turn, without regard to memory. Its instances are named
 *   `<model>-<version>-s<n>` on their worker; scale-down drains the newest first, then unloads it.
 */
import { z } from 'zod';
import type { AdminService } from '../../admin/admin-service.ts';
import { McpError } from '../../errors.ts';
import type { ModelRegistry } from '../../models/registry.ts';
import type { PlacementReconciler } from '../../resources/reconciler.ts';
import { TASKS } from '../../inference/schema.ts';
import { EMBEDDED_WORKER_ID, workerIdOf, workerInstanceId } from '../../workers/worker-registry.ts';
import { parseActuatorOptions, type Actuator, type ScalingTarget } from '../actuator.ts';

export const instancesActuatorOptions = z.strictObject({
  /** Backend plugin the new instances run on (direct path; needed for versions without resource requirements). */
  backend: z.string().min(1).max(128).optional(),
  /** Where the backend finds the model (URL of a model server, folder of a tfjs model). */
  source: z.string().min(1).max(2048).optional(),
  /** The backend's instance options. */
  options: z.record(z.string(), z.unknown()).default({}),
  device: z.string().max(64).optional(),
  task: z.enum(TASKS).default('generate'),
  /** Workers to place instances on, in turn (default: the embedded worker). */
  workers: z.array(z.string().min(1).max(63)).min(1).max(256).default([EMBEDDED_WORKER_ID]),
});
export type InstancesActuatorOptions = z.infer<typeof instancesActuatorOptions>;

const MAX_SLOTS = 1000;

/** A LOAD sent to a remote worker counts as live this long before its registration shows it, ms. */
const PENDING_MS = 60_000;

/** Beyond the drain time, how long a scale-down through placement waits for the trimmed replicas to go, ms. */
const TRIM_GRACE_MS = 15_000;

/** What the placement path needs of the reconciler. */
export type ReplicaPlacement = Pick<PlacementReconciler, 'setReplicas' | 'replicasOf'>;

export class InstancesActuator implements Actuator {
  readonly type = 'instances';
  private readonly pending = new Map<string, number>();

  constructor(
    readonly name: string,
    private readonly admin: Pick<AdminService, 'loadModelOnWorker' | 'unloadFromWorker' | 'drainInstance'>,
    private readonly registry: Pick<ModelRegistry, 'instancesByModel' | 'requireVersion'>,
    private readonly placement?: ReplicaPlacement,
  ) {}

  /** Whether the version's replicas go through placement (it states resource requirements). */
  private async placed(target: ScalingTarget): Promise<boolean> {
    return this.placement !== undefined && (await this.registry.requireVersion(target.model, target.version)).resources !== null;
  }

  checkOptions(options: unknown): Record<string, unknown> {
    return parseActuatorOptions(instancesActuatorOptions, options, this.name);
  }

  /** The slot's instance id on its worker, and the gateway's id for it. */
  private slot(target: ScalingTarget, n: number): { worker: string; remoteId: string; instanceId: string } {
    const o = target.options as InstancesActuatorOptions;
    const worker = workerIdOf(o.workers[n % o.workers.length]!);
    const remoteId = `${target.model}-${target.version}-s${n}`
      .toLowerCase()
      .replace(/[^a-z0-9._-]/g, '-')
      .slice(0, 63);
    return { worker, remoteId, instanceId: workerInstanceId(worker, remoteId) };
  }

  /** Slots whose instance exists and is not unloaded or failed. */
  private async live(target: ScalingTarget): Promise<number[]> {
    const version = await this.registry.requireVersion(target.model, target.version);
    const [rows = []] = await this.registry.instancesByModel([target.model]);
    const byId = new Map(rows.filter((r) => r.versionId === version.id).map((r) => [r.id, r.status]));
    const slots: number[] = [];
    for (let n = 0; n < MAX_SLOTS; n++) {
      const id = this.slot(target, n).instanceId;
      const status = byId.get(id);
      const until = this.pending.get(id);
      if (status && status !== 'unloaded' && status !== 'failed') {
        slots.push(n);
        if (status === 'ready') this.pending.delete(id);
      } else if (until !== undefined && until > Date.now() && status !== 'failed') slots.push(n);
      else this.pending.delete(id);
      if (slots.length >= byId.size + this.pending.size) break;
    }
    return slots;
  }

  async current(target: ScalingTarget): Promise<number> {
    if (await this.placed(target)) return (await this.placement!.replicasOf(target.model, target.version)).counted;
    return (await this.live(target)).length;
  }

  /** Answers which path it took (recorded with the decision's reason). */
  async scaleTo(target: ScalingTarget, desired: number, signal: AbortSignal): Promise<string> {
    if (await this.placed(target)) {
      await this.placement!.setReplicas(target.model, target.version, desired, { drainMs: target.drainMs });
      // scale-down answers once the surplus drained and went (the reconciler may run on another replica)
      const end = Date.now() + target.drainMs + TRIM_GRACE_MS;
      for (;;) {
        const r = await this.placement!.replicasOf(target.model, target.version);
        if (r.counted + r.leaving <= desired || signal.aborted) break;
        if (Date.now() > end) {
          throw new McpError(
            'MCP_CONFLICT',
            `${target.model}@${target.version}: ${r.counted + r.leaving} replicas still placed (${r.leaving} draining), ${desired} wanted, after ${target.drainMs + TRIM_GRACE_MS} ms`,
            {
              details: { model: target.model, version: target.version },
            },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return `through placement (replicas ${desired})`;
    }
    await this.scaleDirect(target, desired, signal);
    return 'on the named workers (no resource requirements)';
  }

  private async scaleDirect(target: ScalingTarget, desired: number, signal: AbortSignal): Promise<void> {
    const o = target.options as InstancesActuatorOptions;
    if (!o.backend) {
      throw new McpError(
        'MCP_VALIDATION_FAILED',
        `actuator.options.backend: needed for ${target.model}@${target.version}, which states no resource requirements (actuator "${this.name}")`,
        { details: { path: 'actuator.options.backend' } },
      );
    }
    const live = await this.live(target);
    const used = new Set(live);
    for (let n = 0, have = live.length; have < desired && n < MAX_SLOTS && !signal.aborted; n++) {
      if (used.has(n)) continue;
      const s = this.slot(target, n);
      this.pending.set(s.instanceId, Date.now() + PENDING_MS);
      await this.admin.loadModelOnWorker(s.worker, {
        model: target.model,
        version: target.version,
        task: o.task,
        backend: o.backend,
        options: o.options,
        instanceId: s.remoteId,
        ...(o.source ? { source: o.source } : {}),
        ...(o.device ? { device: o.device } : {}),
      });
      have++;
    }
    // newest (highest slot) first
    for (const n of live.slice(desired).reverse()) {
      if (signal.aborted) break;
      const s = this.slot(target, n);
      this.pending.delete(s.instanceId);
      await this.admin.drainInstance(s.instanceId, target.drainMs);
      await this.admin.unloadFromWorker(s.worker, s.instanceId);
    }
  }
}
