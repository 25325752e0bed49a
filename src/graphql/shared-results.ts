import type { Plugin } from '@envelop/core';
import { createSourceEventStream, execute, getOperationAST, type DocumentNode, type ExecutionArgs, type ExecutionResult } from 'graphql';
import type { GraphQLContext } from './context.ts';

/**
 * Subscriptions whose events are shared objects and whose result depends only on the event, the
 * document and the variables (not on the subscriber): `metricsUpdates` snapshots, the same object
 * for every subscriber of a filter, the filter already resolved for the principal when it subscribed.
 */
const SHARED_FIELDS = new Set(['metricsUpdates']);

type Results = Map<DocumentNode, Map<string, Promise<ExecutionResult>>>;

function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === 'object' && v !== null && Symbol.asyncIterator in v;
}

/**
 * Executes the selection of a shared subscription once per event, document and variables, and
 * hands the same result to every subscriber (5,000 subscribers of one snapshot: one execution,
 * not 5,000). Other operations are left alone.
 */
export function useSharedSubscriptionResults(): Plugin<GraphQLContext> {
  const byEvent = new WeakMap<object, Results>();
  return {
    onSubscribe({ args, setSubscribeFn }) {
      const op = getOperationAST(args.document, args.operationName);
      const only = op?.operation === 'subscription' && op.selectionSet.selections.length === 1 ? op.selectionSet.selections[0] : undefined;
      if (only?.kind !== 'Field' || !SHARED_FIELDS.has(only.name.value)) return;
      setSubscribeFn(async (a: ExecutionArgs) => {
        const stream = await createSourceEventStream(a);
        if (!isAsyncIterable(stream)) return stream;
        const key = JSON.stringify([a.variableValues ?? null, a.operationName ?? null]);
        const resultOf = (event: unknown): Promise<ExecutionResult> => {
          if (typeof event !== 'object' || event === null) return Promise.resolve(execute({ ...a, rootValue: event }));
          let docs = byEvent.get(event);
          if (!docs) byEvent.set(event, (docs = new Map()));
          let results = docs.get(a.document);
          if (!results) docs.set(a.document, (results = new Map()));
          let r = results.get(key);
          if (!r) results.set(key, (r = Promise.resolve(execute({ ...a, rootValue: event }))));
          return r;
        };
        return (async function* () {
          for await (const event of stream) yield await resultOf(event);
        })();
      });
    },
  };
}
