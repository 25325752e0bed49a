/**
 * Subscriptions end when the principal's credentials expire (`Principal.expiresAt`), over SSE and
 * WebSocket alike: the subscription gets one last result with an MCP_UNAUTHENTICATED error, then
 * completes. An envelop plugin, so every transport Yoga serves gets it.
 */
import { GraphQLError, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { McpError } from '../errors.ts';
import type { GraphQLContext } from './context.ts';

export const CREDENTIALS_EXPIRED = new McpError('MCP_UNAUTHENTICATED', 'the credentials expired; reconnect with fresh ones');

export function expiredError(): GraphQLError {
  const e = CREDENTIALS_EXPIRED;
  return new GraphQLError(e.message, { extensions: { code: e.code, http: { status: e.status } } });
}

/** Longest delay setTimeout holds (~24.8 days); a later expiry is re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Resolves at `at` (epoch ms); cancel() stops the timer. */
function alarm(at: number): { rang: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  let ring: () => void = () => undefined;
  const rang = new Promise<void>((r) => (ring = r));
  const arm = () => {
    const left = at - Date.now();
    if (left <= 0) return ring();
    timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
    timer.unref();
  };
  arm();
  return { rang, cancel: () => clearTimeout(timer) };
}

/**
 * The subscription's results until `expiresAt`; then one result with an MCP_UNAUTHENTICATED
 * error, and the end. A plain iterator (not a generator), so return() acts at once even while a
 * next() is pending.
 */
export function untilExpired(source: AsyncIterable<ExecutionResult>, expiresAt: number): AsyncGenerator<ExecutionResult> {
  const it = source[Symbol.asyncIterator]();
  const expiry = alarm(expiresAt);
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    expiry.cancel();
    void Promise.resolve(it.return?.()).catch(() => undefined);
  };
  const end = { done: true, value: undefined } as IteratorReturnResult<undefined>;
  const self = {
    async next(): Promise<IteratorResult<ExecutionResult>> {
      if (done) return end;
      const r = await Promise.race([it.next(), expiry.rang.then(() => null)]);
      if (done) return end;
      if (r === null) {
        finish();
        return { done: false, value: { errors: [expiredError()] } };
      }
      if (r.done) finish();
      return r;
    },
    async return() {
      finish();
      return end;
    },
    async throw(err: unknown) {
      finish();
      throw err;
    },
    [Symbol.asyncIterator]() {
      return self;
    },
  };
  return self as unknown as AsyncGenerator<ExecutionResult>;
}

/** The envelop plugin: wraps every subscription of a principal with an expiry. */
export function useSubscriptionExpiry(): Plugin<GraphQLContext> {
  return {
    onSubscribe({ args }) {
      const expiresAt = (args.contextValue as Partial<GraphQLContext>).principal?.expiresAt;
      if (expiresAt === undefined) return;
      return {
        onSubscribeResult({ result, setResult }) {
          if (typeof (result as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function') return;
          setResult(untilExpired(result as AsyncIterable<ExecutionResult>, expiresAt));
        },
      };
    },
  };
}
