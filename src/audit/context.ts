import { AsyncLocalStorage } from 'node:async_hooks';
import type { Principal } from '../inference/types.ts';

/** Who is acting, for audit rows written deep in a call (ModelRegistry writes the row of an admin change in its own transaction). */
export interface AuditContext {
  actor?: string;
  actorVia?: string;
  ip?: string;
  requestId?: string;
}

const store = new AsyncLocalStorage<AuditContext>();

/** Runs `fn` with `ctx` as the acting context of every audit row written inside it. */
export function runWithAuditContext<T>(ctx: AuditContext, fn: () => T): T {
  return store.run(ctx, fn);
}

/** The acting context, or undefined outside a request (start-up seeding, automatic canary rollback: actor `system`). */
export function currentAuditContext(): AuditContext | undefined {
  return store.getStore();
}

export function auditContextOf(principal: Principal | undefined, ip: string | undefined, requestId: string | undefined): AuditContext {
  return { actor: principal?.id, actorVia: principal?.via, ip, requestId };
}
