/**
 * The one request and result shape every entry point (GraphQL, REST, OpenAI, KServe v2)
 * converts to, and every backend plugin receives. Keep it protocol-neutral.
 *
 * The input side (tasks, tensor datatypes, tensors, chat messages, parameters and the input
 * itself, a union on `task`) is inferred from the zod schemas in ./schema.ts that every entry
 * point validates against; it is re-exported here under the names plugins import.
 */
import type { LimitPolicyState } from '../limits/headers.ts';
import type { InferenceTrace } from '../tracing/inference-trace.ts';
import type { InferenceInput, Tensor } from './schema.ts';

export { CHAT_ROLES, TASKS, TENSOR_DATATYPES } from './schema.ts';
export type { ChatMessage, GenerationParameters, InferenceInput, InferenceInputOf, InferenceTask, Tensor, TensorDatatype, TensorValue } from './schema.ts';

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface InferenceOutput {
  text?: string;
  finishReason?: FinishReason;
  tensors?: Tensor[];
  embeddings?: number[][];
  usage?: Usage;
}

/** One piece of a streamed answer. */
export interface InferenceChunk {
  /** Text produced since the previous chunk. */
  text: string;
  /** Present on the last chunk only. */
  finishReason?: FinishReason;
  usage?: Usage;
}

/** Who is asking; produced by auth strategies. */
export interface Principal {
  id: string;
  /** How the principal authenticated: plugin name. */
  via: string;
  roles: string[];
  /** Models the principal may use (an API key for model A cannot call model B); undefined: every model. */
  models?: readonly string[];
  /** A worker credential names the one worker it may act as (register, heartbeat, deregister, serve assigned models). */
  worker?: string;
  /** When the credential stops being valid (epoch ms): subscriptions end then. */
  expiresAt?: number;
  /** Free-form claims (tenant, plan, …) for policies. */
  claims?: Record<string, unknown>;
}

/** A gateway-level request: what an entry point hands to the InferenceService. */
export interface InferenceRequest {
  /** Unique id, also the request id in logs. */
  id: string;
  /** Model id; a version may be pinned. */
  model: string;
  version?: string;
  input: InferenceInput;
  stream: boolean;
  /** Absolute deadline, ms since epoch. */
  deadline?: number;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  principal?: Principal;
  /** Client address (rate limits per IP, audit rows). */
  ip?: string;
  /** Called once the call is admitted by the rate limits that apply to it, with their state (HTTP entry points set RateLimit headers). */
  onLimits?: (policies: readonly LimitPolicyState[]) => void;
  /** Called once with what the response cache did (hit, miss, bypass) when the model has one (HTTP entry points set x-mcp-cache). */
  onCache?: (outcome: 'hit' | 'miss' | 'bypass') => void;
  /** Key for sticky routing (header, principal or prompt prefix, chosen by the router config). */
  affinityKey?: string;
  /** Lower-cased request headers, when the entry point passes them (sticky traffic splits by header). */
  headers?: Readonly<Record<string, string | string[] | undefined>>;
  /** Ask the router to return its decision. */
  explain?: boolean;
  /** Which entry point the request came in through (graphql, rest, openai, kserve). */
  entry: string;
  /** Admission priority asked for, 0 (critical) … 3 (low): header `x-mcp-priority` or a `priority` argument; capped by the principal's maximum. */
  priority?: number;
  /** Longest wait in an admission queue the request accepts, ms (header `x-mcp-queue-timeout-ms`; at most the model's queueTimeoutMs). */
  queueTimeoutMs?: number;
  /** The request's spans, when tracing is on (config `tracing`); absent otherwise, and nothing is traced. */
  trace?: InferenceTrace;
}

export interface RoutingCandidate {
  instanceId: string;
  score?: number;
  state: string;
}

export interface RoutingAttempt {
  instanceId: string;
  version: string;
  outcome: 'ok' | 'error';
  errorCode?: string;
  latencyMs: number;
}

/** The router's account of one request, returned when `explain` is asked. */
export interface RoutingDecision {
  model: string;
  version: string;
  variant?: string;
  balancer: string;
  candidates: RoutingCandidate[];
  chosen: string;
  attempts: RoutingAttempt[];
  fallbacks: string[];
  /** A second attempt was sent to another instance after the hedging delay. */
  hedged?: boolean;
  /** Version that received a mirrored (shadow) copy of this request. */
  shadow?: string;
  /**
   * Variant the traffic split assigned this request to, when every instance of it was unhealthy,
   * ejected or had an open circuit, so the request went to another ready variant instead.
   */
  diverted?: string;
}

export interface InferenceResult extends InferenceOutput {
  id: string;
  model: string;
  version: string;
  instanceId: string;
  latencyMs: number;
  runtime?: string;
  routing?: RoutingDecision;
}
