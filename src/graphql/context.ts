import type { Logger } from 'pino';
import type { Principal } from '../inference/types.ts';
import type { Services } from '../services.ts';

/** One result of a shared subscription, serialised once and handed to every subscriber of its feed. */
export interface SharedPayload {
  /** The ExecutionResult as JSON. */
  readonly json: string;
  /** Its SSE `next` frame, encoded on first use and written as is to every SSE subscriber (./event-stream.ts). */
  sseFrame?: Buffer;
}

/** Per-request GraphQL context. DataLoaders are created per context by the Pothos dataloader plugin. */
export interface GraphQLContext {
  requestId: string;
  logger: Logger;
  principal?: Principal;
  services: Services;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  /** Client address (login throttling, rate limits, audit). */
  ip?: string;
  /** Request headers (lower-case). */
  headers: Record<string, string | undefined>;
  /** When authentication started and ended (epoch ms), kept only when tracing is on. */
  authSpan?: readonly [number, number];
  /**
   * Set by a transport that can write a subscription's `next` message with a payload already
   * serialised (graphql-ws, and SSE in ./event-stream.ts): shared subscriptions
   * (./shared-results.ts) then execute and serialise each event once for all their subscribers
   * and hand the same payload here.
   */
  writeNext?: (payload: SharedPayload) => void;
  /** The error to throw when a scope check fails (401 without principal, 403 otherwise). */
  unauthorized(): Error;
}
