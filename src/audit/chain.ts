import { and, asc, desc, eq, gte, isNotNull, isNull, like, lt, or, sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import type { Db } from '../db/client.ts';
import { auditLog } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import { decodeCalls, derivedOf, encodeCalls } from './batch-calls.ts';
import { GENESIS_HASH, rowFields, rowHash, type AuditRow } from './canonical.ts';
import type { AuditEntry } from './types.ts';

/** What appends run on: the database handle or a transaction of it. */
export type Executor = Pick<Db, 'execute'>;

/** pg_advisory_xact_lock key: every append, on every replica, takes it for the rest of its transaction (audit_log_reserve). */
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

/** The action of inference calls: appended as one batch row per append (batch-calls.ts). */
export const INFERENCE_ACTION = 'inference';

/** A PostgreSQL text[] literal. */
const textArray = (xs: readonly string[]) => `{${xs.map((x) => `"${x.replace(/[\\"]/g, '\\$&')}"`).join(',')}}`;

/**
 * Appends entries to the chain inside the caller's transaction: takes the chain lock (held until
 * that transaction ends, so appends from every replica are serialised), reads the last hash,
 * reserves ids from the sequence under the lock (so chain order is id order), and inserts. Each
 * event is a row of its own; inference calls (action `inference`) go into one batch row after
 * them, which carries them all in `entries` (entry i has id `row id + i`) and is one chain link:
 * one row per group commit instead of one per call. The rows commit or roll back with the
 * caller's own changes.
 */
export async function appendInTransaction(
  tx: Executor,
  entries: readonly AuditEntry[],
  opts: {
    at?: Date;
    /**
     * A data-modifying statement of the caller's (an INSERT), run in the same statement as the chain
     * reservation (a WITH clause): one round trip less.
     */
    alongside?: SQL;
  } = {},
): Promise<AuditRow[]> {
  if (entries.length === 0) {
    if (opts.alongside) await tx.execute(opts.alongside);
    return [];
  }
  const at = opts.at ?? new Date();
  const events: AuditEntry[] = [];
  const calls: AuditEntry[] = [];
  for (const e of entries) (e.action === INFERENCE_ACTION ? calls : events).push(e);
  // The chain lock, the last hash and ids first … first + n - 1 reserved under it (migration 0004).
  const [reserved] = rowsOf<{ last_hash: string | null; first_id: string | number }>(
    await tx.execute(
      opts.alongside
        ? sql`with alongside as (${opts.alongside}) select last_hash, first_id from audit_log_reserve(${AUDIT_CHAIN_LOCK}, ${entries.length})`
        : sql`select last_hash, first_id from audit_log_reserve(${AUDIT_CHAIN_LOCK}, ${entries.length})`,
    ),
  );
  let id = Number(reserved!.first_id);
  let prevHash = reserved!.last_hash ?? GENESIS_HASH;
  const rows: AuditRow[] = [];
  for (const e of events) {
    const fields = { id: id++, ...rowFields(e, at) };
    const hash = rowHash(prevHash, fields);
    rows.push({ ...fields, prevHash, hash, actors: null, models: null, outcomes: null });
    prevHash = hash;
  }
  if (rows.length) await tx.execute(sql`${INSERT_HEAD}${JSON.stringify(rows.map(plainJson))}${INSERT_TAIL}`);
  if (calls.length) {
    const { text, ...derived } = encodeCalls(calls);
    const fields = {
      id,
      at,
      actor: null,
      actorVia: null,
      action: INFERENCE_ACTION,
      target: null,
      model: null,
      outcome: derived.outcomes.length === 1 ? derived.outcomes[0]! : 'mixed',
      ip: null,
      requestId: null,
      latencyMs: null,
      details: { calls: calls.length },
      entries: text,
    };
    const hash = rowHash(prevHash, fields);
    const row: AuditRow = { ...fields, prevHash, hash, ...derived };
    await tx.execute(
      sql`insert into audit_log (id, at, action, outcome, details, prev_hash, hash, entries, actors, models, outcomes)
          values (${row.id}, ${at.toISOString()}, ${row.action}, ${row.outcome}, ${JSON.stringify(row.details)}::jsonb, ${prevHash}, ${hash},
                  ${row.entries}, ${textArray(derived.actors)}::text[], ${textArray(derived.models)}::text[], ${textArray(derived.outcomes)}::text[])`,
    );
    rows.push(row);
  }
  return rows;
}

function plainJson(r: AuditRow): Record<string, unknown> {
  return {
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
  };
}

