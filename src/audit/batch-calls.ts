import { cleanDetailString, sanitizeDetails, sanitizeText } from './canonical.ts';
import type { AuditEntry } from './types.ts';

/**
 * The `entries` text of a batch row of inference calls (chain.ts), hashed verbatim with the row.
 *
 * Written as format 2, a table: `{"format":2,"strings":[…],"calls":[[…],…]}`, one array per call with
 * the columns of CALL_COLUMNS in order, trailing nulls left out. Strings that repeat from call to call
 * (actor, strategy, instance, model, outcome, address, entry point, version, error code) are stored
 * once in `strings` and named in a call by their index; `requestId` is a string of its own, `latencyMs`
 * is milliseconds rounded to the microsecond, `stream` a boolean, token counts numbers, and `details`
 * the call's other details (sanitised) or null. A batch of 400 calls is ~70 bytes a call instead of
 * ~320 as one object per call, which the embedded database (WebAssembly) writes 3–4× faster.
 *
 * Rows written before format 2 hold format 1, a JSON array with one object per call (BatchEntry).
 * Both are read by decodeCalls; docs/security/audit.md documents both, and the SQL view
 * `audit_entries` expands both.
 */

/** One inference call of a batch row, as listed (format 1 stored exactly this, one object per call). */
export interface BatchEntry {
  actor?: string;
  actorVia?: string;
  target?: string;
  model?: string;
  outcome: string;
  ip?: string;
  requestId?: string;
  latencyMs?: number;
  details?: Record<string, unknown>;
}

/** Format 2's columns, in the order each call's array holds them. */
export const CALL_COLUMNS = [
  'actor',
  'actorVia',
  'target',
  'model',
  'outcome',
  'ip',
  'requestId',
  'latencyMs',
  'entry',
  'stream',
  'version',
  'promptTokens',
  'completionTokens',
  'errorCode',
  'details',
] as const;

/** Column positions (C.actor === 0, …). */
const C = Object.fromEntries(CALL_COLUMNS.map((k, i) => [k, i])) as { [K in (typeof CALL_COLUMNS)[number]]: number };

/** Details stored as an index into `strings`, like actor, actorVia, target, model, outcome and ip. */
const DETAIL_STRINGS = ['entry', 'version', 'errorCode'] as const;
const DETAIL_NUMBERS = ['promptTokens', 'completionTokens'] as const;
/** Details keys with a column of their own (any other key goes to the `details` column). */
const DETAIL_COLUMNS = new Set<string>([...DETAIL_STRINGS, ...DETAIL_NUMBERS, 'stream']);

export interface EncodedCalls {
  /** The `entries` text. */
  text: string;
  /** Distinct non-null actors, models and outcomes, sorted: the batch row's derived columns. */
  actors: string[];
  models: string[];
  outcomes: string[];
}

/** Milliseconds rounded to the microsecond (non-finite: null). */
const micros = (ms: number | undefined): number | null => (ms === undefined || !Number.isFinite(ms) ? null : Math.round(ms * 1000) / 1000);

