/**
 * Issue 10: "a database dump contains no plaintext key, password or upstream secret", with secrets
 * "encrypted at rest with a key from the environment". Without MCP_SECRET_KEY, the embedded PGlite
 * makes a key file in its data folder at first start (0600, refused when group or others may read
 * it); MCP_SECRET_KEY_FILE names a key file for any storage; PostgreSQL without either warns (and
 * strict mode refuses to start). Real gateways on real PGlite folders.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq, sql } from 'drizzle-orm';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authState } from '../../src/db/schema.ts';
import { DATA_DIR_KEY_FILE } from '../../src/security/secret-key.ts';
import { SecretBox } from '../../src/security/secrets.ts';
import { startFakeOpenAI, type FakeOpenAIServer } from '../../src/testing/fake-openai-server.ts';
import { createTestDatabase, startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';
import { everyTableText } from '../support/db-text.ts';

const API_KEY = 'sk-live-PLAINTEXT-keyfile-7f3a2c';
const START_MS = 180_000;

const REGISTER = /* GraphQL */ `
  mutation ($input: RegisterModelInput!) {
    registerModel(input: $input) {
      id
    }
  }
`;
const ME = /* GraphQL */ `
  {
    me {
      id
      roles
    }
  }
`;
const chat = (model: string) => `mutation { infer(model: "${model}", input: { messages: [{ role: "user", content: "hi" }] }) { text } }`;
const modelInput = (id: string, endpoint: string) => ({
  id,
  task: 'CHAT',
  versions: [{ version: 'v1', instances: [{ backend: 'openai', endpoint, options: { model: 'fake-model', apiKey: API_KEY } }] }],
});
const LEAN = {
  defaultPlugins: false,
  plugins: [{ use: 'openai' }, { use: 'p2c-ewma' }],
  router: { healthCheck: { enabled: false } },
  auth: {},
};

/** The environment variables this file changes, put back after it. */
const SAVED = ['MCP_SECRET_KEY', 'MCP_SECRET_KEY_FILE', 'MCP_SECRET_KEY_PREVIOUS'].map((k) => [k, process.env[k]] as const);
const restoreEnv = () => {
  for (const [k, v] of SAVED) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
};
const clearKeyEnv = () => {
  for (const [k] of SAVED) delete process.env[k];
};

/** The stored signing key, opened with `key` (fails if it is not sealed with it). */
async function signingKeyOf(gw: TestGateway, key: string): Promise<Buffer> {
  const [row] = await gw.services.database.db.select().from(authState).where(eq(authState.key, 'access-token-signing-key'));
  expect(row!.value).toMatch(/^enc:v1:/);
  return Buffer.from(new SecretBox(key).open(row!.value), 'base64');
}

/** The start's error (undefined if it started). */
async function startError(input: Parameters<typeof startTestGateway>[0], opts?: Parameters<typeof startTestGateway>[1]) {
  return startTestGateway(input, opts).then(
    async (g) => {
      await g.close();
      return undefined;
    },
    (e: unknown) => e as { code?: string; message: string },
  );
}