/** Whether a batch row's actors, models and outcomes are those of its entries (they are outside the hash). */
function derivedColumnsMatch(row: AuditRow): boolean {
  if (row.entries === null) return row.actors === null && row.models === null && row.outcomes === null;
  let want: ReturnType<typeof derivedOf>;
  try {
    want = derivedOf(decodeCalls(row.entries));
  } catch {
    return false;
  }
  const same = (a: string[] | null, b: string[]) => a !== null && a.length === b.length && [...a].sort().every((x, i) => x === b[i]);
  return same(row.actors, want.actors) && same(row.models, want.models) && same(row.outcomes, want.outcomes);
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

/** Rows per page (a batch row carries up to router.recording.maxBatch calls). */
const VERIFY_PAGE = 200;

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
      if ((expected !== undefined && prevHash !== expected) || rowHash(prevHash, fields) !== hash || !derivedColumnsMatch(row))
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

/** One entry of the log as listed: an event row, or one inference call of a batch row (prevHash and hash are that row's). */
export interface AuditItem extends Omit<AuditRow, 'entries' | 'actors' | 'models' | 'outcomes'> {
  /** The chain row holding it: its own id, or its batch row's. */
  chainRowId: number;
}

export interface AuditPage {
  items: AuditItem[];
  endCursor: string | null;
  hasNextPage: boolean;
}

const encodeCursor = (id: number) => Buffer.from(`audit:${id}`).toString('base64url');
function decodeCursor(cursor: string): number {
  const m = /^audit:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!m) throw new McpError('MCP_VALIDATION_FAILED', 'after: not a cursor returned by this API', { details: { path: 'after' } });
  return Number(m[1]);
}

const escapeLike = (s: string) => s.replace(/[\\%_]/g, (c) => `\\${c}`);
const hasValue = (derived: AnyPgColumn, value: string) => sql`${derived} @> array[${value}]::text[]`;

/** The inference calls of a batch row, newest first, with ids below `before`, that match the filter. */
function expandBatch(row: AuditRow, filter: AuditFilter, before: number): AuditItem[] {
  const entries = decodeCalls(row.entries!);
  const out: AuditItem[] = [];
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]!;
    const id = row.id + i;
    if (id >= before) continue;
    if ((filter.actor && e.actor !== filter.actor) || (filter.model && e.model !== filter.model) || (filter.outcome && e.outcome !== filter.outcome)) continue;
    out.push({
      id,
      chainRowId: row.id,
      at: row.at,
      actor: e.actor ?? null,
      actorVia: e.actorVia ?? null,
      action: row.action,
      target: e.target ?? null,
      model: e.model ?? null,
      outcome: e.outcome,
      ip: e.ip ?? null,
      requestId: e.requestId ?? null,
      latencyMs: e.latencyMs ?? null,
      details: e.details ?? {},
      prevHash: row.prevHash,
      hash: row.hash,
    });
  }
  return out;
}

/**
 * Audit entries, newest first, filtered, with cursor pagination (the cursor is the last entry's
 * id). Event rows are matched by their columns; batch rows of inference calls by their derived
 * actors/models/outcomes (GIN indexes), then expanded and their calls matched one by one.
 */
export async function listAudit(db: Db, filter: AuditFilter, page: { first?: number; after?: string }): Promise<AuditPage> {
  const first = Math.min(Math.max(page.first ?? 50, 1), 500);
  const before = page.after ? decodeCursor(page.after) : Number.MAX_SAFE_INTEGER;
  const both: SQL[] = [];
  const plain: SQL[] = [isNull(auditLog.entries)];
  const batch: SQL[] = [isNotNull(auditLog.entries)];
  if (filter.action) {
    both.push(filter.action.endsWith('*') ? like(auditLog.action, `${escapeLike(filter.action.slice(0, -1))}%`) : eq(auditLog.action, filter.action));
  }
  if (filter.since) both.push(gte(auditLog.at, filter.since));
  if (filter.until) both.push(lt(auditLog.at, filter.until));
  // Event rows by their column, batch rows by their derived array (the calls themselves in expandBatch).
  const byColumn: Array<[string | undefined, AnyPgColumn, AnyPgColumn]> = [
    [filter.actor, auditLog.actor, auditLog.actors],
    [filter.model, auditLog.model, auditLog.models],
    [filter.outcome, auditLog.outcome, auditLog.outcomes],
  ];
  for (const [value, column, derived] of byColumn) {
    if (!value) continue;
    plain.push(eq(column, value));
    batch.push(hasValue(derived, value));
  }
  const items: AuditItem[] = [];
  let cursor = before;
  // Batch rows are large: read few rows first, more while the page is not full.
  for (let rowsPerRead = Math.min(first + 1, 16); items.length <= first; rowsPerRead = Math.min(rowsPerRead * 2, first + 1)) {
    const rows = await db
      .select()
      .from(auditLog)
      .where(and(...both, or(and(...plain), and(...batch)), lt(auditLog.id, cursor)))
      .orderBy(desc(auditLog.id))
      .limit(rowsPerRead);
    for (const row of rows) {
      if (row.entries === null) items.push({ ...row, chainRowId: row.id });
      else items.push(...expandBatch(row, filter, before));
      if (items.length > first) break;
    }
    if (rows.length < rowsPerRead) break;
    cursor = rows[rows.length - 1]!.id;
  }
  const shown = items.slice(0, first);
  return { items: shown, endCursor: shown.length ? encodeCursor(shown[shown.length - 1]!.id) : null, hasNextPage: items.length > first };
}
