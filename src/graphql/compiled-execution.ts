import { useGraphQlJit } from '@envelop/graphql-jit';
import type { Plugin } from '@envelop/core';
import { getOperationAST, type DocumentNode } from 'graphql';
import { getVariableValues } from 'graphql/execution/values.js';

/**
 * Runs repeated queries and mutations through graphql-jit: a document is compiled into a function
 * the second time it runs (one-off documents, and those too large for the document cache, which are
 * parsed anew each time, stay on graphql-js and cost no compilation). A compiled document lives as
 * long as its parsed document (a WeakMap), so the byte-bounded document cache bounds them too.
 * Subscriptions stay on graphql-js, and so do requests whose variables do not coerce: graphql-js
 * words those errors better (it names the variable), and the answer is the same on every path.
 */
export function useCompiledExecution(): Plugin {
  const runs = new WeakMap<DocumentNode, number>();
  return useGraphQlJit(
    {},
    {
      enableIf: ({ schema, document, operationName, variableValues }) => {
        const n = (runs.get(document) ?? 0) + 1;
        if (n <= 2) runs.set(document, n);
        if (n < 2) return false;
        const operation = getOperationAST(document, operationName);
        if (!operation || operation.operation === 'subscription') return false;
        const defs = operation.variableDefinitions ?? [];
        return defs.length === 0 || getVariableValues(schema, defs, variableValues ?? {}, { maxErrors: 1 }).errors === undefined;
      },
      onError: () => {},
    },
  );
}