/** Encodes inference calls' audit entries as a batch row's `entries` (format 2), sanitised like every audit row. */
export function encodeCalls(entries: readonly AuditEntry[]): EncodedCalls {
  const strings: string[] = [];
  /** Raw value → index in `strings` (each distinct value is sanitised once). */
  const index = new Map<string, number>();
  const used: Record<'actor' | 'model' | 'outcome', Set<string>> = { actor: new Set(), model: new Set(), outcome: new Set() };
  const intern = (raw: unknown, clean: (s: string) => string | null): number | null => {
    if (typeof raw !== 'string') return null;
    let i = index.get(raw);
    if (i === undefined) {
      const s = clean(raw);
      if (s === null) return null;
      i = strings.indexOf(s);
      if (i < 0) i = strings.push(s) - 1;
      index.set(raw, i);
    }
    return i;
  };
  const calls = new Array<unknown[]>(entries.length);
  for (let n = 0; n < entries.length; n++) {
    const e = entries[n]!;
    const d = e.details;
    const row = new Array<unknown>(CALL_COLUMNS.length).fill(null);
    row[C.actor] = intern(e.actor, sanitizeText);
    row[C.actorVia] = intern(e.actorVia, sanitizeText);
    row[C.target] = intern(e.target, sanitizeText);
    row[C.model] = intern(e.model, sanitizeText);
    row[C.outcome] = intern(e.outcome, sanitizeText);
    row[C.ip] = intern(e.ip, sanitizeText);
    row[C.requestId] = e.requestId === undefined ? null : sanitizeText(e.requestId);
    row[C.latencyMs] = micros(e.latencyMs);
    if (d) {
      for (const k of DETAIL_STRINGS) row[C[k]] = intern(d[k], cleanDetailString);
      for (const k of DETAIL_NUMBERS) row[C[k]] = typeof d[k] === 'number' && Number.isFinite(d[k]) ? d[k] : null;
      row[C.stream] = typeof d.stream === 'boolean' ? d.stream : null;
      let other: Record<string, unknown> | undefined;
      for (const k in d) {
        const v = d[k];
        if (v === undefined || v === null) continue;
        // A value of the wrong type for its column is kept too, with the other details.
        if (DETAIL_COLUMNS.has(k) && row[C[k as keyof typeof C]] !== null) continue;
        (other ??= {})[k] = v;
      }
      if (other) row[C.details] = sanitizeDetails(other);
    }
    for (const k of ['actor', 'model', 'outcome'] as const) if (row[C[k]] !== null) used[k].add(strings[row[C[k]] as number]!);
    let end = row.length;
    while (end > 0 && row[end - 1] === null) end--;
    row.length = end;
    calls[n] = row;
  }
  return {
    text: `{"format":2,"strings":${JSON.stringify(strings)},"calls":${JSON.stringify(calls)}}`,
    actors: [...used.actor].sort(),
    models: [...used.model].sort(),
    outcomes: [...used.outcome].sort(),
  };
}

/** The calls of a batch row's `entries`, either format; throws on text that is neither. */
export function decodeCalls(text: string): BatchEntry[] {
  const parsed: unknown = JSON.parse(text);
  if (Array.isArray(parsed)) return parsed as BatchEntry[];
  const t = parsed as { format?: unknown; strings?: unknown; calls?: unknown };
  if (t?.format !== 2 || !Array.isArray(t.strings) || !Array.isArray(t.calls)) throw new Error('not a batch of inference calls');
  const strings = t.strings as unknown[];
  const str = (v: unknown): string | undefined => (typeof v === 'number' && typeof strings[v] === 'string' ? (strings[v] as string) : undefined);
  return (t.calls as unknown[]).map((raw) => {
    if (!Array.isArray(raw)) throw new Error('not a batch of inference calls');
    const at = (k: keyof typeof C) => raw[C[k]] as unknown;
    const out: BatchEntry = { outcome: str(at('outcome')) ?? '' };
    for (const k of ['actor', 'actorVia', 'target', 'model', 'ip'] as const) {
      const s = str(at(k));
      if (s !== undefined) out[k] = s;
    }
    if (typeof at('requestId') === 'string') out.requestId = at('requestId') as string;
    if (typeof at('latencyMs') === 'number') out.latencyMs = at('latencyMs') as number;
    const details: Record<string, unknown> = {};
    if (str(at('entry')) !== undefined) details.entry = str(at('entry'));
    if (typeof at('stream') === 'boolean') details.stream = at('stream');
    if (str(at('version')) !== undefined) details.version = str(at('version'));
    if (str(at('errorCode')) !== undefined) details.errorCode = str(at('errorCode'));
    for (const k of DETAIL_NUMBERS) if (typeof at(k) === 'number') details[k] = at(k);
    const other = at('details');
    if (other && typeof other === 'object' && !Array.isArray(other)) Object.assign(details, other);
    if (Object.keys(details).length) out.details = details;
    return out;
  });
}

/** The derived columns (distinct actors, models, outcomes, sorted) of decoded calls. */
export function derivedOf(calls: readonly BatchEntry[]): { actors: string[]; models: string[]; outcomes: string[] } {
  const distinct = (vs: Array<string | undefined>) => [...new Set(vs.filter((v): v is string => v !== undefined))].sort();
  return { actors: distinct(calls.map((c) => c.actor)), models: distinct(calls.map((c) => c.model)), outcomes: distinct(calls.map((c) => c.outcome)) };
}
