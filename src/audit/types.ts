/** One audit event: who did what to which target, with what outcome. Never a secret, password or token. */
export interface AuditEntry {
  /** Principal id (or the username tried, for a failed login); undefined when anonymous. */
  actor?: string;
  /** How the actor authenticated (strategy name). */
  actorVia?: string;
  /** Dotted verb: `model.register`, `auth.login`, `apikey.create`, `authz.denied`, `worker.register`, `inference`, … */
  action: string;
  target?: string;
  model?: string;
  outcome: 'ok' | 'denied' | 'failed';
  ip?: string;
  requestId?: string;
  latencyMs?: number;
  /** Small, secret-free facts (error code, roles granted, …). Keys named like secrets are redacted, sizes capped. */
  details?: Record<string, unknown>;
}

/** Appends audit events (src/audit owns how: hash chain, group commit, durability). */
export interface AuditRecorder {
  /**
   * Appends an event. Resolves when it is buffered, or with `{ durable: true }` when it is committed.
   * Rejects with MCP_STORAGE_UNAVAILABLE (503) when the buffer is full: the caller should fail the
   * operation it audits rather than go on unrecorded.
   */
  record(entry: AuditEntry, opts?: { durable?: boolean }): Promise<void>;
}
