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
  /** Small, secret-free facts (error code, roles granted, …). */
  details?: Record<string, unknown>;
}

/** Appends audit events (src/audit owns how: hash chain, group commit, durability). */
export interface AuditRecorder {
  /** Appends an event; resolves when it is buffered (or durable, in durable mode for inference). */
  record(entry: AuditEntry): Promise<void>;
}
