import pino, { type Logger } from 'pino';
import { configSchema, type Config, type ConfigInput } from '../config/schema.ts';
import { createGateway, type Gateway, type GatewayOptions } from '../gateway.ts';
import { createTestDatabase, type Storage } from './database.ts';

// The storages and throwaway PostgreSQL databases live in database.ts, which files that start no gateway import alone.
export { createTestDatabase, STORAGES, type Storage } from './database.ts';

export interface TestGateway extends Gateway {
  /** POST a GraphQL operation; returns the parsed body. */
  gql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    headers?: Record<string, string>,
  ): Promise<{ data?: T; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> }>;
  config: Config;
  /** The first-start password of `admin` (auth on): TEST_ADMIN_PASSWORD unless the test gave another. */
  adminPassword: string;
  /** Signs in (default: as `admin`) and returns the headers that authenticate as that user: `{ authorization: 'Bearer …' }`. */
  login(username?: string, password?: string): Promise<Record<string, string>>;
}

/** The `admin` password of test gateways with auth on (unless the test passes `adminPassword`). */
export const TEST_ADMIN_PASSWORD = 'test-admin-password-0123';

export interface TestGatewayOptions {
  /** Folder relative paths in the config resolve against. */
  baseDir?: string;
  /** The first-start `admin` password (default TEST_ADMIN_PASSWORD); null: generated, and handed to announceAdmin. */
  adminPassword?: string | null;
  announceAdmin?: GatewayOptions['announceAdmin'];
  /** The DNS resolver upstream connections use (the address policy checks its answers). */
  lookup?: GatewayOptions['lookup'];
  /** Logger of the gateway (default: pino at LOG_LEVEL or silent). */
  logger?: Logger;
}

/**
 * Starts a real gateway on 127.0.0.1:0 with in-memory PGlite (or a fresh PostgreSQL database),
 * no demo model unless asked, and quiet logs. close() also drops the PostgreSQL database.
 * Auth is off (`auth: { enabled: false }`) unless the test passes an `auth` section; with auth on,
 * `login()` gives admin credentials.
 */
export async function startTestGateway(input: ConfigInput & { storageKind?: Storage } = {}, opts: TestGatewayOptions = {}): Promise<TestGateway> {
  const { storageKind = 'pglite', ...rest } = input;
  const adminPassword = opts.adminPassword === undefined ? TEST_ADMIN_PASSWORD : opts.adminPassword;
  let db: { url: string; drop(): Promise<void> } | undefined;
  if (storageKind === 'postgres') db = await createTestDatabase();
  const config = configSchema.parse({
    ...rest,
    auth: rest.auth ?? { enabled: false },
    server: { port: 0, host: '127.0.0.1', shutdownGraceMs: 2000, ...rest.server },
    storage: db ? { url: db.url } : { inMemory: true, ...rest.storage },
    demo: { enabled: false, ...rest.demo },
    log: { level: (process.env.LOG_LEVEL as 'info' | undefined) ?? 'silent' },
  });
  const logger = opts.logger ?? pino({ level: config.log.level });
  let gw: Gateway;
  try {
    gw = await createGateway({
      config,
      logger,
      baseDir: opts.baseDir,
      adminPassword: adminPassword ?? undefined,
      announceAdmin: opts.announceAdmin,
      ...(opts.lookup ? { lookup: opts.lookup } : {}),
    });
  } catch (err) {
    await db?.drop();
    throw err;
  }
  return {
    ...gw,
    config,
    async gql(query, variables, headers = {}) {
      const r = await fetch(`${gw.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json', ...headers },
        body: JSON.stringify({ query, variables }),
      });
      return r.json() as never;
    },
    adminPassword: adminPassword ?? '',
    async login(username = 'admin', password = adminPassword ?? '') {
      const r = await fetch(`${gw.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password }),
      });
      const body = (await r.json()) as { access_token?: string; error?: { code: string } };
      if (!r.ok || !body.access_token) throw new Error(`login as ${username} failed: ${r.status} ${body.error?.code ?? ''}`);
      return { authorization: `Bearer ${body.access_token}` };
    },
    async close() {
      await gw.close();
      await db?.drop();
    },
  };
}
