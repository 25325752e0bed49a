import { createHash } from 'node:crypto';
import { sortKeys } from '../canonical-json.ts';
import { storableText } from '../db/storable-text.ts';
import type { AuditEntry } from './types.ts';

/** The prev_hash of the first row of the chain. */
export const GENESIS_HASH = '0'.repeat(64);

/** An audit row as stored (the columns of `audit_log`). */
export interface AuditRow {
  id: number;
  at: Date;
  actor: string | null;
  actorVia: string | null;
  action: string;
  target: string | null;
  model: string | null;
  outcome: string;
  ip: string | null;
  requestId: string | null;
  latencyMs: number | null;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
  /** A batch row of inference calls: their entries as the JSON array text hashed (batchEntry); null otherwise. */
  entries: string | null;
  /** A batch row's distinct non-null actors, models and outcomes, sorted (derived from entries, checked by verifyChain). */
  actors: string[] | null;
  models: string[] | null;
  outcomes: string[] | null;
}

/** The columns the canonical form covers (the derived actors, models and outcomes are checked against entries instead). */
export type CanonicalFields = Omit<AuditRow, 'prevHash' | 'hash' | 'actors' | 'models' | 'outcomes'>;

/**
 * The canonical form of a row, the one input of its hash: the JSON array
 * `[id, at, actor, actorVia, action, target, model, outcome, ip, requestId, latencyMs, details]`
 * with `at` as an ISO-8601 UTC string with milliseconds, absent values as null, `latencyMs` as
 * the float4 the `real` column stores (Math.fround), and `details` with its keys sorted at every
 * level. A batch row of inference calls has a 13th element: its `entries` text, verbatim. Anyone
 * can recompute it from a SELECT (docs/security/audit.md).
 */
export function canonical(r: CanonicalFields): string {
  const head = JSON.stringify([
    r.id,
    r.at.toISOString(),
    r.actor,
    r.actorVia,
    r.action,
    r.target,
    r.model,
    r.outcome,
    r.ip,
    r.requestId,
    r.latencyMs === null ? null : Math.fround(r.latencyMs),
    sortKeys(r.details),
  ]);
  return r.entries === null ? head : `${head.slice(0, -1)},${r.entries}]`;
}

/** hash = hex(SHA-256(prev_hash ‖ "\n" ‖ canonical(row))). */
export function rowHash(prevHash: string, r: CanonicalFields): string {
  return createHash('sha256').update(prevHash).update('\n').update(canonical(r)).digest('hex');
}

// ─────────────── sanitising ───────────────

/** Keys whose values are never stored, at any depth (password, token, secret, api key, authorization, cookie, credential, private key). */
const SECRET_KEY = /pass(word|wd|phrase)?|token|secret|api[-_]?key|authori[sz]ation|cookie|credential|private[-_]?key|signature/i;
const MAX_TEXT = 256;
const MAX_DETAIL_STRING = 512;
const MAX_DETAILS_JSON = 4096;
const MAX_DEPTH = 4;
const MAX_ITEMS = 32;
/** Values that look like a credential whatever their key says (a bearer header, a JWT). */
const SECRET_VALUE = /^(bearer|basic)\s|^eyJ[\w-]+\.[\w-]+\./i;

/** Made storable (storableText) before hashing, and cut short. Other control characters stay (JSON escapes them). */
function cleanString(s: string, max: number): string {
  const t = storableText(s);
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** A string value of `details`: redacted when it looks like a credential, cleaned and cut short otherwise. */
export function cleanDetailString(v: string): string {
  return SECRET_VALUE.test(v) ? '[redacted]' : cleanString(v, MAX_DETAIL_STRING);
}

function cleanValue(v: unknown, depth: number): unknown {
  if (v === null || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return cleanDetailString(v);
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (Array.isArray(v)) return v.slice(0, MAX_ITEMS).map((x) => cleanValue(x, depth + 1));
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    let n = 0;
    for (const [k, x] of Object.entries(v)) {
      if (n++ >= MAX_ITEMS) break;
      if (x === undefined || typeof x === 'function') continue;
      out[cleanString(k, 64)] = SECRET_KEY.test(k) ? '[redacted]' : cleanValue(x, depth + 1);
    }
    return out;
  }
  return null;
}

/** Details without secrets, bounded in depth, items and size (a larger result is replaced by a marker with its keys). */
export function sanitizeDetails(details: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!details) return {};
  const clean = cleanValue(details, 0) as Record<string, unknown>;
  if (JSON.stringify(clean).length <= MAX_DETAILS_JSON) return clean;
  return { truncated: true, keys: Object.keys(clean).slice(0, MAX_ITEMS) };
}

/** A text column's value: cleaned and cut short; absent or empty is null. */
export function sanitizeText(s: string | undefined): string | null {
  return s === undefined || s === '' ? null : cleanString(s, MAX_TEXT);
}

/** The stored fields of an entry (everything but id, prev_hash and hash), sanitised. */
export function rowFields(e: AuditEntry, at: Date): Omit<CanonicalFields, 'id'> {
  return {
    at,
    actor: sanitizeText(e.actor),
    actorVia: sanitizeText(e.actorVia),
    action: cleanString(e.action, MAX_TEXT),
    target: sanitizeText(e.target),
    model: sanitizeText(e.model),
    outcome: e.outcome,
    ip: sanitizeText(e.ip),
    requestId: sanitizeText(e.requestId),
    // Stored as the float4 the `real` column keeps, so the hash of the stored row is the hash computed here.
    latencyMs: e.latencyMs === undefined || !Number.isFinite(e.latencyMs) ? null : Math.fround(e.latencyMs),
    details: sanitizeDetails(e.details),
    entries: null,
  };
}