describe('the data-dir key file (PGlite on disk, no MCP_SECRET_KEY)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-keyfile-'));
  const dataDir = join(dir, 'data');
  const keyFile = join(dataDir, DATA_DIR_KEY_FILE);
  const config = { ...LEAN, storage: { inMemory: false, dataDir } };
  let fake: FakeOpenAIServer;
  let gw: TestGateway | undefined;
  let token: Record<string, string>;

  beforeAll(async () => {
    clearKeyEnv();
    fake = await startFakeOpenAI();
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
    restoreEnv();
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    'is made at first start with mode 0600; the database holds no plaintext signing key or upstream secret; a literal apiKey is accepted and sealed',
    async () => {
      const logs: string[] = [];
      gw = await startTestGateway(config, { logger: pino({ level: 'info' }, { write: (l: string) => void logs.push(l) }) });
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      const key = readFileSync(keyFile, 'utf8').trim();
      expect(Buffer.from(key, 'base64')).toHaveLength(32);

      token = await gw.login();
      const r = await gw.gql(REGISTER, { input: modelInput('sealed', fake.url) }, token);
      expect(r.errors).toBeUndefined();
      const out = await gw.gql<{ infer: { text: string } }>(chat('sealed'), {}, token);
      expect(out.data?.infer.text).toBe('Hello, world!');
      expect(fake.lastRequest?.headers.authorization).toBe(`Bearer ${API_KEY}`);

      const signingKey = await signingKeyOf(gw, key);
      expect(signingKey).toHaveLength(32);
      const dump = await everyTableText(gw.services.database.db);
      expect(dump).toContain('"public"."auth_state"');
      expect(dump).toContain('enc:v1:');
      for (const plain of [API_KEY, signingKey.toString('base64'), signingKey.toString('hex'), key]) expect(dump).not.toContain(plain);
      // The log names the file, never the key.
      expect(logs.join('')).toContain(keyFile);
      expect(logs.join('')).not.toContain(key);
      expect(logs.join('')).not.toContain('stored unencrypted');
    },
    START_MS,
  );

  it(
    'a restart uses the same key: a token issued before it still verifies and the sealed apiKey still opens',
    async () => {
      const before = readFileSync(keyFile, 'utf8');
      await gw!.close();
      gw = await startTestGateway(config);
      expect(readFileSync(keyFile, 'utf8')).toBe(before);
      const me = await gw.gql<{ me: { roles: string[] } }>(ME, {}, token);
      expect(me.errors).toBeUndefined();
      expect(me.data?.me.roles).toContain('admin');
      await gw.gql(chat('sealed'), {}, token);
      expect(fake.lastRequest?.headers.authorization).toBe(`Bearer ${API_KEY}`);
      await gw.close();
      gw = undefined;
    },
    START_MS,
  );

  it(
    'a key file group or others may read is refused with MCP_CONFIG_INVALID (as ssh does), naming the file, not the key',
    async () => {
      const key = readFileSync(keyFile, 'utf8').trim();
      chmodSync(keyFile, 0o644);
      try {
        const err = await startError(config);
        expect(err?.code).toBe('MCP_CONFIG_INVALID');
        expect(err?.message).toContain(keyFile);
        expect(err?.message).toContain('mode 0644');
        expect(err?.message).toContain('chmod 600');
        expect(err?.message).not.toContain(key);
      } finally {
        chmodSync(keyFile, 0o600);
      }
    },
    START_MS,
  );

  it(
    'a key file deleted after the key sealed the signing key: the start fails with a clear MCP_CONFIG_INVALID and makes no new file; put back, it starts',
    async () => {
      const saved = join(dir, 'saved.key');
      renameSync(keyFile, saved);
      const err = await startError(config);
      expect(err?.code).toBe('MCP_CONFIG_INVALID');
      expect(err?.message).toContain(`the secret key file ${keyFile} was missing`);
      expect(err?.message).toContain('put that file back');
      expect(existsSync(keyFile)).toBe(false);
      // Once more: the same message (the failed start left no key of its own behind).
      expect((await startError(config))?.message).toContain('was missing');

      renameSync(saved, keyFile);
      gw = await startTestGateway(config);
      expect((await gw.gql(ME, {}, token)).errors).toBeUndefined();
      await gw.close();
      gw = undefined;
    },
    START_MS,
  );
});

