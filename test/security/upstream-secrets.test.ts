/**
 * Issue 10: "an upstream `apiKey` in instance options is stored in plaintext and returned to any
 * authenticated caller by `versions { instances { options } }`". Literal secrets are stored
 * encrypted (the gateway's secret key: MCP_SECRET_KEY here; the key file sources are in
 * secret-key-file.test.ts), references (`env:`, `file:`) as they are; no API answer and no
 * database dump shows a literal; the model server still receives the right key.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { STORAGES, startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { everyTableText } from '../support/db-text.ts';

const API_KEY = 'sk-live-PLAINTEXT-5c1e9a';
const HEADER_KEY = 'hdr-PLAINTEXT-8b2d4f';
const ENV_KEY = 'sk-from-env-3e7a1c';
const FILE_KEY = 'sk-from-file-9d4b2e';

const REGISTER = /* GraphQL */ `
  mutation ($input: RegisterModelInput!) {
    registerModel(input: $input) {
      versions {
        instances {
          options
        }
      }
    }
  }
`;
const OPTIONS = /* GraphQL */ `
  query ($id: ID!) {
    model(id: $id) {
      versions {
        instances {
          options
        }
      }
    }
  }
`;
type OptionsAnswer = { versions: Array<{ instances: Array<{ options: Record<string, unknown> }> }> };

// no health probes: the fake's lastRequest is then always the inference the test just made
const plugins = { defaultPlugins: false, plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }], router: { healthCheck: { enabled: false } } };
const modelInput = (id: string, endpoint: string, options: Record<string, unknown>) => ({
  id,
  task: 'CHAT',
  versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint, options: { model: 'fake-model', ...options } }] }],
});
const chat = (model: string) => `mutation { infer(model: "${model}", input: { messages: [{ role: "user", content: "hi" }] }) { text } }`;

