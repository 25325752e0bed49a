import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import v8 from 'node:v8';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { Logger as DrizzleLogger } from 'drizzle-orm/logger';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import type { PGlite, Transaction } from '@electric-sql/pglite';
import { McpError } from '../errors.ts';
import * as schema from './schema.ts';
import { PACKAGE_ROOT } from '../package-root.ts';
import { processAlive } from '../process-alive.ts';

export type Schema = typeof schema;
/** The drizzle handle services use; the same type over PGlite and node-postgres. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

export interface Database {
  readonly db: Db;
  readonly kind: 'pglite' | 'postgres';
  /** SQL statements run since start (tests assert N+1 freedom with it). */
  readonly statements: { count: number };
  /** Applies the migrations under drizzle/ (serialised across replicas on PostgreSQL). */
  migrate(): Promise<void>;
  /** Cheap liveness check. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
  /** The embedded database only: bulk loading with COPY (BulkLoad). */
  readonly bulk?: BulkLoad;
}

/** Loads CSV rows (format csv: unquoted empty = NULL) into `columns` of `table`, in one statement. */
export type CopyCsv = (table: string, columns: readonly string[], csv: string) => Promise<void>;

/**
 * `COPY … FROM` a blob, which PGlite takes for far less CPU per row than an INSERT (bench/record-insert-copy.ts).
 * `transaction` hands its callback a drizzle handle and a `copy` of the same transaction.
 */
export interface BulkLoad {
  copy: CopyCsv;
  transaction<T>(fn: (tx: Db, copy: CopyCsv) => Promise<T>): Promise<T>;
}

export const MIGRATIONS_FOLDER = join(PACKAGE_ROOT, 'drizzle');

export interface DatabaseOptions {
  /** postgres://… for PostgreSQL; otherwise PGlite. */
  url?: string;
  /** PGlite data folder (ignored with url or inMemory). */
  dataDir: string;
  inMemory?: boolean;
  /** Let V8 optimise PGlite's hot PostgreSQL functions (queries ~7% faster, ~90 MB more RSS under load). */
  pgliteOptimize?: boolean;
  /** PostgreSQL: a statement without an answer after this long fails (pg's query_timeout), ms; 0 or unset = no bound. */
  queryTimeoutMs?: number;
  /** Told what a first start does while it creates the PGlite folder (~10 s), and about stale folders it removes. */
  log?: StartupLog;
}

/** The part of a logger openDatabase reports to (a pino Logger fits). */
export interface StartupLog {
  info(obj: object, msg: string): void;
}

// A registry's working set is small: 16 MB of shared buffers instead of 128 MB saves ~140 MB RSS (bench/pglite-memory.ts).
const PGLITE_OPTIONS = { postgresqlconf: ['shared_buffers=16MB'] };

/** Where a first start makes the PGlite folder before renaming it into place: `pglite.init-<pid>`. */
const INIT_FOLDER = /^pglite\.init-(\d+)$/;

/** Removes `pglite.init-<pid>` folders whose process is gone: a first start that was killed (kill -9) before it finished. */
function removeStaleInitFolders(dataDir: string, log?: StartupLog): void {
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(INIT_FOLDER.exec(name)?.[1]);
    if (!pid || (pid !== process.pid && processAlive(pid))) continue;
    rmSync(join(dataDir, name), { recursive: true, force: true });
    log?.info({ folder: join(dataDir, name) }, 'removed the half-made database folder of an interrupted first start');
  }
}

/**
 * Runs in the child that creates the cluster. Creating it is mostly one long synchronous call into
 * PGlite's WebAssembly, so a timer on the main thread would not fire: a worker thread watches the
 * parent instead and kills this process (SIGKILL reaches it mid-call) when its parent is no longer
 * the gateway that spawned it (re-parented after a kill -9 of the gateway, even one that came
 * before the child got going).
 */
