import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../../plugins/auth-api-key/index.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

/**
 * A plain JSON POST to /graphql is served directly through the envelop pipeline
 * (src/graphql/json-post.ts); the same request with an Accept header it leaves to Yoga goes
 * through Yoga's HTTP layer. Both must answer alike: status, content type and body.
 */
describe('JSON POSTs to /graphql: the direct path answers as Yoga does', () => {
  let gw: TestGateway;
  const admin = generateApiKey();
  beforeAll(async () => {
    gw = await startTestGateway({
      auth: { strategies: ['api-key'] },
      plugins: [{ use: './examples/capibara-plugin-echo' }, { use: 'api-key', options: { keys: [{ id: 'admin', sha256: admin.sha256, roles: ['admin'] }] } }],
      models: [{ id: 'echo-model', versions: [{ version: 'v1', instances: [{ backend: 'echo' }] }] }],
    });
  }, 60_000);
  afterAll(async () => {
    await gw?.close();
  });

  /** GraphQL HTTP requests so far, by the path that answered (the gateway's own metric). */
  async function served(): Promise<{ direct: number; yoga: number }> {
    const metric = await gw.services.metricsRegistry.getSingleMetric('mcp_graphql_http_requests_total')!.get();
    const count = (path: string) => metric.values.find((v) => v.labels.path === path)?.value ?? 0;
    return { direct: count('direct'), yoga: count('yoga') };
  }

  async function post(body: string, accept: string, auth: string | undefined): Promise<{ status: number; type: string | null; json: unknown }> {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept };
    if (auth) headers.authorization = `Bearer ${auth}`;
    const r = await fetch(`${gw.url}/graphql`, { method: 'POST', headers, body });
    const text = await r.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      /* compared as text */
    }
    return { status: r.status, type: r.headers.get('content-type'), json };
  }

  const cases: Array<{ name: string; body: string; auth?: 'admin' | 'bad' | 'none'; direct: boolean }> = [
    { name: 'a query', body: JSON.stringify({ query: '{ model(id: "echo-model") { id status } }' }), direct: true },
    {
      name: 'a mutation with variables',
      body: JSON.stringify({
        query: 'mutation ($p: String!) { infer(model: "echo-model", input: { prompt: $p }) { text model } }',
        variables: { p: 'same answer' },
      }),
      direct: true,
    },
    {
      name: 'a named operation picked by operationName',
      body: JSON.stringify({ query: 'query A { __typename } query B { model(id: "echo-model") { id } }', operationName: 'B' }),
      direct: true,
    },
    {
      name: 'an execution error (unknown model)',
      body: JSON.stringify({ query: 'mutation { infer(model: "nope", input: { prompt: "x" }) { text } }' }),
      direct: true,
    },
    {
      name: 'a mutation without a key',
      body: JSON.stringify({ query: 'mutation { resetInstanceHealth(id: "no-such-instance") { id } }' }),
      auth: 'none',
      direct: true,
    },
    { name: 'a bad key', body: JSON.stringify({ query: '{ model(id: "echo-model") { id } }' }), auth: 'bad', direct: true },
    { name: 'a syntax error', body: JSON.stringify({ query: '{ model(' }), direct: false },
    { name: 'a validation error', body: JSON.stringify({ query: '{ nope }' }), direct: false },
    { name: 'an unknown operationName', body: JSON.stringify({ query: 'query A { __typename }', operationName: 'B' }), direct: false },
    {
      name: 'variables of the wrong type',
      body: JSON.stringify({ query: 'query ($id: ID!) { model(id: $id) { id } }', variables: { id: { x: 1 } } }),
      direct: true,
    },
    { name: 'a subscription', body: JSON.stringify({ query: 'subscription { instanceHealth { instanceId } }' }), direct: false },
    { name: 'a body that is not JSON', body: '{"query": ', direct: false },
    { name: 'a JSON array (batch)', body: JSON.stringify([{ query: '{ __typename }' }]), direct: false },
    { name: 'a query that is not a string', body: JSON.stringify({ query: 42 }), direct: false },
    { name: 'an unknown parameter', body: JSON.stringify({ query: '{ __typename }', surprise: true }), direct: false },
  ];

  for (const c of cases) {
    it(`${c.name}${c.direct ? '' : ' (read, then left to Yoga)'}`, async () => {
      const auth = c.auth === 'none' ? undefined : c.auth === 'bad' ? 'mcp_sk_bad' : admin.key;
      const before = await served();
      const direct = await post(c.body, 'application/json', auth);
      const between = await served();
      expect(between.direct - before.direct).toBe(c.direct ? 1 : 0);
      expect(between.yoga - before.yoga).toBe(c.direct ? 0 : 1);
      const viaYoga = await post(c.body, 'application/json, text/plain;q=0.1', auth);
      const after = await served();
      expect(after.direct - between.direct).toBe(0); // the second one never took the direct path
      expect(after.yoga - between.yoga).toBe(1);
      expect(direct).toEqual(viaYoga);
      expect(direct.status).toBeLessThan(500);
    });
  }

  it('answers application/graphql-response+json when that is what the client accepts', async () => {
    const body = JSON.stringify({ query: '{ model(id: "nope") { id } }' });
    const direct = await post(body, 'application/graphql-response+json', admin.key);
    expect(direct.type).toBe('application/graphql-response+json; charset=utf-8');
    // Yoga gives the same for the same Accept (with a parameter it leaves to Yoga).
    expect(await post(body, 'application/graphql-response+json; q=1, text/plain;q=0.1', admin.key)).toEqual(direct);
  });

  it('answers requests it cannot run with 400 and MCP_BAD_REQUEST, whichever path reads them', async () => {
    for (const body of [
      '{"query": ',
      '[{"query": "{ __typename }"}]',
      '{"query": 42}',
      '{"query": "{ __typename }", "variables": "x"}',
      '{}',
      '{"query": "{ model("}',
    ]) {
      for (const accept of ['application/json', 'application/json, text/plain;q=0.1']) {
        const r = await post(body, accept, admin.key);
        expect(r.status, `${body} (${accept})`).toBe(400);
        const errors = (r.json as { errors: Array<{ extensions: Record<string, unknown> }> }).errors;
        expect(errors.map((e) => e.extensions.code)).toEqual(['MCP_BAD_REQUEST']);
        expect(errors[0]!.extensions).not.toHaveProperty('originalError');
      }
    }
  });
});
