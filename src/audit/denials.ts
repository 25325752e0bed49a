import type { Principal } from '../inference/types.ts';
import type { AuditRecorder } from './types.ts';

export interface Denial {
  /** The principal refused (403), or none (401). */
  principal?: Principal;
  ip?: string;
  requestId?: string;
  /** Entry point: rest, openai, kserve, websocket, worker, graphql. */
  entry: string;
  /** What was refused: `POST /v1/chat/completions`, `graphql:deleteModel`, `model:chat`, … */
  target: string;
  /** MCP_UNAUTHENTICATED or MCP_FORBIDDEN. */
  code: string;
  model?: string;
}

/**
 * Records an authorization denial (`authz.denied`, outcome `denied`). Never throws and never
 * waits: a denial is answered at once whatever the log's state (a full buffer is counted and
 * logged by the log). GraphQL denials are recorded by useAuditLog; the HTTP server records the
 * 401/403 answers of REST, OpenAI and KServe; the WebSocket and worker paths call this where they refuse.
 */
export function recordDenial(audit: AuditRecorder, d: Denial): void {
  audit
    .record({
      actor: d.principal?.id,
      actorVia: d.principal?.via,
      action: 'authz.denied',
      target: d.target,
      model: d.model,
      outcome: 'denied',
      ip: d.ip,
      requestId: d.requestId,
      details: { entry: d.entry, code: d.code },
    })
    .catch(() => {});
}
