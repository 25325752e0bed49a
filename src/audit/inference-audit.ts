import type { InferenceObserver, InferenceOutcome } from '../inference/service.ts';
import type { InferenceRequest } from '../inference/types.ts';
import type { InferenceAuditSink } from './audit-log.ts';
import type { AuditConfig } from './config.ts';
import type { AuditEntry } from './types.ts';

/**
 * The audit row of every inference call, whatever the entry point (an InferenceService observer,
 * registered after the traffic manager so the request's `inferences` row is buffered first).
 * `durable`: the answer waits for the commit (the returned promise); a full buffer fails the
 * request (MCP_STORAGE_UNAVAILABLE) in `buffered` and `durable` mode alike, never answered unrecorded.
 */
export class InferenceAudit implements InferenceObserver {
  constructor(
    private readonly mode: AuditConfig['inference'],
    private readonly sink: InferenceAuditSink,
  ) {}

  onFinished(req: InferenceRequest, o: InferenceOutcome): Promise<void> | undefined {
    if (this.mode === 'off') return undefined;
    const d = o.decision;
    const usage = o.result?.usage;
    // Built field by field (no spreads): this runs on every call.
    const details: Record<string, unknown> = { entry: req.entry, stream: req.stream, version: o.result?.version ?? (d?.version || null) };
    if (!o.ok) details.errorCode = o.errorCode ?? 'MCP_INTERNAL';
    if (usage) {
      details.promptTokens = usage.promptTokens ?? 0;
      details.completionTokens = usage.completionTokens ?? 0;
    }
    const entry: AuditEntry = {
      actor: req.principal?.id,
      actorVia: req.principal?.via,
      action: 'inference',
      target: o.result?.instanceId ?? (d?.chosen || undefined),
      model: d?.model || req.model,
      outcome: o.ok ? 'ok' : o.errorCode === 'MCP_FORBIDDEN' || o.errorCode === 'MCP_UNAUTHENTICATED' ? 'denied' : 'failed',
      ip: req.ip,
      requestId: req.id,
      latencyMs: o.latencyMs,
      details,
    };
    try {
      return this.sink.appendAudit(entry, this.mode === 'durable');
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }
}
