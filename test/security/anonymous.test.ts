/**
 * Auth is on by default: every entry point refuses an anonymous call with 401 MCP_UNAUTHENTICATED
 * (GraphQL over HTTP POST and GET, the worker protocol, WebSocket subscriptions, REST, OpenAI,
 * KServe, /metrics), while /healthz, /readyz, the KServe health probes and the GraphiQL page stay open.
 */
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startStack, type Stack } from '../entrypoints/harness.ts';

const GQL_ANON: Array<[string, string]> = [
  ['query models', '{ models { totalCount } }'],
  ['query model', '{ model(id: "chat-model") { id } }'],
  ['mutation registerModel', 'mutation { registerModel(input: { id: "x", task: GENERATE }) { id } }'],
  ['mutation deleteModel', 'mutation { deleteModel(id: "chat-model") { id } }'],
  ['mutation infer', 'mutation { infer(model: "chat-model", input: { messages: [{ role: "user", content: "hi" }] }) { text } }'],
  ['mutation setShadow', 'mutation { setShadow(model: "chat-model", version: "v1", fraction: 0.5) { id } }'],
  ['mutation createApiKey', 'mutation { createApiKey(input: { name: "k", roles: ["admin"] }) { key } }'],
  ['query users', '{ users { id } }'],
  // The worker protocol is GraphQL too.
  [
    'worker registerWorker',
    'mutation { registerWorker(input: { name: "w", endpoint: "http://127.0.0.1:1", session: "session-0123456789ab", heartbeatIntervalMs: 1000 }) { worker { id } } }',
  ],
  ['worker workerHeartbeat', 'mutation { workerHeartbeat(id: "w") { id } }'],
  ['worker deregisterWorker', 'mutation { deregisterWorker(id: "w") { id } }'],
  ['mutation removeWorker', 'mutation { removeWorker(id: "w") { id } }'],
  ['mutation loadModel', 'mutation { loadModel(id: "chat-model") { id } }'],
];

const HTTP_ANON: Array<[string, string, unknown?]> = [
  ['GET', '/api/v1/models'],
  ['GET', '/api/v1/models/chat-model'],
  ['POST', '/api/v1/models/chat-model/inference', { prompt: 'hi' }],
  ['GET', '/api/v1/metrics'],
  ['GET', '/v1/models'],
  ['GET', '/v1/models/chat-model'],
  ['POST', '/v1/chat/completions', { model: 'chat-model', messages: [{ role: 'user', content: 'hi' }] }],
  ['POST', '/v1/completions', { model: 'gen-model', prompt: 'hi' }],
  ['POST', '/v1/embeddings', { model: 'embed-model', input: 'hi' }],
  ['GET', '/v2'],
  ['GET', '/v2/models/doubler'],
  ['GET', '/v2/models/doubler/ready'],
  ['POST', '/v2/models/doubler/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] }],
  ['POST', '/v2/repository/index', {}],
  ['POST', '/v2/repository/models/doubler/load', {}],
  ['POST', '/v2/repository/models/doubler/unload', {}],
  ['GET', '/metrics'],
];

describe('anonymous callers with auth on (the default)', () => {
  let s: Stack;
  beforeAll(async () => {
    s = await startStack({ auth: {} });
  });
  afterAll(async () => s?.close());

  it.each(GQL_ANON)('GraphQL POST %s → MCP_UNAUTHENTICATED', async (_name, query) => {
    const r = await fetch(`${s.gw.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
      body: JSON.stringify({ query }),
    });
    const body = (await r.json()) as { data?: unknown; errors?: Array<{ extensions?: { code?: string } }> };
    expect(body.errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
    expect(r.status).toBe(401);
  });

  it('GraphQL GET → MCP_UNAUTHENTICATED', async () => {
    const r = await fetch(`${s.gw.url}/graphql?query=${encodeURIComponent('{ models { totalCount } }')}`, {
      headers: { accept: 'application/graphql-response+json', 'x-graphql-csrf': '1' },
    });
    const body = (await r.json()) as { errors?: Array<{ extensions?: { code?: string } }> };
    expect(body.errors?.[0]?.extensions?.code).toBe('MCP_UNAUTHENTICATED');
    expect(r.status).toBe(401);
  });

  it('the GraphiQL page loads without credentials', async () => {
    const r = await fetch(`${s.gw.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(r.status).toBe(200);
    expect(await r.text()).toContain('<html');
  });

  it('GraphQL subscriptions over SSE (workerCommands, modelEvents) → MCP_UNAUTHENTICATED', async () => {
    for (const query of ['subscription { workerCommands(workerId: "w") { id } }', 'subscription { modelEvents { modelId } }']) {
      const ctl = new AbortController();
      const r = await fetch(`${s.gw.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ query }),
        signal: ctl.signal,
      });
      const reader = r.body!.getReader();
      let text = '';
      for (let i = 0; i < 20 && !text.includes('MCP_'); i++) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      ctl.abort();
      expect(text).toContain('MCP_UNAUTHENTICATED');
    }
  });

  it('a WebSocket subscription without credentials is refused', async () => {
    const client = createClient({ url: `${s.gw.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    try {
      const outcome = await new Promise<unknown>((resolve) => {
        client.subscribe({ query: 'subscription { modelEvents { modelId } }' }, { next: resolve, error: resolve, complete: () => resolve('complete') });
      });
      // graphql-ws hands the close event to `error`: the server closes with 4401 before any subscription is set up.
      const code = (outcome as { code?: number }).code;
      expect(code ?? JSON.stringify(outcome)).toBe(4401);
      // The refusal is in the audit log.
      const admin = await s.gw.login();
      await vi.waitFor(
        async () => {
          const r = await s.gw.gql<{ auditLog: { nodes: Array<{ target: string; outcome: string }> } }>(
            '{ auditLog(filter: { action: "authz.denied" }, first: 50) { nodes { target outcome } } }',
            {},
            admin,
          );
          expect(r.data?.auditLog.nodes).toContainEqual({ target: 'websocket:connection_init', outcome: 'DENIED' });
        },
        { timeout: 10_000, interval: 100 },
      );
    } finally {
      await client.dispose();
    }
  });

  it.each(HTTP_ANON)('%s %s → 401 MCP_UNAUTHENTICATED', async (method, path, body) => {
    const r = await fetch(`${s.gw.url}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    expect(r.status).toBe(401);
    expect(await r.text()).toContain('MCP_UNAUTHENTICATED');
  });

  it('health endpoints stay open', async () => {
    for (const path of ['/healthz', '/readyz', '/v2/health/live', '/v2/health/ready']) {
      expect((await fetch(`${s.gw.url}${path}`)).status, path).toBe(200);
    }
  });

  it('with credentials the same calls work', async () => {
    const headers = await s.gw.login();
    expect((await s.gw.gql('{ models { totalCount } }', {}, headers)).data).toEqual({ models: { totalCount: 4 } });
    expect((await fetch(`${s.gw.url}/metrics`, { headers })).status).toBe(200);
    expect((await fetch(`${s.gw.url}/v1/models`, { headers })).status).toBe(200);
  });
});

describe('auth.publicMetrics', () => {
  it('serves /metrics without credentials', async () => {
    const s = await startStack({ auth: { publicMetrics: true } });
    try {
      expect((await fetch(`${s.gw.url}/metrics`)).status).toBe(200);
      expect((await fetch(`${s.gw.url}/v1/models`)).status).toBe(401);
    } finally {
      await s.close();
    }
  });
});
