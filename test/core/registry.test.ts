import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { STORAGES, startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

const ECHO = { plugins: [{ use: './examples/capibara-plugin-echo', options: { prefix: 'echo: ' } }, { use: 'p2c-ewma' }] };

const REGISTER = /* GraphQL */ `
  mutation ($input: RegisterModelInput!) {
    registerModel(input: $input) {
      id
      name
      task
      status
      defaultVersion
      versions {
        version
        instances {
          id
          backend
          status
          runtime
        }
      }
    }
  }
`;

function modelInput(id: string, instances = 1) {
  return {
    id,
    task: 'GENERATE',
    labels: { team: 'search' },
    versions: [{ version: 'v1', instances: Array.from({ length: instances }, () => ({ backend: 'echo' })) }],
  };
}

describe.each(STORAGES)('model registry over GraphQL and REST (%s)', (storageKind) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ storageKind, ...ECHO, defaultPlugins: false });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('registers a model that shows in models, model(id) and GET /api/v1/models, loaded by its backend', async () => {
    const r = await gw.gql(REGISTER, { input: modelInput('sentiment') });
    expect(r.errors).toBeUndefined();
    expect(r.data).toMatchObject({
      registerModel: {
        id: 'sentiment',
        name: 'sentiment',
        task: 'GENERATE',
        status: 'READY',
        defaultVersion: 'v1',
        versions: [{ version: 'v1', instances: [{ backend: 'echo', status: 'READY', runtime: 'echo' }] }],
      },
    });
    const list = await gw.gql<{ models: { totalCount: number; nodes: Array<{ id: string }> } }>(
      '{ models(filter: { search: "senti" }) { totalCount nodes { id } } }',
    );
    expect(list.data?.models).toEqual({ totalCount: 1, nodes: [{ id: 'sentiment' }] });
    const rest = (await (await fetch(`${gw.url}/api/v1/models`)).json()) as { models: Array<{ id: string; status: string }>; total: number; status: string };
    expect(rest.status).toBe('ok');
    expect(rest.models.find((m) => m.id === 'sentiment')).toMatchObject({ status: 'ready' });
    expect(rest.total).toBeGreaterThanOrEqual(1);
    const one = await gw.gql<{ model: { labels: unknown } }>('{ model(id: "sentiment") { labels } }');
    expect(one.data?.model.labels).toEqual({ team: 'search' });
  });

  it('answers inference through REST for the registered model', async () => {
    const res = await fetch(`${gw.url}/api/v1/models/sentiment/inference`, { method: 'POST', body: JSON.stringify({ input: 'hello there' }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ result: 'echo: hello there', model_id: 'sentiment', version: 'v1' });
  });

  it('rejects bad registrations with stable codes', async () => {
    const dup = await gw.gql(REGISTER, { input: modelInput('sentiment') });
    expect(dup.errors?.[0]?.extensions?.code).toBe('MCP_DUPLICATE_ID');
    const unknown = await gw.gql(REGISTER, { input: { ...modelInput('x1'), versions: [{ version: 'v1', instances: [{ backend: 'nope' }] }] } });
    expect(unknown.errors?.[0]?.extensions?.code).toBe('MCP_UNKNOWN_PLUGIN');
    expect(unknown.errors?.[0]?.message).toContain('input.versions.0.instances.0.backend');
    const badName = await gw.gql(REGISTER, { input: { ...modelInput('Bad Name!') } });
    expect(badName.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    expect(badName.errors?.[0]?.message).toMatch(/^input\.id:/);
    const missing = await gw.gql('mutation { registerModel(input: { id: "m" }) { id } }');
    expect(missing.errors?.[0]?.extensions?.code).toBe('MCP_BAD_REQUEST');
    const notFound = await gw.gql('mutation { updateModel(id: "ghost", input: { name: "x" }) { id } }');
    expect(notFound.errors?.[0]?.extensions?.code).toBe('MCP_MODEL_NOT_FOUND');
    const badCursor = await gw.gql('{ models(after: "zzz") { totalCount } }');
    expect(badCursor.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    // Nothing half-written: the failed registrations left no model behind.
    const after = await gw.gql<{ models: { nodes: Array<{ id: string }> } }>('{ models { nodes { id } } }');
    expect(after.data?.models.nodes.map((n) => n.id)).not.toContain('x1');
  });

  it('updates and deletes models', async () => {
    await gw.gql(REGISTER, { input: modelInput('tmp') });
    const up = await gw.gql<{ updateModel: { name: string; description: string } }>(
      'mutation { updateModel(id: "tmp", input: { name: "Temp", description: "d" }) { name description } }',
    );
    expect(up.data?.updateModel).toEqual({ name: 'Temp', description: 'd' });
    const del = await gw.gql('mutation { deleteModel(id: "tmp") { id } }');
    expect(del.errors).toBeUndefined();
    const gone = await gw.gql<{ model: unknown }>('{ model(id: "tmp") { id } }');
    expect(gone.data?.model).toBeNull();
    const res = await fetch(`${gw.url}/api/v1/models/tmp/inference`, { method: 'POST', body: '{"input":"x"}' });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('MCP_MODEL_NOT_FOUND');
  });

  it('a changed default version serves the very next request (the mutation applied it before answering)', async () => {
    const two = {
      ...modelInput('two'),
      versions: [
        { version: 'v1', instances: [{ backend: 'echo' }] },
        { version: 'v2', instances: [{ backend: 'echo' }] },
      ],
    };
    expect((await gw.gql(REGISTER, { input: two })).errors).toBeUndefined();
    for (const version of ['v2', 'v1', 'v2']) {
      const up = await gw.gql<{ updateModel: { defaultVersion: string } }>(
        'mutation ($v: String!) { updateModel(id: "two", input: { defaultVersion: $v }) { defaultVersion } }',
        { v: version },
      );
      expect(up.data?.updateModel.defaultVersion).toBe(version);
      const res = await fetch(`${gw.url}/api/v1/models/two/inference`, { method: 'POST', body: '{"input":"x"}' });
      expect(await res.json()).toMatchObject({ version });
    }
  });

  it('paginates with cursors', async () => {
    for (let i = 0; i < 5; i++) await gw.gql(REGISTER, { input: { ...modelInput(`page-${i}`), versions: [] } });
    const seen: string[] = [];
    let after: string | null = null;
    for (let guard = 0; guard < 20; guard++) {
      const r: { data?: { models: { nodes: Array<{ id: string }>; pageInfo: { endCursor: string | null; hasNextPage: boolean } } } } = await gw.gql(
        'query ($after: String) { models(first: 2, after: $after, filter: { search: "page-" }) { nodes { id } pageInfo { endCursor hasNextPage } } }',
        { after },
      );
      seen.push(...r.data!.models.nodes.map((n) => n.id));
      if (!r.data!.models.pageInfo.hasNextPage) break;
      after = r.data!.models.pageInfo.endCursor;
    }
    expect(seen).toEqual(['page-0', 'page-1', 'page-2', 'page-3', 'page-4']);
  });

  it('publishes modelEvents over graphql-ws', async () => {
    const client = createClient({ url: `${gw.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
    const events: Array<{ type: string; modelId: string }> = [];
    const done = new Promise<void>((resolve, reject) => {
      const unsubscribe = client.subscribe<{ modelEvents: { type: string; modelId: string } }>(
        { query: 'subscription { modelEvents(modelId: "ws-model") { type modelId model { id } } }' },
        {
          next: (v) => {
            events.push(v.data!.modelEvents);
            if (events.some((e) => e.type === 'MODEL_REGISTERED')) {
              unsubscribe();
              resolve();
            }
          },
          error: reject,
          complete: () => resolve(),
        },
      );
    });
    // Register once the subscription is established: it is when an event published after it arrives
    // (a probe on the gateway's bus), not after a fixed wait a busy machine can outlast.
    for (let i = 0; i < 200 && !events.some((e) => e.type === 'MODEL_UPDATED'); i++) {
      gw.services.events.publish('modelEvents', { type: 'MODEL_UPDATED', modelId: 'ws-model', at: new Date() });
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(events.some((e) => e.type === 'MODEL_UPDATED')).toBe(true);
    await gw.gql(REGISTER, { input: modelInput('ws-model') });
    await Promise.race([done, new Promise((_, rej) => setTimeout(() => rej(new Error('no event within 5 s')), 5000))]);
    await client.dispose();
    expect(events.find((e) => e.type === 'MODEL_REGISTERED')).toMatchObject({ modelId: 'ws-model' });
  });

  it('resolves models { versions { instances } } over 50 models in a bounded number of SQL statements', async () => {
    for (let i = 0; i < 50; i++) {
      await gw.gql(REGISTER, {
        input: {
          ...modelInput(`bulk-${String(i).padStart(2, '0')}`, 0),
          versions: [
            { version: 'v1', instances: [] },
            { version: 'v2', instances: [] },
          ],
        },
      });
    }
    const before = gw.services.database.statements.count;
    const r = await gw.gql<{ models: { nodes: Array<{ versions: Array<{ instances: unknown[] }> }> } }>(
      '{ models(first: 50, filter: { search: "bulk-" }) { nodes { id status versions { version instances { id status } } } } }',
    );
    const statements = gw.services.database.statements.count - before;
    expect(r.data?.models.nodes).toHaveLength(50);
    expect(r.data?.models.nodes.every((n) => n.versions.length === 2)).toBe(true);
    // page + count + versions + instances + status: not one per model.
    expect(statements).toBeLessThanOrEqual(6);
  });
});
