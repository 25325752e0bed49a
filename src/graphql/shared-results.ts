import type { Plugin } from '@envelop/core';
import {
  createSourceEventStream,
  execute,
  getOperationAST,
  GraphQLError,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type OperationDefinitionNode,
} from 'graphql';
import type { Counter, Registry } from 'prom-client';
import { sharedCounter } from '../sdk/shared-metrics.ts';
import type { GraphQLContext, SharedPayload } from './context.ts';

/**
 * Subscriptions whose events are shared objects and whose result depends only on the event, the
 * document and the variables (not on the subscriber): `metricsUpdates` snapshots, the same object
 * for every subscriber of a filter, the filter already resolved for the principal when it subscribed.
 */
const SHARED_FIELDS = new Set(['metricsUpdates']);

/** Whether an operation is a shared subscription (one field, in SHARED_FIELDS): what useSharedSubscriptionResults takes over. */
export function isSharedSubscription(op: OperationDefinitionNode | null | undefined): boolean {
  const only = op?.operation === 'subscription' && op.selectionSet.selections.length === 1 ? op.selectionSet.selections[0] : undefined;
  return only?.kind === 'Field' && SHARED_FIELDS.has(only.name.value);
}

/** Shared snapshots a slow subscriber skipped (its transport had not sent the ones before), by transport. */
export function snapshotsSkipped(registry: Registry): Counter<'transport'> {
  return sharedCounter(
    registry,
    'mcp_metrics_snapshots_skipped_total',
    'metricsUpdates snapshots not written to a subscriber whose connection had not sent the previous ones (a slow reader skips, never queues), by transport.',
    ['transport'],
  );
}

/** A result as JSON, its errors through `mask` as on the ordinary path. */
export function serialiseResult(r: ExecutionResult, mask: (error: unknown) => Error): string {
  if (!r.errors?.length) return JSON.stringify(r);
  const errors = r.errors.map((e) => {
    const m = mask(e);
    return m instanceof GraphQLError ? m.toJSON() : { message: m.message };
  });
  return JSON.stringify({ ...r, errors });
}

type PerEvent<T> = WeakMap<object, Map<DocumentNode, Map<string, T>>>;

/**
 * A source stream that can also push (LiveMetrics' subscriptions): after `listen`, each event
 * goes to the callback synchronously, and iterating the stream yields nothing and settles done
 * when the stream ends (return(), or the subscriber's signal aborted).
 */
interface Listenable extends AsyncIterableIterator<unknown> {
  listen(listener: (event: unknown) => void): void;
}

function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === 'object' && v !== null && Symbol.asyncIterator in v;
}

function isListenable(v: AsyncIterable<unknown>): v is Listenable {
  return typeof (v as Partial<Listenable>).listen === 'function' && typeof (v as Partial<Listenable>).next === 'function';
}

function cached<T>(map: PerEvent<T>, event: object, doc: DocumentNode, key: string, make: () => T): T {
  let docs = map.get(event);
  if (!docs) map.set(event, (docs = new Map()));
  let byKey = docs.get(doc);
  if (!byKey) docs.set(doc, (byKey = new Map()));
  let v = byKey.get(key);
  if (v === undefined) byKey.set(key, (v = make()));
  return v;
}

/**
 * Executes the selection of a shared subscription once per event, document and variables, and
 * hands the same result to every subscriber (5,000 subscribers of one snapshot: one execution,
 * not 5,000). When the transport can write pre-serialised messages (`ctx.writeNext`: graphql-ws,
 * and SSE through ./event-stream.ts) and the source can push, the result is also serialised once and written to every subscriber
 * within the tick: no execution, JSON.stringify or promise per subscriber. Errors in such a
 * result go through `mask` as they would on the ordinary path. Other operations are left alone.
 */
export function useSharedSubscriptionResults(mask: (error: unknown) => Error): Plugin<GraphQLContext> {
  const results: PerEvent<Promise<ExecutionResult>> = new WeakMap();
  const payloads: PerEvent<SharedPayload | Promise<SharedPayload>> = new WeakMap();
  const serialise = (r: ExecutionResult): SharedPayload => ({ json: serialiseResult(r, mask) });
  return {
    onSubscribe({ args, setSubscribeFn }) {
      if (!isSharedSubscription(getOperationAST(args.document, args.operationName))) return;
      setSubscribeFn(async (a: ExecutionArgs) => {
        // The field's subscribe (its permission and the principal's filter) runs per subscriber.
        const stream = await createSourceEventStream(a);
        if (!isAsyncIterable(stream)) return stream;
        const key = JSON.stringify([a.variableValues ?? null, a.operationName ?? null]);
        const run = (event: unknown) => execute({ ...a, rootValue: event });
        const write = (a.contextValue as Partial<GraphQLContext>).writeNext;
        if (write && isListenable(stream)) {
          stream.listen((event) => {
            if (typeof event !== 'object' || event === null) return;
            const payload = cached(payloads, event, a.document, key, () => {
              const r = run(event);
              return r instanceof Promise ? r.then(serialise) : serialise(r);
            });
            if (payload instanceof Promise) void payload.then(write, () => undefined);
            else write(payload);
          });
          // Yields nothing; done when the subscription ends (the transport then sends `complete`).
          return stream as AsyncIterable<never>;
        }
        const resultOf = (event: unknown): Promise<ExecutionResult> => {
          if (typeof event !== 'object' || event === null) return Promise.resolve(run(event));
          return cached(results, event, a.document, key, () => Promise.resolve(run(event)));
        };
        return (async function* () {
          for await (const event of stream) yield await resultOf(event);
        })();
      });
    },
  };
}
