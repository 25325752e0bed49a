/**
 * Who may act as which worker. A worker credential (permission `workers:register`, bound to one
 * worker by `Principal.worker`) may register, heartbeat, deregister, fetch its call token and read
 * the commands of that worker only. An operator (`workers:manage`) may act as any worker. Anything
 * else is MCP_FORBIDDEN, with an `authz.denied` audit entry.
 */
import { can } from '../auth/permissions.ts';
import type { AuditRecorder } from '../audit/types.ts';
import { McpError } from '../errors.ts';
import type { Principal } from '../inference/types.ts';
import type { Logger } from 'pino';
import { workerIdOf } from './worker-registry.ts';

export type WorkerAction = 'register' | 'heartbeat' | 'deregister' | 'call-token' | 'commands';

export interface WorkerAccessContext {
  principal?: Principal;
  requestId: string;
  logger: Logger;
  services: { audit: AuditRecorder };
}

/** Why the principal may not act as this worker, or undefined when it may. */
export function workerAccessRefusal(principal: Principal | undefined, workerId: string): string | undefined {
  if (!principal) return 'no credentials';
  if (can(principal, 'workers:manage')) return undefined;
  if (!can(principal, 'workers:register')) return 'the credential lacks workers:register';
  if (principal.worker === undefined) return 'the credential is not bound to a worker';
  if (workerIdOf(principal.worker) !== workerId) return `the credential belongs to worker "${workerIdOf(principal.worker)}"`;
  return undefined;
}

/** Throws MCP_FORBIDDEN (after an `authz.denied` audit entry) unless the principal may act as this worker. */
export async function requireWorkerAccess(ctx: WorkerAccessContext, workerName: string, action: WorkerAction): Promise<void> {
  const workerId = workerIdOf(workerName);
  const why = workerAccessRefusal(ctx.principal, workerId);
  if (why === undefined) return;
  const p = ctx.principal;
  ctx.logger.warn({ principal: p?.id, worker: workerId, action, requestId: ctx.requestId }, `worker ${action} refused: ${why}`);
  await ctx.services.audit
    .record({
      ...(p ? { actor: p.id, actorVia: p.via } : {}),
      action: 'authz.denied',
      target: `worker:${workerId}`,
      outcome: 'denied',
      requestId: ctx.requestId,
      details: { operation: `worker.${action}`, reason: why },
    })
    .catch((err: unknown) => ctx.logger.error({ err }, 'audit record failed'));
  throw new McpError('MCP_FORBIDDEN', `may not act as worker "${workerId}": ${why}`, { details: { worker: workerId } });
}

/** Records an audit entry for a worker operation by the context's principal (a failure to record is logged, not thrown). */
export async function auditWorker(
  ctx: WorkerAccessContext,
  entry: { action: string; target: string; outcome?: 'ok' | 'denied' | 'failed'; model?: string; details?: Record<string, unknown> },
): Promise<void> {
  const p = ctx.principal;
  await ctx.services.audit
    .record({ ...(p ? { actor: p.id, actorVia: p.via } : {}), outcome: 'ok', requestId: ctx.requestId, ...entry })
    .catch((err: unknown) => ctx.logger.error({ err }, 'audit record failed'));
}
