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
