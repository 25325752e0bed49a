/**
 * The storage-failure classifier on real driver errors: a closed PGlite, a refused PostgreSQL
 * connection (through drizzle, which wraps it with the SQL), a terminated backend (57P01); and
 * what it leaves alone: a constraint violation, an McpError, an upstream-style error without a code.
 */
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.ts';
import { storageFailure, storageFailureReason } from '../../src/db/storage-errors.ts';
import { McpError } from '../../src/errors.ts';
import { createTestDatabase } from '../../src/testing/database.ts';

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('storageFailure', () => {
  it('a closed PGlite is a storage failure; a statement error (division by zero) is not', async () => {
    const database = await openDatabase({ dataDir: '', inMemory: true });
    await database.migrate();
    const divByZero = await rejection(database.db.execute(sql`select 1/0`));
    expect(storageFailure(divByZero)).toBeUndefined();
    await database.close();
    const closed = await rejection(database.db.execute(sql`select 1`));
    const e = storageFailure(closed);
    expect(e).toBeInstanceOf(McpError);
    expect(e).toMatchObject({ code: 'MCP_STORAGE_UNAVAILABLE', status: 503, message: 'The database cannot be reached.' });
    expect(storageFailureReason(closed)).toMatch(/PGlite is closed/);
  }, 60_000);

  it('leaves McpErrors and errors without a driver code or message alone', () => {
    expect(storageFailure(new McpError('MCP_NOT_FOUND'))).toBeUndefined();
    expect(storageFailure(new Error('boom'))).toBeUndefined();
    expect(storageFailure('a string')).toBeUndefined();
    expect(storageFailure(undefined)).toBeUndefined();
  });

  describe.runIf(process.env.DATABASE_URL)('PostgreSQL', () => {
    it('a refused connection, wrapped by drizzle with its SQL: the code is the reason, the SQL is not in the answer', async () => {
      const port = await closedPort();
      const { drizzle } = await import('drizzle-orm/node-postgres');
      const pool = new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:${port}/test`, connectionTimeoutMillis: 2000 });
      try {
        const err = await rejection(drizzle(pool).execute(sql`select ${'secret-param'}::text`));
        const e = storageFailure(err)!;
        expect(e.code).toBe('MCP_STORAGE_UNAVAILABLE');
        expect(JSON.stringify(e.toJSON())).not.toMatch(/select|secret-param|127\.0\.0\.1/);
        expect(storageFailureReason(err)).toBe('ECONNREFUSED');
      } finally {
        await pool.end();
      }
    });

    it('a backend terminated by the administrator (57P01) is a storage failure; a unique violation (23505) is not', async () => {
      const db = await createTestDatabase();
      const victim = new pg.Client({ connectionString: db.url });
      const admin = new pg.Client({ connectionString: db.url });
      victim.on('error', () => {});
      await victim.connect();
      await admin.connect();
      try {
        await victim.query('create table t (id int primary key)');
        await victim.query('insert into t values (1)');
        const dup = await rejection(victim.query('insert into t values (1)'));
        expect((dup as { code?: string }).code).toBe('23505');
        expect(storageFailure(dup)).toBeUndefined();
        const pid = (await victim.query('select pg_backend_pid() as pid')).rows[0].pid as number;
        const sleeping = rejection(victim.query('select pg_sleep(30)'));
        await new Promise((r) => setTimeout(r, 200));
        await admin.query('select pg_terminate_backend($1)', [pid]);
        const killed = await sleeping;
        expect(storageFailure(killed)?.code).toBe('MCP_STORAGE_UNAVAILABLE');
      } finally {
        await victim.end().catch(() => {});
        await admin.end();
        await db.drop();
      }
    }, 60_000);
  });
});
