/** Scaling policies and the bounded decision history, in the database (tables scaling_policies, scaling_decisions). */
import { and, desc, eq, lt, sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { scalingDecisions, scalingPolicies } from '../db/schema.ts';
import type { ScalingPolicy } from './policy.ts';

export interface StoredPolicy {
  model: string;
  version: string;
  policy: ScalingPolicy;
  updatedAt: Date;
}

/** One decision of the controller, as recorded. */
export interface ScalingDecision {
  id: number;
  model: string;
  version: string;
  at: Date;
  fromInstances: number;
  toInstances: number;
  recommended: number;
  scaler: string;
  actuator: string;
  reason: string;
  outcome: 'applied' | 'failed';
  error: string | null;
}

export class ScalingStore {
  constructor(private readonly db: Db) {}

  async setPolicy(model: string, version: string, policy: ScalingPolicy): Promise<StoredPolicy> {
    const now = new Date();
    await this.db
      .insert(scalingPolicies)
      .values({ modelId: model, version, policy: policy as unknown as Record<string, unknown>, updatedAt: now })
      .onConflictDoUpdate({
        target: [scalingPolicies.modelId, scalingPolicies.version],
        set: { policy: policy as unknown as Record<string, unknown>, updatedAt: now },
      });
    return { model, version, policy, updatedAt: now };
  }

  async removePolicy(model: string, version: string): Promise<boolean> {
    const rows = await this.db
      .delete(scalingPolicies)
      .where(and(eq(scalingPolicies.modelId, model), eq(scalingPolicies.version, version)))
      .returning({ m: scalingPolicies.modelId });
    return rows.length > 0;
  }

  async policies(model?: string): Promise<StoredPolicy[]> {
    const rows = await this.db
      .select()
      .from(scalingPolicies)
      .where(model === undefined ? undefined : eq(scalingPolicies.modelId, model))
      .orderBy(scalingPolicies.modelId, scalingPolicies.version);
    return rows.map((r) => ({ model: r.modelId, version: r.version, policy: r.policy as unknown as ScalingPolicy, updatedAt: r.updatedAt }));
  }

  /** Records a decision (made at `at`, recorded once applied or failed) and keeps the newest `keep` of its version. */
  async record(d: Omit<ScalingDecision, 'id'>, keep: number): Promise<ScalingDecision> {
    const [row] = await this.db
      .insert(scalingDecisions)
      .values({
        modelId: d.model,
        version: d.version,
        at: d.at,
        fromInstances: d.fromInstances,
        toInstances: d.toInstances,
        recommended: d.recommended,
        scaler: d.scaler,
        actuator: d.actuator,
        reason: d.reason.slice(0, 1000),
        outcome: d.outcome,
        error: d.error?.slice(0, 1000) ?? null,
      })
      .returning();
    await this.db
      .delete(scalingDecisions)
      .where(
        and(
          eq(scalingDecisions.modelId, d.model),
          eq(scalingDecisions.version, d.version),
          lt(
            scalingDecisions.id,
            sql`(select min(id) from (select id from scaling_decisions where model_id = ${d.model} and version = ${d.version} order by id desc limit ${keep}) k)`,
          ),
        ),
      );
    return toDecision(row!);
  }

  /** Newest first. */
  async decisions(model: string, version: string | undefined, last: number): Promise<ScalingDecision[]> {
    const rows = await this.db
      .select()
      .from(scalingDecisions)
      .where(version === undefined ? eq(scalingDecisions.modelId, model) : and(eq(scalingDecisions.modelId, model), eq(scalingDecisions.version, version)))
      .orderBy(desc(scalingDecisions.id))
      .limit(last);
    return rows.map(toDecision);
  }
}

function toDecision(r: typeof scalingDecisions.$inferSelect): ScalingDecision {
  return {
    id: r.id,
    model: r.modelId,
    version: r.version,
    at: r.at,
    fromInstances: r.fromInstances,
    toInstances: r.toInstances,
    recommended: r.recommended,
    scaler: r.scaler,
    actuator: r.actuator,
    reason: r.reason,
    outcome: r.outcome as 'applied' | 'failed',
    error: r.error,
  };
}
