/** The storages the suite runs on and throwaway PostgreSQL databases: light to import (no gateway behind it). */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

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

/**
 * A migrated database of `kind` for one test file: PGlite in memory, or a throwaway PostgreSQL database
 * (createTestDatabase). close() closes it and drops or removes what it made.
 */
export async function openTestStorage(kind: Storage): Promise<{ database: import('../db/client.ts').Database; close(): Promise<void> }> {
  const { openDatabase } = await import('../db/client.ts');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  let database: import('../db/client.ts').Database;
  let cleanup: () => Promise<void>;
  if (kind === 'postgres') {
    const db = await createTestDatabase();
    database = await openDatabase({ url: db.url, dataDir: '/tmp' });
    cleanup = () => db.drop();
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'mcp-storage-'));
    database = await openDatabase({ dataDir: dir, inMemory: true });
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  }
  await database.migrate();
  return {
    database,
    async close() {
      await database.close();
      await cleanup();
    },
  };
}