describe.each(STORAGES)('secret instance options (%s)', (storageKind) => {
  let gw: TestGateway;
  let fake: FakeOpenAIServer;
  const secretsDir = mkdtempSync(join(tmpdir(), 'mcp-secrets-'));
  const previousKey = process.env.MCP_SECRET_KEY;

  beforeAll(async () => {
    process.env.MCP_SECRET_KEY = randomBytes(32).toString('base64');
    process.env.MCP_TEST_UPSTREAM_KEY = ENV_KEY;
    writeFileSync(join(secretsDir, 'openai.key'), `${FILE_KEY}\n`);
    fake = await startFakeOpenAI();
    gw = await startTestGateway({ storageKind, ...plugins, security: { secrets: { fileRoots: [secretsDir] } } });
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
    if (previousKey === undefined) delete process.env.MCP_SECRET_KEY;
    else process.env.MCP_SECRET_KEY = previousKey;
  });

  it('stores a literal apiKey and authorization-like header encrypted, answers them redacted, and sends the real key upstream', async () => {
    const options = { apiKey: API_KEY, headers: { 'X-Api-Key': HEADER_KEY, 'x-trace': 'visible' } };
    const r = await gw.gql<{ registerModel: OptionsAnswer }>(REGISTER, { input: modelInput('literal', fake.url, options) });
    expect(r.errors).toBeUndefined();
    expect(r.data?.registerModel.versions[0]?.instances[0]?.options).toMatchObject({
      apiKey: '[redacted]',
      headers: { 'X-Api-Key': '[redacted]', 'x-trace': 'visible' },
    });
    const q = await gw.gql<{ model: OptionsAnswer }>(OPTIONS, { id: 'literal' });
    expect(JSON.stringify(q)).not.toContain(API_KEY);
    expect(JSON.stringify(q)).not.toContain(HEADER_KEY);

    const out = await gw.gql<{ infer: { text: string } }>(chat('literal'));
    expect(out.data?.infer.text).toBe('Hello, world!');
    expect(fake.lastRequest?.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(fake.lastRequest?.headers['x-api-key']).toBe(HEADER_KEY);
  });

  it('the stored rows hold ciphertext, not the plaintext', async () => {
    const rows = (await gw.services.database.db.execute(sql`select options::text as options from instances`)) as unknown as {
      rows: Array<{ options: string }>;
    };
    const stored = rows.rows.map((r) => r.options).join('\n');
    expect(stored).toContain('enc:v1:');
    expect(stored).not.toContain(API_KEY);
    expect(stored).not.toContain(HEADER_KEY);
  });

  it('no table of the database holds a plaintext secret (every row of every table, as text)', async () => {
    const dump = await everyTableText(gw.services.database.db);
    expect(dump).toContain('enc:v1:');
    expect(dump).not.toContain(API_KEY);
    expect(dump).not.toContain(HEADER_KEY);
    expect(dump).not.toContain(process.env.MCP_SECRET_KEY!);
  });

  it.runIf(storageKind === 'postgres')('a pg_dump of the database contains no plaintext secret', () => {
    const dump = execFileSync('pg_dump', ['--data-only', gw.config.storage.url!], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    expect(dump).toContain('enc:v1:');
    expect(dump).not.toContain(API_KEY);
    expect(dump).not.toContain(HEADER_KEY);
  });

  it('keeps env: references as they are, and resolves them when the instance loads', async () => {
    const r = await gw.gql<{ registerModel: OptionsAnswer }>(REGISTER, { input: modelInput('from-env', fake.url, { apiKey: 'env:MCP_TEST_UPSTREAM_KEY' }) });
    expect(r.data?.registerModel.versions[0]?.instances[0]?.options.apiKey).toBe('env:MCP_TEST_UPSTREAM_KEY');
    await gw.gql(chat('from-env'));
    expect(fake.lastRequest?.headers.authorization).toBe(`Bearer ${ENV_KEY}`);
  });

  it('accepts file: references through the API only under security.secrets.fileRoots', async () => {
    const outside = await gw.gql(REGISTER, { input: modelInput('file-outside', fake.url, { apiKey: 'file:/etc/passwd' }) });
    expect(outside.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    expect(outside.errors?.[0]?.message).toContain('security.secrets.fileRoots');
    const escape = await gw.gql(REGISTER, { input: modelInput('file-escape', fake.url, { apiKey: `file:${secretsDir}/../../etc/passwd` }) });
    expect(escape.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    const inside = await gw.gql<{ registerModel: OptionsAnswer }>(REGISTER, {
      input: modelInput('file-inside', fake.url, { apiKey: `file:${join(secretsDir, 'openai.key')}` }),
    });
    expect(inside.errors).toBeUndefined();
    await gw.gql(chat('file-inside'));
    expect(fake.lastRequest?.headers.authorization).toBe(`Bearer ${FILE_KEY}`);
  });

  it('refuses a malformed env: reference', async () => {
    const r = await gw.gql(REGISTER, { input: modelInput('bad-env', fake.url, { apiKey: 'env:$(id)' }) });
    expect(r.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    expect(r.errors?.[0]?.message).toContain('options.apiKey');
  });
});

// Only PostgreSQL can be without a key: PGlite has its data-dir key file (or, in memory, a key per process).
describe.runIf(process.env.DATABASE_URL)('without a secret key (PostgreSQL without MCP_SECRET_KEY or MCP_SECRET_KEY_FILE)', () => {
  let gw: TestGateway;
  let fake: FakeOpenAIServer;
  const previousKey = process.env.MCP_SECRET_KEY;
  const noKey = { ...plugins, storageKind: 'postgres' as const };
  beforeAll(async () => {
    delete process.env.MCP_SECRET_KEY;
    fake = await startFakeOpenAI();
    gw = await startTestGateway(noKey);
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
    if (previousKey !== undefined) process.env.MCP_SECRET_KEY = previousKey;
  });

  it('refuses a literal secret with a clear error, stores nothing', async () => {
    const r = await gw.gql(REGISTER, { input: modelInput('no-key', fake.url, { apiKey: API_KEY }) });
    expect(r.errors?.[0]?.extensions?.code).toBe('MCP_VALIDATION_FAILED');
    expect(r.errors?.[0]?.message).toMatch(/options\.apiKey: .*env:NAME.*MCP_SECRET_KEY/);
    expect(JSON.stringify(r)).not.toContain(API_KEY);
    const rows = (await gw.services.database.db.execute(sql`select options::text as options from instances`)) as unknown as {
      rows: Array<{ options: string }>;
    };
    expect(rows.rows.map((x) => x.options).join('')).not.toContain(API_KEY);
  });

  it('refuses to start with a literal secret in the configuration file (it would be stored in plaintext)', async () => {
    const seeded = {
      id: 'seeded',
      task: 'chat' as const,
      versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint: fake.url, options: { apiKey: API_KEY } }] }],
    };
    const err = await startTestGateway({ ...noKey, models: [seeded] }).then(
      async (g) => {
        await g.close();
        return undefined;
      },
      (e: unknown) => e as { code?: string; message?: string },
    );
    expect(err?.code).toBe('MCP_VALIDATION_FAILED');
    expect(err?.message).toContain('MCP_SECRET_KEY');
    expect(err?.message).not.toContain(API_KEY);
  });

  it('seeds config models with env: and file: references (any path from the config file)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcp-config-secret-'));
    writeFileSync(join(dir, 'key'), FILE_KEY);
    process.env.MCP_TEST_UPSTREAM_KEY = ENV_KEY;
    const instance = (apiKey: string) => ({ backend: 'openai', endpoint: fake.url, options: { model: 'fake-model', apiKey } });
    const g = await startTestGateway({
      ...noKey,
      models: [
        { id: 'seed-env', task: 'chat', versions: [{ version: 'v1', instances: [instance('env:MCP_TEST_UPSTREAM_KEY')] }] },
        { id: 'seed-file', task: 'chat', versions: [{ version: 'v1', instances: [instance(`file:${join(dir, 'key')}`)] }] },
      ],
    });
    try {
      await g.gql(chat('seed-env'));
      expect(fake.lastRequest?.headers.authorization).toBe(`Bearer ${ENV_KEY}`);
      await g.gql(chat('seed-file'));
      expect(fake.lastRequest?.headers.authorization).toBe(`Bearer ${FILE_KEY}`);
    } finally {
      await g.close();
    }
  });

  it('still accepts env: references', async () => {
    const r = await gw.gql(REGISTER, { input: modelInput('no-key-env', fake.url, { apiKey: 'env:MCP_TEST_UPSTREAM_KEY' }) });
    expect(r.errors).toBeUndefined();
  });
});

describe('in-memory PGlite without MCP_SECRET_KEY', () => {
  const previousKey = process.env.MCP_SECRET_KEY;
  beforeAll(() => void delete process.env.MCP_SECRET_KEY);
  afterAll(() => {
    if (previousKey !== undefined) process.env.MCP_SECRET_KEY = previousKey;
  });

  it('seals a literal secret with a key of its own, which lives as long as the database (in memory)', async () => {
    const fake = await startFakeOpenAI();
    const gw = await startTestGateway(plugins);
    try {
      const r = await gw.gql(REGISTER, { input: modelInput('memory-key', fake.url, { apiKey: API_KEY }) });
      expect(r.errors).toBeUndefined();
      const dump = await everyTableText(gw.services.database.db);
      expect(dump).toContain('enc:v1:');
      expect(dump).not.toContain(API_KEY);
      await gw.gql(chat('memory-key'));
      expect(fake.lastRequest?.headers.authorization).toBe(`Bearer ${API_KEY}`);
    } finally {
      await gw.close();
      await fake.close();
    }
  }, 120_000);
});
