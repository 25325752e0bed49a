import { createClient, type Client } from 'graphql-ws';
import { expired, token } from './session.ts';

export class GraphQLRequestError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

interface GraphQLAnswer<T> {
  data?: T;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** A GraphQL query or mutation over POST /graphql with the session's access token. */
export async function gql<T>(query: string, variables?: Record<string, unknown>): Promise<T> {
  const res = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${token() ?? ''}` },
    body: JSON.stringify({ query, variables }),
  });
  if (res.status === 401) expired();
  const body = (await res.json()) as GraphQLAnswer<T>;
  const first = body.errors?.[0];
  if (first) throw new GraphQLRequestError(first.message, first.extensions?.code);
  return body.data as T;
}

let client: Client | undefined;
/** Called on every (re)connection of the WebSocket: what was missed while it was down is read again. */
const connectedListeners = new Set<() => void>();

/** Runs `listener` each time the WebSocket (re)connects; returns its remover. */
export function onConnected(listener: () => void): () => void {
  connectedListeners.add(listener);
  return () => connectedListeners.delete(listener);
}

/** One graphql-ws connection per session; connection_init carries the current access token. */
function wsClient(): Client {
  client ??= createClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`,
    connectionParams: () => ({ authorization: `Bearer ${token() ?? ''}` }),
    lazy: true,
    keepAlive: 15_000,
    retryAttempts: 1_000_000,
    shouldRetry: () => token() !== undefined,
    on: {
      connected: () => {
        for (const l of connectedListeners) l();
      },
    },
  });
  return client;
}

/**
 * Runs a subscription until the returned function is called. When the access token expires the
 * server ends the subscription; it is started again (a new connection with the refreshed token).
 */
export function subscribe<T>(query: string, variables: Record<string, unknown>, onData: (data: T) => void, onError: (message: string) => void): () => void {
  let stopped = false;
  let dispose: (() => void) | undefined;
  const start = (): void => {
    if (stopped || token() === undefined) return;
    dispose = wsClient().subscribe<T>(
      { query, variables },
      {
        next: (r) => {
          if (r.errors?.length) {
            onError(r.errors[0]!.message);
            if (r.errors.some((e) => (e.extensions as { code?: string } | undefined)?.code === 'MCP_UNAUTHENTICATED')) restart();
          } else if (r.data) onData(r.data as T);
        },
        error: (e) => {
          onError(e instanceof Error ? e.message : 'connection lost');
          restart();
        },
        complete: () => restart(),
      },
    );
  };
  const restart = (): void => {
    dispose?.();
    if (!stopped) setTimeout(start, 1000);
  };
  start();
  return () => {
    stopped = true;
    dispose?.();
  };
}

/** Closes the WebSocket (sign-out): the next subscription opens a new one with the new token. */
export function closeConnection(): void {
  void client?.dispose();
  client = undefined;
}