describe('MCP_SECRET_KEY_FILE', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-keyfile-env-'));
  const dataDir = join(dir, 'data');
  const mounted = join(dir, 'mounted-secret');
  const key = randomBytes(32).toString('base64');
  let fake: FakeOpenAIServer;

  beforeAll(async () => {
    clearKeyEnv();
    // A mounted Kubernetes/Docker secret is often world-readable: its mount guards it.
    writeFileSync(mounted, `${key}\n`, { mode: 0o644 });
    process.env.MCP_SECRET_KEY_FILE = mounted;
    fake = await startFakeOpenAI();
  });
  afterAll(async () => {
    await fake?.close();
    restoreEnv();
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    'seals the signing key and literal secrets with the key it names, before any data-dir key file',
    async () => {
      const gw = await startTestGateway({ ...LEAN, storage: { inMemory: false, dataDir } });
      try {
        expect(existsSync(join(dataDir, DATA_DIR_KEY_FILE))).toBe(false);
        const token = await gw.login();
        expect((await gw.gql(REGISTER, { input: modelInput('from-file-key', fake.url) }, token)).errors).toBeUndefined();
        const rows = (await gw.services.database.db.execute(sql`select options->>'apiKey' as key from instances`)) as unknown as {
          rows: Array<{ key: string }>;
        };
        expect(new SecretBox(key).open(rows.rows[0]!.key)).toBe(API_KEY);
        expect(await signingKeyOf(gw, key)).toHaveLength(32);
      } finally {
        await gw.close();
      }
    },
    START_MS,
  );

  it('a missing or malformed file stops the start with MCP_CONFIG_INVALID, naming the variable, not the contents', async () => {
    process.env.MCP_SECRET_KEY_FILE = join(dir, 'absent');
    const missing = await startError(LEAN);
    expect(missing?.code).toBe('MCP_CONFIG_INVALID');
    expect(missing?.message).toContain('MCP_SECRET_KEY_FILE');
    expect(missing?.message).toContain('ENOENT');
    const bad = join(dir, 'bad');
    writeFileSync(bad, 'not-a-key-but-a-secret-looking-text');
    process.env.MCP_SECRET_KEY_FILE = bad;
    const malformed = await startError(LEAN);
    expect(malformed?.code).toBe('MCP_CONFIG_INVALID');
    expect(malformed?.message).toContain('32 random bytes');
    expect(malformed?.message).not.toContain('secret-looking');
    process.env.MCP_SECRET_KEY_FILE = mounted;
  }, 60_000);
});

describe.runIf(process.env.DATABASE_URL)('PostgreSQL without MCP_SECRET_KEY or MCP_SECRET_KEY_FILE', () => {
  beforeAll(clearKeyEnv);
  afterAll(restoreEnv);

  it('still starts and warns that the signing key is stored unencrypted (replicas need one shared key, not a file each)', async () => {
    const logs: string[] = [];
    const gw = await startTestGateway({ ...LEAN, storageKind: 'postgres' }, { logger: pino({ level: 'info' }, { write: (l: string) => void logs.push(l) }) });
    try {
      expect(logs.join('')).toContain('the access-token signing key is stored unencrypted');
      const [row] = await gw.services.database.db.select().from(authState);
      expect(row!.value).toMatch(/^plain:/);
    } finally {
      await gw.close();
    }
  }, 60_000);

  it('a signing key stored unencrypted is sealed at the first start with a key (MCP_SECRET_KEY_FILE); tokens issued before stay valid', async () => {
    const db = await createTestDatabase();
    const dir = mkdtempSync(join(tmpdir(), 'mcp-keyfile-pg-'));
    try {
      const unsealed = await startTestGateway({ ...LEAN, storage: { url: db.url } });
      let token: Record<string, string>;
      try {
        token = await unsealed.login();
        const [row] = await unsealed.services.database.db.select().from(authState);
        expect(row!.value).toMatch(/^plain:/);
      } finally {
        await unsealed.close();
      }
      const key = randomBytes(32).toString('base64');
      writeFileSync(join(dir, 'key'), key);
      process.env.MCP_SECRET_KEY_FILE = join(dir, 'key');
      const sealed = await startTestGateway({ ...LEAN, storage: { url: db.url } });
      try {
        expect(await signingKeyOf(sealed, key)).toHaveLength(32);
        expect((await sealed.gql(ME, {}, token)).errors).toBeUndefined();
        expect(await everyTableText(sealed.services.database.db)).not.toContain('plain:');
      } finally {
        await sealed.close();
      }
    } finally {
      delete process.env.MCP_SECRET_KEY_FILE;
      await db.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('refuses to start in security.mode strict (MCP_CONFIG_INVALID)', async () => {
    const err = await startError({ ...LEAN, storageKind: 'postgres', security: { mode: 'strict' } });
    expect(err?.code).toBe('MCP_CONFIG_INVALID');
    expect(err?.message).toContain('MCP_SECRET_KEY_FILE');
  }, 60_000);
});