const INIT_SCRIPT = (entry: string, parent: number) => `import { Worker } from 'node:worker_threads';
new Worker(\`const check = () => { if (process.ppid !== ${parent}) process.kill(\${process.pid}, 'SIGKILL'); }; check(); setInterval(check, 200);\`, { eval: true }).unref();
const { PGlite } = await import(${JSON.stringify(entry)});
const db = new PGlite(process.argv[1], JSON.parse(process.argv[2]));
await db.waitReady;
await db.close();`;

/**
 * The PGlite data folder under `dataDir`, created on first use by a short-lived child process.
 * Creating a cluster (initdb, and unpacking PGlite's file bundle) peaks at ~750 MB in the
 * process that does it, and the allocator keeps most of that after it is freed; opening an
 * existing folder costs ~130 MB. So the gateway never runs initdb itself (bench/pglite-memory.ts).
 */
async function initPgliteDataDir(dataDir: string, log?: StartupLog): Promise<string> {
  const dir = join(dataDir, 'pglite');
  removeStaleInitFolders(dataDir, log);
  if (existsSync(join(dir, 'PG_VERSION'))) return dir;
  // Created beside and renamed into place, so an interrupted first start leaves no half-made cluster.
  const tmp = `${dir}.init-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const entry = pathToFileURL(createRequire(import.meta.url).resolve('@electric-sql/pglite')).href;
  const started = performance.now();
  log?.info({ folder: dir }, 'first start: creating the embedded database (PGlite); this takes about 10 s');
  try {
    await promisify(execFile)(process.execPath, ['--input-type=module', '-e', INIT_SCRIPT(entry, process.pid), tmp, JSON.stringify(PGLITE_OPTIONS)], {
      timeout: 120_000,
    });
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    const e = err as Error & { stderr?: string };
    throw new McpError(
      'MCP_STORAGE_UNAVAILABLE',
      `cannot create the PGlite data folder ${dir}: ${(e.stderr || e.message).trim().split('\n').slice(-3).join(' ')}`,
      { cause: err },
    );
  }
  log?.info({ folder: dir, ms: Math.round(performance.now() - started) }, 'embedded database created');
  return dir;
}

let pgliteModule: WebAssembly.Module | undefined;

/**
 * PostgreSQL for PGlite (pglite.wasm), compiled once per process for V8's baseline tier only.
 * Under load V8 otherwise compiles the hot PostgreSQL functions again with its optimising tier,
 * and that code stays: ~90 MB more RSS for queries ~7% faster (bench/pglite-memory.ts).
 *
 * V8 (Node 20) records dynamic tiering per module when it compiles it; a module without it tiers
 * up a function on its first call only if --wasm-tier-up is on at that moment. So both are off
 * while this module compiles (synchronously: no other module can compile in between) and only
 * dynamic tiering is turned back on: modules compiled later (tfjs-wasm) tier up as usual, and
 * they do not read --wasm-tier-up.
 */
function baselinePgliteModule(): WebAssembly.Module {
  if (pgliteModule) return pgliteModule;
  const dist = dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
  const bytes = readFileSync(join(dist, 'pglite.wasm'));
  v8.setFlagsFromString('--no-wasm-dynamic-tiering');
  v8.setFlagsFromString('--no-wasm-tier-up');
  try {
    pgliteModule = new WebAssembly.Module(bytes);
  } finally {
    v8.setFlagsFromString('--wasm-dynamic-tiering');
  }
  return pgliteModule;
}

function countingLogger(counter: { count: number }): DrizzleLogger {
  return { logQuery: () => void counter.count++ };
}

/** How long close() waits for checked-out PostgreSQL clients before it gives up on them, ms. */
const POOL_END_TIMEOUT_MS = 5000;

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  const statements = { count: 0 };
  const logger = countingLogger(statements);
  if (opts.url) {
    const { default: pg } = await import('pg');
    const { drizzle } = await import('drizzle-orm/node-postgres');
    const { migrate } = await import('drizzle-orm/node-postgres/migrator');
    const pool = new pg.Pool({
      connectionString: opts.url,
      max: 10,
      connectionTimeoutMillis: 5000,
      ...(opts.queryTimeoutMs ? { query_timeout: opts.queryTimeoutMs } : {}),
    });
    pool.on('error', () => {
      /* idle client errors surface on the next query */
    });
    // A checked-out client (a transaction between two statements) whose connection dies emits
    // 'error' with no listener of the pool's: without this the process would crash on a database
    // outage. The failure surfaces in the statement that is running or the next one.
    pool.on('connect', (client) => {
      client.on('error', () => {});
    });
    try {
      const client = await pool.connect();
      client.release();
    } catch (err) {
      await pool.end().catch(() => {});
      throw new McpError('MCP_STORAGE_UNAVAILABLE', `cannot connect to PostgreSQL: ${(err as Error).message}`, { cause: err });
    }
    const db = drizzle(pool, { schema, logger }) as unknown as Db;
    return {
      db,
      kind: 'postgres',
      statements,
      async migrate() {
        // Its own connection, without the pool's statement bound: the lock waits for another replica's migrations.
        const client = new pg.Client({ connectionString: opts.url, connectionTimeoutMillis: 5000 });
        client.on('error', () => {});
        await client.connect();
        try {
          await client.query('select pg_advisory_lock(7283401)');
          await migrate(drizzle(client, { schema }), { migrationsFolder: MIGRATIONS_FOLDER });
        } finally {
          await client.query('select pg_advisory_unlock(7283401)').catch(() => {});
          await client.end().catch(() => {});
        }
      },
      async ping() {
        try {
          await pool.query('select 1');
          return true;
        } catch {
          return false;
        }
      },
      // pool.end() waits for every client to be released; after a database outage (connections reset
      // mid-transaction) a client can stay checked out for ever and shutdown would hang on it. At
      // shutdown nothing is left to wait for, so the wait is bounded.
      close: async () => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const gaveUp = new Promise<'timeout'>((r) => {
          timer = setTimeout(() => r('timeout'), POOL_END_TIMEOUT_MS);
          timer.unref?.();
        });
        const ended = await Promise.race([pool.end().then(() => 'ended' as const), gaveUp]);
        clearTimeout(timer);
        if (ended === 'timeout') {
          process.emitWarning(
            `PostgreSQL pool: ${pool.totalCount - pool.idleCount} client(s) still checked out after ${POOL_END_TIMEOUT_MS} ms; closing without them`,
          );
        }
      },
    };
  }
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle } = await import('drizzle-orm/pglite');
  const { migrate } = await import('drizzle-orm/pglite/migrator');
  const options = opts.pgliteOptimize ? PGLITE_OPTIONS : { ...PGLITE_OPTIONS, pgliteWasmModule: baselinePgliteModule() };
  const client = opts.inMemory ? new PGlite(options) : new PGlite(await initPgliteDataDir(opts.dataDir, opts.log), options);
  await client.waitReady;
  const db = drizzle(client, { schema, logger }) as unknown as Db;
  const copyWith =
    (q: Pick<Transaction, 'query'>): CopyCsv =>
    async (table, columns, csv) => {
      statements.count++;
      await q.query(`copy ${table} (${columns.join(', ')}) from '/dev/blob' with (format csv)`, [], { blob: new Blob([csv]) });
    };
  return {
    db,
    kind: 'pglite',
    bulk: {
      copy: copyWith(client),
      transaction: (fn) => client.transaction((t) => fn(drizzle({ client: t as unknown as PGlite, logger }) as unknown as Db, copyWith(t))),
    },
    statements,
    async migrate() {
      await migrate(drizzle(client, { schema }), { migrationsFolder: MIGRATIONS_FOLDER });
    },
    async ping() {
      try {
        await client.query('select 1');
        return true;
      } catch {
        return false;
      }
    },
    close: () => client.close(),
  };
}
