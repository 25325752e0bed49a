/**
 * The GraphQL surface under attack, against a real gateway on loopback: document limits (tokens,
 * depth, aliases, directives, cost) with stable codes, CSRF (a foreign page's form POST cannot run
 * a mutation; GET runs queries only, and only with a CSRF header), control characters in ids, and
 * production mode (no introspection, no field suggestions).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

type GqlBody = { data?: Record<string, unknown> | null; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };

async function post(gw: TestGateway, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: GqlBody }> {
  const r = await fetch(`${gw.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  const text = await r.text();
  return { status: r.status, body: text ? (JSON.parse(text) as GqlBody) : {} };
}

const gql = (gw: TestGateway, query: string, variables?: Record<string, unknown>) => post(gw, JSON.stringify({ query, variables }));

function firstError(b: GqlBody) {
  return { code: b.errors?.[0]?.extensions?.code, graphqlCode: b.errors?.[0]?.extensions?.graphqlCode };
}

describe('GraphQL limits, CSRF and ids (development mode, auth off: the worst case for CSRF)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      auth: { enabled: false },
      models: [{ id: 'victim', task: 'generate' }],
      server: { graphql: { maxTokens: 2000, maxDepth: 4, maxAliases: 20, maxDirectives: 10, maxCost: 5000 } },
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('an ordinary query passes every limit', async () => {
    const r = await gql(gw, '{ models(first: 10) { nodes { id versions { version } } } }');
    expect(r.status).toBe(200);
    expect(r.body.errors).toBeUndefined();
  });

  it('1,000 aliases are refused before execution (ALIAS_LIMIT), fast, on the direct and the Yoga path', async () => {
    const query = `{ ${Array.from({ length: 1000 }, (_, i) => `a${i}: model(id: "victim") { id }`).join(' ')} }`;
    // The token limit (2,000 here) would stop this document first: this gateway allows more tokens.
    const big = await startTestGateway({ auth: { enabled: false }, models: [{ id: 'victim', task: 'generate' }], server: { graphql: { maxTokens: 50_000 } } });
    try {
      const started = performance.now();
      const direct = await post(big, JSON.stringify({ query }));
      const viaYoga = await post(big, JSON.stringify({ query }), { accept: 'application/json, text/plain;q=0.1' });
      const ms = performance.now() - started;
      for (const r of [direct, viaYoga]) {
        expect(r.status).toBe(400);
        expect(r.body.data ?? undefined).toBeUndefined();
        expect(firstError(r.body)).toEqual({ code: 'MCP_BAD_REQUEST', graphqlCode: 'ALIAS_LIMIT' });
      }
      // Executing 1,000 resolvers blocked the event loop for 2.2 s; refusing at validation is milliseconds (generous bound).
      expect(ms).toBeLessThan(2000);
    } finally {
      await big.close();
    }
  });

  it('too many tokens: refused while parsing (TOKEN_LIMIT)', async () => {
    const query = `{ ${'__typename '.repeat(3000)} }`;
    const r = await gql(gw, query);
    expect(r.status).toBe(400);
    expect(firstError(r.body)).toEqual({ code: 'MCP_BAD_REQUEST', graphqlCode: 'TOKEN_LIMIT' });
  });

  it('too deep, too many directives, too costly: each refused with its code', async () => {
    const deep = await gql(gw, '{ models { nodes { versions { instances { id } } } } }');
    expect(deep.status).toBe(400);
    expect(firstError(deep.body)).toEqual({ code: 'MCP_BAD_REQUEST', graphqlCode: 'DEPTH_LIMIT' });

    const directives = await gql(gw, `{ __typename ${'@include(if: true) '.repeat(12)} }`);
    expect(directives.status).toBe(400);
    expect(directives.body.errors?.map((e) => e.extensions?.graphqlCode)).toContain('DIRECTIVE_LIMIT');

    const fields = Array.from(
      { length: 18 },
      (_, i) => `f${i}: models(first: 500) { nodes { id name description task versions { version instances { id status health } } } }`,
    );
    const costly = await gql(gw, `{ ${fields.join(' ')} }`);
    expect(costly.status).toBe(400);
    expect(costly.body.errors?.map((e) => e.extensions?.graphqlCode)).toContain('COST_LIMIT');
  });

  it('a form-encoded POST from a foreign Origin cannot run deleteModel: 415 before anything runs, and the model still exists', async () => {
    for (const [type, body] of [
      ['application/x-www-form-urlencoded', `query=${encodeURIComponent('mutation { deleteModel(id: "victim") { id } }')}`],
      ['text/plain', JSON.stringify({ query: 'mutation { deleteModel(id: "victim") { id } }' })],
      [
        'multipart/form-data; boundary=x',
        `--x\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{"query":"mutation { deleteModel(id: \\"victim\\") { id } }"}\r\n--x--\r\n`,
      ],
      [undefined, JSON.stringify({ query: 'mutation { deleteModel(id: "victim") { id } }' })],
    ] as const) {
      const r = await fetch(`${gw.url}/graphql`, {
        method: 'POST',
        headers: { origin: 'https://evil.example', ...(type ? { 'content-type': type } : {}) },
        body,
      });
      expect(r.status, String(type)).toBe(415);
      expect(((await r.json()) as GqlBody).errors?.[0]?.extensions?.code).toBe('MCP_BAD_REQUEST');
    }
    const still = await gql(gw, '{ model(id: "victim") { id } }');
    expect(still.body.data).toEqual({ model: { id: 'victim' } });
  });

  it('GET runs queries only, and only with a CSRF header', async () => {
    const url = (q: string) => `${gw.url}/graphql?query=${encodeURIComponent(q)}`;
    const noHeader = await fetch(url('{ model(id: "victim") { id } }'), { headers: { accept: 'application/json' } });
    expect(noHeader.status).toBe(403);
    expect(((await noHeader.json()) as GqlBody).errors?.[0]?.extensions).toMatchObject({ code: 'MCP_FORBIDDEN', graphqlCode: 'CSRF_HEADER_REQUIRED' });

    const withHeader = await fetch(url('{ model(id: "victim") { id } }'), { headers: { accept: 'application/json', 'x-graphql-csrf': '1' } });
    expect(withHeader.status).toBe(200);
    expect(((await withHeader.json()) as GqlBody).data).toEqual({ model: { id: 'victim' } });

    const mutation = await fetch(url('mutation { deleteModel(id: "victim") { id } }'), { headers: { accept: 'application/json', 'x-graphql-csrf': '1' } });
    expect(mutation.status).toBe(405);
    expect((await gql(gw, '{ model(id: "victim") { id } }')).body.data).toEqual({ model: { id: 'victim' } });
  });

  it('a NUL byte (or another control character) in an ID is a 400, as a literal and as a variable, never a 500', async () => {
    for (const id of ['vic\u0000tim', 'a\u0001', 'x\u007f', '']) {
      const literal = await gql(gw, `{ model(id: ${JSON.stringify(id)}) { id } }`);
      expect(literal.status, JSON.stringify(id)).toBe(400);
      expect(firstError(literal.body)).toEqual({ code: 'MCP_BAD_REQUEST', graphqlCode: 'INVALID_ID' });
      const variable = await gql(gw, 'query Q($id: ID!) { model(id: $id) { id } }', { id });
      expect(variable.status, JSON.stringify(id)).toBe(400);
      expect(firstError(variable.body)).toEqual({ code: 'MCP_BAD_REQUEST', graphqlCode: 'INVALID_ID' });
      const mutation = await gql(gw, 'mutation D($id: ID!) { deleteModel(id: $id) { id } }', { id });
      expect(mutation.status).toBe(400);
      const infer = await gql(gw, 'mutation I($m: ID!) { infer(model: $m, input: { prompt: "hi" }) { text } }', { m: id });
      expect(infer.status).toBe(400);
    }
    // String arguments that carry an id (a version, a model id) get the same check, literal or variable.
    const version = await gql(gw, 'mutation { infer(model: "victim", version: "v\\u0000", input: { prompt: "hi" }) { text } }');
    expect(firstError(version.body)).toEqual({ code: 'MCP_BAD_REQUEST', graphqlCode: 'INVALID_ID' });
    const shadow = await gql(gw, 'mutation S($v: String) { setShadow(model: "victim", version: $v, fraction: 0.5) { id } }', { v: 'v1\u0000' });
    expect(shadow.status).toBe(400);
    expect(firstError(shadow.body)).toEqual({ code: 'MCP_BAD_REQUEST', graphqlCode: 'INVALID_ID' });
    // Prompts are not ids: control characters there are the model's business.
    const prompt = await gql(gw, 'mutation P($p: String!) { infer(model: "victim", input: { prompt: $p }) { text } }', { p: 'a\u0000b' });
    expect(prompt.body.errors?.[0]?.extensions?.graphqlCode).not.toBe('INVALID_ID');
  });

  it('introspection and suggestions stay on in development mode', async () => {
    const r = await gql(gw, '{ __schema { queryType { name } } }');
    expect(r.body.data).toEqual({ __schema: { queryType: { name: 'Query' } } });
    const typo = await gql(gw, '{ modles { id } }');
    expect(typo.body.errors?.[0]?.message).toMatch(/Did you mean/);
  });
});

describe('production mode (security.mode: strict)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ auth: { enabled: false }, security: { mode: 'strict' } });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('introspection is refused (INTROSPECTION_DISABLED); __typename still works', async () => {
    for (const q of ['{ __schema { types { name } } }', '{ __type(name: "Query") { name } }']) {
      const r = await gql(gw, q);
      expect(r.status).toBe(400);
      expect(firstError(r.body)).toEqual({ code: 'MCP_BAD_REQUEST', graphqlCode: 'INTROSPECTION_DISABLED' });
    }
    expect((await gql(gw, '{ __typename }')).body.data).toEqual({ __typename: 'Query' });
  });

  it('field suggestions are not given', async () => {
    const r = await gql(gw, '{ modles { id } }');
    expect(r.status).toBe(400);
    expect(r.body.errors?.[0]?.message).toMatch(/Cannot query field "modles"/);
    expect(JSON.stringify(r.body)).not.toMatch(/Did you mean|"models"/);
  });
});
