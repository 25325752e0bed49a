/**
 * Issue 10, SSRF: an instance endpoint pointing at an internal address. Endpoints are checked at
 * registration (scheme, literal addresses, metadata names; file paths only from the config file)
 * and every connection is checked after DNS resolution, so a name that later resolves to the
 * metadata service is refused for health probes and inference alike.
 */
import { lookup as dnsLookup } from 'node:dns';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LookupFunction } from '../../src/security/address-policy.ts';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

const REGISTER = /* GraphQL */ `
  mutation ($input: RegisterModelInput!) {
    registerModel(input: $input) {
      id
      status
    }
  }
`;
const INFER = /* GraphQL */ `
  mutation ($model: ID!) {
    infer(model: $model, input: { prompt: "hi" }) {
      text
    }
  }
`;

type GqlError = { message: string; extensions?: Record<string, unknown> };

/** A resolver that answers from `names` (a DNS answer the test changes) and asks the real resolver otherwise. */
function fakeDns(names: Map<string, string>, asked: string[]): LookupFunction {
  return (hostname, options, callback) => {
    const address = names.get(hostname);
    if (address === undefined) return dnsLookup(hostname, options, callback as never);
    asked.push(`${hostname}=${address}`);
    const family = address.includes(':') ? 6 : 4;
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

/**
 * A minimal OpenAI-compatible server that closes the connection after every answer, so every
 * request (probe or inference) opens a new connection, as after a keep-alive socket idles out.
 */
async function startClosingServer(): Promise<{ port: number; requests: () => number; close(): Promise<void> }> {
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests++;
    req.resume();
    req.on('end', () => {
      const body =
        req.method === 'GET'
          ? { object: 'list', data: [{ id: 'rebind', object: 'model' }] }
          : { choices: [{ index: 0, text: 'Hello, world!', finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 4, total_tokens: 5 } };
      res.writeHead(200, { 'content-type': 'application/json', connection: 'close' }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    requests: () => requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function model(id: string, endpoint: string, backend = 'openai') {
  return { id, task: 'GENERATE', versions: [{ version: 'v1', instances: [{ backend, endpoint, options: {} }] }] };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('endpoints at registration', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ defaultPlugins: false, plugins: [{ use: 'openai' }, { use: 'kserve-v2' }, { use: 'tfjs' }, { use: 'p2c-ewma' }] });
  });
  afterAll(async () => {
    await gw?.close();
  });

  const refused: Array<[string, string, string?]> = [
    ['cloud metadata address', 'http://169.254.169.254/latest/meta-data/'],
    ['link-local IPv4', 'http://169.254.10.1:8000/v1'],
    ['link-local IPv6', 'http://[fe80::1]:8000/v1'],
    ['IPv4-mapped metadata address', 'http://[::ffff:169.254.169.254]/v1'],
    ['AWS IPv6 metadata', 'http://[fd00:ec2::254]/v1'],
    ['Alibaba metadata', 'http://100.100.100.200/v1'],
    ['GCP metadata name', 'http://metadata.google.internal/computeMetadata/v1'],
    ['unspecified address', 'http://0.0.0.0:8000/v1'],
    ['file URL', 'file:///etc/passwd'],
    ['non-http scheme', 'gopher://127.0.0.1:6379/_INFO'],
    ['credentials in the URL', 'http://user:pw@127.0.0.1:8000/v1'],
    ['tfjs file URL', 'file:///etc/passwd', 'tfjs'],
    ['tfjs bare path', '/etc', 'tfjs'],
    ['tfjs relative path', '../../etc/shadow', 'tfjs'],
    ['kserve metadata', 'http://169.254.169.254:80', 'kserve-v2'],
  ];
  it.each(refused)('refuses %s (%s) with MCP_VALIDATION_FAILED naming the endpoint', async (_what, endpoint, backend) => {
    const id = `m-${Math.random().toString(36).slice(2, 8)}`;
    const r = await gw.gql(REGISTER, { input: model(id, endpoint, backend) });
    expect(r.data?.registerModel ?? null).toBeNull();
    const err = r.errors?.[0] as GqlError;
    expect(err.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    expect(err.message).toMatch(/^input\.versions\.0\.instances\.0\.endpoint: /);
    const after = await gw.gql<{ model: unknown }>(`query ($id: ID!) { model(id: $id) { id } }`, { id });
    expect(after.data?.model ?? null).toBeNull();
  });

  it('refuses the same through addModelVersion and addInstance', async () => {
    const fake = await startFakeOpenAI();
    try {
      expect((await gw.gql(REGISTER, { input: model('ok-model', fake.url) })).errors).toBeUndefined();
      const v = await gw.gql(`mutation ($input: ModelVersionInput!) { addModelVersion(model: "ok-model", input: $input) { version } }`, {
        input: { version: 'v2', instances: [{ backend: 'openai', endpoint: 'http://169.254.169.254/v1' }] },
      });
      expect(v.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
      const i = await gw.gql(`mutation { addInstance(model: "ok-model", version: "v1", input: { backend: "tfjs", endpoint: "/etc/passwd" }) { id } }`);
      expect(i.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
      expect(i.errors?.[0]?.message).toContain('accepted only from the configuration file');
    } finally {
      await fake.close();
    }
  });

  it('accepts a loopback model server in development mode', async () => {
    const fake = await startFakeOpenAI();
    try {
      const r = await gw.gql<{ registerModel: { status: string } }>(REGISTER, { input: model('local-ok', fake.url) });
      expect(r.errors).toBeUndefined();
      expect(r.data?.registerModel.status).toBe('READY');
      const out = await gw.gql<{ infer: { text: string } }>(INFER, { model: 'local-ok' });
      expect(out.data?.infer.text).toBe('Hello, world!');
    } finally {
      await fake.close();
    }
  });
});

describe('addresses checked on every connection (DNS answers change)', () => {
  let gw: TestGateway;
  let fake: FakeOpenAIServer;
  const names = new Map<string, string>();
  const asked: string[] = [];
  beforeAll(async () => {
    fake = await startFakeOpenAI();
    gw = await startTestGateway(
      {
        defaultPlugins: false,
        plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }],
        router: { maxAttempts: 1, healthCheck: { intervalMs: 200, timeoutMs: 1000, unhealthyThreshold: 2, healthyThreshold: 1, jitter: 0 } },
      },
      { lookup: fakeDns(names, asked) },
    );
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
  });

  it('refuses an inference to a name that resolves to the metadata address at connect time', async () => {
    names.set('meta.test', '169.254.169.254');
    const r = await gw.gql(REGISTER, { input: model('meta', `http://meta.test:${new URL(fake.url).port}/v1`) });
    expect(r.errors).toBeUndefined(); // a name passes registration; its address is checked when connecting
    const out = await gw.gql(INFER, { model: 'meta' });
    const err = out.errors?.[0] as GqlError;
    // the first attempt connects and is refused; once the probes were refused too, the router fails fast
    expect(['MCP_UPSTREAM_FORBIDDEN', 'MCP_NO_HEALTHY_INSTANCE', 'MCP_CIRCUIT_OPEN']).toContain(err.extensions?.code);
    if (err.extensions?.code === 'MCP_UPSTREAM_FORBIDDEN') expect(err.message).toBe('the upstream address is not allowed by the gateway address policy');
    expect(JSON.stringify(out)).not.toContain('169.254');
    expect(asked).toContain('meta.test=169.254.169.254');
    expect(fake.requests).toBe(0);
  });

  it('a name that resolved to loopback at registration and to 169.254.169.254 later: probes and inference are refused', async () => {
    const upstream = await startClosingServer();
    try {
      names.set('rebind.test', '127.0.0.1');
      const r = await gw.gql<{ registerModel: { status: string } }>(REGISTER, { input: model('rebind', `http://rebind.test:${upstream.port}/v1`) });
      expect(r.data?.registerModel.status).toBe('READY');
      expect((await gw.gql<{ infer: { text: string } }>(INFER, { model: 'rebind' })).data?.infer.text).toBe('Hello, world!');
      const health = async () => {
        const q = await gw.gql<{ model: { versions: Array<{ instances: Array<{ health: string }> }> } }>(
          `{ model(id: "rebind") { versions { instances { health } } } }`,
        );
        return q.data?.model.versions[0]?.instances[0]?.health;
      };
      await until('the probes to find the instance healthy', async () => ((await health()) === 'healthy' ? true : undefined));

      names.set('rebind.test', '169.254.169.254');
      const seen = upstream.requests();
      await until('the probes to be refused', async () => ((await health()) !== 'healthy' ? true : undefined));
      const out = await gw.gql(INFER, { model: 'rebind' });
      const err = out.errors?.[0] as GqlError;
      expect(['MCP_UPSTREAM_FORBIDDEN', 'MCP_NO_HEALTHY_INSTANCE', 'MCP_CIRCUIT_OPEN']).toContain(err.extensions?.code);
      expect(JSON.stringify(out)).not.toContain('169.254');
      expect(asked.filter((a) => a === 'rebind.test=169.254.169.254').length).toBeGreaterThan(0);
      // nothing reached the model server once the name pointed elsewhere (one probe may have been on its way)
      expect(upstream.requests() - seen).toBeLessThanOrEqual(1);
    } finally {
      await upstream.close();
    }
  });
});

describe('strict mode: only the configured hosts and ranges', () => {
  let gw: TestGateway;
  let fake: FakeOpenAIServer;
  const names = new Map([
    ['allowed.test', '127.0.0.1'],
    ['other.test', '127.0.0.1'],
  ]);
  beforeAll(async () => {
    fake = await startFakeOpenAI();
    gw = await startTestGateway(
      {
        defaultPlugins: false,
        plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }],
        router: { maxAttempts: 1, healthCheck: { enabled: false } },
        security: { mode: 'strict', upstream: { allowHosts: ['allowed.test'], allowCidrs: ['10.9.0.0/16'] } },
      },
      { lookup: fakeDns(names, []) },
    );
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
  });
  const port = () => new URL(fake.url).port;

  it('serves a listed host', async () => {
    expect((await gw.gql(REGISTER, { input: model('listed', `http://allowed.test:${port()}/v1`) })).errors).toBeUndefined();
    expect((await gw.gql<{ infer: { text: string } }>(INFER, { model: 'listed' })).data?.infer.text).toBe('Hello, world!');
  });

  it('refuses a literal address outside the listed ranges at registration, loopback included', async () => {
    const r = await gw.gql(REGISTER, { input: model('literal', `http://127.0.0.1:${port()}/v1`) });
    expect(r.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    expect(r.errors?.[0]?.message).toContain('not allowed by the gateway address policy');
  });

  it('refuses at connect time a name whose address is outside the listed ranges', async () => {
    expect((await gw.gql(REGISTER, { input: model('unlisted', `http://other.test:${port()}/v1`) })).errors).toBeUndefined();
    const before = fake.requests;
    const out = await gw.gql(INFER, { model: 'unlisted' });
    expect(out.errors?.[0]?.extensions?.code).toBe('MCP_UPSTREAM_FORBIDDEN');
    expect(fake.requests).toBe(before);
  });
});

describe('tfjs model files over http', () => {
  it('a model.json cannot name a weight shard on another origin or on the local disk', async () => {
    const { loadModelFiles } = await import('../../plugins/backend-tfjs/io.ts');
    for (const shard of ['file:///etc/passwd', 'http://169.254.169.254/latest/meta-data/']) {
      const server = createServer((_req, res) => {
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ format: 'layers-model', modelTopology: { class_name: 'Sequential' }, weightsManifest: [{ paths: [shard], weights: [] }] }));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/model.json`;
        await expect(loadModelFiles(url)).rejects.toThrow(/same origin as model.json/);
      } finally {
        await new Promise<void>((r) => server.close(() => r()));
      }
    }
  });
});

describe('worker registration', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ defaultPlugins: false, plugins: [{ use: 'worker' }, { use: 'p2c-ewma' }] });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it.each(['http://169.254.169.254', 'http://[fe80::1]:9000', 'http://metadata.google.internal'])(
    'refuses a worker whose endpoint is %s, and attaches nothing',
    async (endpoint) => {
      const r = await gw.gql(`mutation ($input: RegisterWorkerInput!) { registerWorker(input: $input) { worker { id } } }`, {
        input: {
          name: 'sneaky',
          endpoint,
          session: 'session-0123456789ab',
          heartbeatIntervalMs: 1000,
          instances: [{ model: 'llm', version: 'v1', remoteInstanceId: 'llm', task: 'GENERATE' }],
        },
      });
      expect(r.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
      expect(r.errors?.[0]?.message).toMatch(/^input\.endpoint: /);
      const m = await gw.gql<{ model: unknown }>(`{ model(id: "llm") { id } }`);
      expect(m.data?.model ?? null).toBeNull();
    },
  );
});
