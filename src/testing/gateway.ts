import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino, { type Logger } from 'pino';
import { configSchema, type Config, type ConfigInput } from '../config/schema.ts';
import { createGateway, type Gateway, type GatewayOptions } from '../gateway.ts';

export type Storage = 'pglite' | 'postgres';

/** Storages the suite runs on: PGlite always, PostgreSQL too when DATABASE_URL is set. */
export const STORAGES: Storage[] = process.env.DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];

/**
 * A throwaway PostgreSQL database for one test file: created from DATABASE_URL's server,
 * dropped by drop(), so the database named in DATABASE_URL stays usable for the next run.
 */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const base = process.env.DATABASE_URL;
  if (!base) throw new Error('DATABASE_URL is not set');
  const name = `mcp_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

export interface TestGateway extends Gateway {
  /** POST a GraphQL operation; returns the parsed body. */
  gql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    headers?: Record<string, string>,
  ): Promise<{ data?: T; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> }>;
  config: Config;
}

/**
 * Starts a real gateway on 127.0.0.1:0 with in-memory PGlite (or a fresh PostgreSQL database),
 * no demo model unless asked, and quiet logs. close() also drops the PostgreSQL database.
 */
export async function startTestGateway(
  input: ConfigInput & { storageKind?: Storage } = {},
  opts: { baseDir?: string; lookup?: GatewayOptions['lookup']; logger?: Logger } = {},
): Promise<TestGateway> {
  const { storageKind = 'pglite', ...rest } = input;
  let db: { url: string; drop(): Promise<void> } | undefined;
  if (storageKind === 'postgres') db = await createTestDatabase();
  const config = configSchema.parse({
    ...rest,
    server: { port: 0, host: '127.0.0.1', shutdownGraceMs: 2000, ...rest.server },
    storage: db ? { url: db.url } : { inMemory: true, ...rest.storage },
    demo: { enabled: false, ...rest.demo },
    log: { level: (process.env.LOG_LEVEL as 'info' | undefined) ?? 'silent' },
  });
  const logger = opts.logger ?? pino({ level: config.log.level });
  let gw: Gateway;
  try {
    gw = await createGateway({ config, logger, baseDir: opts.baseDir, ...(opts.lookup ? { lookup: opts.lookup } : {}) });
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
    async close() {
      await gw.close();
      await db?.drop();
    },
  };
}
