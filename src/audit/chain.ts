import { and, asc, desc, eq, gte, like, lt, sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { auditLog } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import { GENESIS_HASH, rowFields, rowHash, type AuditRow } from './canonical.ts';
import type { AuditEntry } from './types.ts';

/** What appends run on: the database handle or a transaction of it. */
export type Executor = Pick<Db, 'execute'>;

/** pg_advisory_xact_lock key: every append, on every replica, takes it for the rest of its transaction. */
export const AUDIT_CHAIN_LOCK = 7_283_402;

function rowsOf<T>(result: unknown): T[] {
  return (result as { rows: T[] }).rows;
}

const COLUMNS = [
  ['id', 'int8'],
  ['at', 'timestamptz'],
  ['actor', 'text'],
  ['actor_via', 'text'],
  ['action', 'text'],
  ['target', 'text'],
  ['model', 'text'],
  ['outcome', 'text'],
  ['ip', 'text'],
  ['request_id', 'text'],
  ['latency_ms', 'real'],
  ['details', 'jsonb'],
  ['prev_hash', 'text'],
  ['hash', 'text'],
] as const;
const NAMES = COLUMNS.map(([n]) => n).join(', ');
const INSERT_HEAD = sql.raw(`insert into audit_log (${NAMES}) select ${NAMES} from jsonb_to_recordset(`);
const INSERT_TAIL = sql.raw(`::jsonb) as t(${COLUMNS.map(([n, t]) => `${n} ${t}`).join(', ')})`);

/**
 * Appends entries to the chain inside the caller's transaction: takes the chain lock (held until
 * that transaction ends, so appends from every replica are serialised), reads the last hash,
 * draws ids from the sequence under the lock (so chain order is id order), and inserts the rows
 * with one statement. The rows commit or roll back with the caller's own changes.
 */
export async function appendInTransaction(tx: Executor, entries: readonly AuditEntry[], at: Date = new Date()): Promise<AuditRow[]> {
  if (entries.length === 0) return [];
  await tx.execute(sql`select pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK})`);
  const [last] = rowsOf<{ hash: string }>(await tx.execute(sql`select hash from audit_log order by id desc limit 1`));
  const ids = rowsOf<{ id: string | number }>(
    await tx.execute(sql`select nextval(pg_get_serial_sequence('audit_log', 'id')) as id from generate_series(1, ${entries.length}::int)`),
  )
    .map((r) => Number(r.id))
    .sort((a, b) => a - b);
  let prevHash = last?.hash ?? GENESIS_HASH;
  const rows: AuditRow[] = entries.map((e, i) => {
    const fields = { id: ids[i]!, ...rowFields(e, at) };
    const hash = rowHash(prevHash, fields);
    const row = { ...fields, prevHash, hash };
    prevHash = hash;
    return row;
  });
  const json = rows.map((r) => ({
    id: r.id,
    at: r.at.toISOString(),
    actor: r.actor,
    actor_via: r.actorVia,
    action: r.action,
    target: r.target,
    model: r.model,
    outcome: r.outcome,
    ip: r.ip,
    request_id: r.requestId,
    latency_ms: r.latencyMs,
    details: r.details,
    prev_hash: r.prevHash,
    hash: r.hash,
  }));
  await tx.execute(sql`${INSERT_HEAD}${JSON.stringify(json)}${INSERT_TAIL}`);
  return rows;
}

export interface ChainVerdict {
  /** No broken row among those checked. */
  ok: boolean;
  checked: number;
  /** The first row whose prev_hash is not the previous row's hash, or whose hash is not the hash of its own content. */
  firstBrokenId: number | null;
  /** The last row checked (its hash anchors the chain: keep it outside the database to detect a cut tail). */
  lastId: number | null;
  lastHash: string | null;
}

const VERIFY_PAGE = 1000;

/** Walks the chain in id order from `fromId` (default: the first row), at most `limit` rows, a page at a time (bounded memory). */
export async function verifyChain(db: Db, opts: { fromId?: number; limit?: number } = {}): Promise<ChainVerdict> {
  const limit = opts.limit ?? Number.MAX_SAFE_INTEGER;
  // From the start, the first row must follow the genesis hash. From fromId, it must follow the row
  // before it; with none before (older rows archived away), its own prev_hash is taken as given: compare
  // it with the archive's last hash.
  let expected: string | undefined = GENESIS_HASH;
  let cursor = opts.fromId ?? 0;
  if (opts.fromId !== undefined) {
    const [prev] = await db.select({ hash: auditLog.hash }).from(auditLog).where(lt(auditLog.id, opts.fromId)).orderBy(desc(auditLog.id)).limit(1);
    expected = prev?.hash;
  }
  let checked = 0;
  let lastId: number | null = null;
  let lastHash: string | null = null;
  while (checked < limit) {
    const page = await db
      .select()
      .from(auditLog)
      .where(gte(auditLog.id, cursor))
      .orderBy(asc(auditLog.id))
      .limit(Math.min(VERIFY_PAGE, limit - checked));
    for (const row of page) {
      checked++;
      const { prevHash, hash, ...fields } = row;
      if ((expected !== undefined && prevHash !== expected) || rowHash(prevHash, fields) !== hash)
        return { ok: false, checked, firstBrokenId: row.id, lastId, lastHash };
      expected = hash;
      lastId = row.id;
      lastHash = hash;
    }
    if (page.length === 0 || page.length < VERIFY_PAGE) break;
    cursor = page[page.length - 1]!.id + 1;
  }
  return { ok: true, checked, firstBrokenId: null, lastId, lastHash };
}

export interface AuditFilter {
  actor?: string;
  /** Exact action, or a prefix ending in `*` (`model.*`). */
  action?: string;
  model?: string;
  outcome?: string;
  since?: Date;
  until?: Date;
}

export interface AuditPage {
  items: AuditRow[];
  endCursor: string | null;
  hasNextPage: boolean;
}

const encodeCursor = (id: number) => Buffer.from(`audit:${id}`).toString('base64url');
function decodeCursor(cursor: string): number {
  const m = /^audit:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!m) throw new McpError('MCP_VALIDATION_FAILED', 'after: not a cursor returned by this API', { details: { path: 'after' } });
  return Number(m[1]);
}

/** Audit rows, newest first, filtered, with cursor pagination (the cursor is the last row's id). */
export async function listAudit(db: Db, filter: AuditFilter, page: { first?: number; after?: string }): Promise<AuditPage> {
  const first = Math.min(Math.max(page.first ?? 50, 1), 500);
  const where: SQL[] = [];
  if (filter.actor) where.push(eq(auditLog.actor, filter.actor));
  if (filter.action) {
    where.push(
      filter.action.endsWith('*')
        ? like(auditLog.action, `${filter.action.slice(0, -1).replace(/[\\%_]/g, (c) => `\\${c}`)}%`)
        : eq(auditLog.action, filter.action),
    );
  }
  if (filter.model) where.push(eq(auditLog.model, filter.model));
  if (filter.outcome) where.push(eq(auditLog.outcome, filter.outcome));
  if (filter.since) where.push(gte(auditLog.at, filter.since));
  if (filter.until) where.push(lt(auditLog.at, filter.until));
  if (page.after) where.push(lt(auditLog.id, decodeCursor(page.after)));
  const rows = await db
    .select()
    .from(auditLog)
    .where(where.length ? and(...where) : undefined)
    .orderBy(desc(auditLog.id))
    .limit(first + 1);
  const items = rows.slice(0, first);
  return { items, endCursor: items.length ? encodeCursor(items[items.length - 1]!.id) : null, hasNextPage: rows.length > first };
}
