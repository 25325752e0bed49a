import { McpError } from '../errors.ts';
import type { InferenceRequest, RoutingAttempt, RoutingDecision } from '../inference/types.ts';
import type { InstanceHandle } from '../models/fleet.ts';

/** The model version a request is being routed to, as the decision reports it. */
export interface DecisionTarget {
  modelId: string;
  version: string;
  /** The traffic-split variant chosen, when a split chose it. */
  variant?: string;
  /** The variant the split assigned, when all its instances were unhealthy and another served. */
  diverted?: string;
  balancerName: string;
  pool: readonly InstanceHandle[];
}

/**
 * The routing decision while it takes shape: the current target, the attempts, the fallbacks
 * tried, the balancer's scores, hedging and shadow. decision() gives the account the router
 * returns on success (Routed.decision) and attaches to its failure (RoutingFailure.decision).
 */
export class DecisionTrace {
  readonly attempts: RoutingAttempt[] = [];
  readonly fallbacks: string[] = [];
  target: DecisionTarget | undefined;
  hedged = false;
  shadow: string | undefined;
  private readonly scores: Record<string, number> = {};

  constructor(
    private readonly req: InferenceRequest,
    private readonly stateOf: (h: InstanceHandle) => string,
  ) {}

  /** Keeps a pick's per-candidate scores (shown with explain). */
  scored(scores: Record<string, number> | undefined): void {
    if (scores) Object.assign(this.scores, scores);
  }

  /** The decision, `chosen` being the instance that answered ('' when none did). */
  decision(chosen: string): RoutingDecision {
    const t = this.target;
    // Observers need model/version/variant/chosen only; the per-candidate account is built when asked for.
    const candidates = this.req.explain ? (t?.pool ?? []).map((c) => ({ instanceId: c.id, score: this.scores[c.id], state: this.stateOf(c) })) : [];
    const d: RoutingDecision = {
      model: t?.modelId ?? this.req.model,
      version: t?.version ?? '',
      variant: t?.variant,
      balancer: t?.balancerName ?? '',
      candidates,
      chosen,
      attempts: this.attempts,
      fallbacks: this.fallbacks,
    };
    if (this.hedged) d.hedged = true;
    if (this.shadow) d.shadow = this.shadow;
    if (t?.diverted) d.diverted = t.diverted;
    return d;
  }
}

/**
 * The error of a request the router could not serve, carrying the decision behind it for the
 * inference observers. Clients see the code, message and details only; the decision is in
 * `details.routing` when the request asked for `explain`.
 */
export class RoutingFailure extends McpError {
  declare readonly decision: RoutingDecision;

  constructor(error: McpError, decision: RoutingDecision, details: Record<string, unknown> | undefined) {
    super(error.code, error.message, { details, retryable: error.retryable, mayHaveExecuted: error.mayHaveExecuted, status: error.status, cause: error.cause });
    // Not enumerable: kept out of logged error objects.
    Object.defineProperty(this, 'decision', { value: decision, enumerable: false });
  }
}
