import { getTableColumns, getTableName, sql, type SQL } from 'drizzle-orm';
import { inferences } from '../db/schema.ts';
import type { CopyCsv } from '../db/client.ts';
import { storableText } from '../db/storable-text.ts';

/** The columns the hot path fills; the others (feedback, created_at) keep their defaults. */
const RECORD_COLUMNS = [
  'id',
  'modelId',
  'version',
  'instanceId',
  'variant',
  'principalId',
  'entry',
  'ok',
  'errorCode',
  'latencyMs',
  'promptTokens',
  'completionTokens',
  'shadow',
  'output',
] as const;

export type InferenceRecord = Pick<typeof inferences.$inferInsert, (typeof RECORD_COLUMNS)[number]>;

const columns = getTableColumns(inferences);
const RECORDS_TABLE = getTableName(inferences);
const RECORD_SQL_NAMES: readonly string[] = RECORD_COLUMNS.map((k) => columns[k].name);
const INTEGER = new Set(RECORD_COLUMNS.filter((k) => columns[k].getSQLType() === 'integer'));

/**
 * A value as the column takes it. A row the database refuses would fail its whole batch on every retry and hold
 * up every record and inference audit entry behind it, and some values come from upstreams (token counts, a
 * shadow's output): counts become integers in 0 … 2³¹−1 (anything else 0), text is made storable (storableText).
 */
function columnValue(key: (typeof RECORD_COLUMNS)[number], v: unknown): unknown {
  if (v === undefined || v === null) return null;
  if (INTEGER.has(key)) return typeof v === 'number' && Number.isFinite(v) ? Math.min(2_147_483_647, Math.max(0, Math.round(v))) : 0;
  if (typeof v === 'string') return storableText(v);
  return v;
}

/**
 * PostgreSQL: `insert … select from jsonb_to_recordset($1)`. A batch is one JSON parameter, so the SQL text is
 * constant and building it costs a JSON.stringify (drizzle's per-value query builder was ~20% of the inference
 * path's CPU at 500 rows a batch). `on conflict do nothing`: a write whose commit was not confirmed (the
 * connection dropped) is retried and may already be there.
 */
const INSERT_HEAD = sql.raw(`insert into ${RECORDS_TABLE} (${RECORD_SQL_NAMES.join(', ')}) select ${RECORD_SQL_NAMES.join(', ')} from jsonb_to_recordset(`);
const INSERT_TAIL = sql.raw(`::jsonb) as t(${RECORD_COLUMNS.map((k) => `${columns[k].name} ${columns[k].getSQLType()}`).join(', ')}) on conflict do nothing`);

export function recordsInsert(rows: readonly InferenceRecord[]): SQL {
  const out = new Array<Record<string, unknown>>(rows.length);
  for (let j = 0; j < rows.length; j++) {
    const r = rows[j]!;
    const o: Record<string, unknown> = {};
    for (let i = 0; i < RECORD_COLUMNS.length; i++) o[RECORD_SQL_NAMES[i]!] = columnValue(RECORD_COLUMNS[i]!, r[RECORD_COLUMNS[i]!]);
    out[j] = o;
  }
  return sql`${INSERT_HEAD}${JSON.stringify(out)}${INSERT_TAIL}`;
}

/**
 * The embedded database: the rows as CSV for `COPY inferences (RECORD_SQL_NAMES) FROM … (format csv)`, which PGlite
 * takes for ~40% less CPU per row than the JSON INSERT (bench/record-insert-copy.ts). Text is always quoted, so an
 * empty string stays one and an unquoted empty field is NULL.
 */
function recordsCsv(rows: readonly InferenceRecord[]): string {
  let csv = '';
  for (let j = 0; j < rows.length; j++) {
    const r = rows[j]!;
    for (let i = 0; i < RECORD_COLUMNS.length; i++) {
      const v = columnValue(RECORD_COLUMNS[i]!, r[RECORD_COLUMNS[i]!]);
      if (i > 0) csv += ',';
      if (v === null) continue;
      if (typeof v === 'string') csv += v.includes('"') ? `"${v.replaceAll('"', '""')}"` : `"${v}"`;
      else if (typeof v === 'boolean') csv += v ? 't' : 'f';
      else csv += String(v);
    }
    csv += '\n';
  }
  return csv;
}

/** Loads the rows with `copy` (a BulkLoad's, or its transaction's) into the records table. */
export function copyRecords(copy: CopyCsv, rows: readonly InferenceRecord[]): Promise<void> {
  return copy(RECORDS_TABLE, RECORD_SQL_NAMES, recordsCsv(rows));
}
