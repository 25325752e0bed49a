/**
 * Alert dead letters (table `alert_dead_letters`, migration 0005): written by the dispatcher when a
 * sink did not take a notification; read page by page (newest first) and redelivered by hand
 * (GraphQL `alertDeadLetters`, `redeliverAlertDeadLetter`). A redelivery takes the record out of
 * the table and queues the alert to its sink again, retried as any notification; if it fails again,
 * a new dead letter is written.
 */
import { and, desc, eq, lt, type SQL } from 'drizzle-orm';
import type { Database } from '../db/client.ts';
import { alertDeadLetters } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import type { Alert } from '../plugin/contract.ts';
import { alertToJson, type AlertJson } from '../sdk/alert-delivery.ts';
import type { AlertDispatcher, DeadLetter } from './dispatcher.ts';

export type DeadLetterRow = typeof alertDeadLetters.$inferSelect;

/** Largest page of `list`. */
export const MAX_DEAD_LETTER_PAGE = 500;

export interface DeadLetterPage {
  nodes: DeadLetterRow[];
  /** Pass as `after` for the next (older) page; absent on the last page. */
  nextCursor?: string;
}

/** The alert as the sink would have got it, from its stored JSON. */
export function alertFromJson(j: AlertJson): Alert {
  return {
    id: j.id,
    rule: j.rule,
    severity: j.severity,
    state: j.state,
    summary: j.summary,
    labels: { ...j.labels },
    ...(j.value !== undefined ? { value: j.value } : {}),
    startsAt: new Date(j.startsAt),
    ...(j.endsAt ? { endsAt: new Date(j.endsAt) } : {}),
  };
}

function invalid(path: string, message: string): McpError {
  return new McpError('MCP_VALIDATION_FAILED', `${path}: ${message}`, { details: { path } });
}

/** Parses a dead letter id (a positive integer). */
function idOf(path: string, v: string): number {
  if (!/^[1-9][0-9]{0,15}$/.test(v)) throw invalid(path, 'a dead letter id (a positive integer)');
  return Number(v);
}

/** Stores one dead letter (what the dispatcher's `deadLetter` does). */
export async function writeDeadLetter(database: Database, l: DeadLetter): Promise<void> {
  await database.db.insert(alertDeadLetters).values({
    sink: l.sink,
    alertId: l.alert.id,
    rule: l.alert.rule,
    state: l.alert.state,
    reason: l.reason,
    attempts: l.attempts,
    lastError: l.lastError ?? null,
    alert: alertToJson(l.alert) as unknown as Record<string, unknown>,
  });
}

export class AlertDeadLetters {
  constructor(
    private readonly database: Database,
    /** Where redeliveries are queued. */
    private readonly dispatcher: AlertDispatcher,
  ) {}

  /** Newest first, `first` (1 … MAX_DEAD_LETTER_PAGE) at a time, optionally of one sink or rule, older than cursor `after`. */
  async list(opts: { first: number; after?: string; sink?: string; rule?: string }): Promise<DeadLetterPage> {
    if (!Number.isInteger(opts.first) || opts.first < 1 || opts.first > MAX_DEAD_LETTER_PAGE) throw invalid('first', `1 to ${MAX_DEAD_LETTER_PAGE}`);
    const where: SQL[] = [];
    if (opts.after !== undefined) where.push(lt(alertDeadLetters.id, idOf('after', opts.after)));
    if (opts.sink !== undefined) where.push(eq(alertDeadLetters.sink, opts.sink));
    if (opts.rule !== undefined) where.push(eq(alertDeadLetters.rule, opts.rule));
    const rows = await this.database.db
      .select()
      .from(alertDeadLetters)
      .where(where.length ? and(...where) : undefined)
      .orderBy(desc(alertDeadLetters.id))
      .limit(opts.first + 1);
    const nodes = rows.slice(0, opts.first);
    return rows.length > opts.first ? { nodes, nextCursor: String(nodes.at(-1)!.id) } : { nodes };
  }

  /**
   * Takes dead letter `id` out of the table and queues its alert to its sink again. Refused when
   * the sink is not configured on this gateway (the record stays); MCP_NOT_FOUND when no such
   * record exists (or another replica took it first).
   */
  async redeliver(idText: string): Promise<DeadLetterRow> {
    const id = idOf('id', idText);
    const db = this.database.db;
    const [row] = await db.select().from(alertDeadLetters).where(eq(alertDeadLetters.id, id));
    if (!row) throw new McpError('MCP_NOT_FOUND', `no alert dead letter with id "${id}"`, { details: { path: 'id' } });
    const dispatcher = this.dispatcher;
    if (!dispatcher.sinks.includes(row.sink)) {
      throw new McpError('MCP_CONFLICT', `alert sink "${row.sink}" is not configured on this gateway; the dead letter stays`, { details: { path: 'id' } });
    }
    // The delete claims it: two redeliveries of one record queue it once.
    const [taken] = await db.delete(alertDeadLetters).where(eq(alertDeadLetters.id, id)).returning();
    if (!taken) throw new McpError('MCP_NOT_FOUND', `no alert dead letter with id "${id}"`, { details: { path: 'id' } });
    dispatcher.redeliver(taken.sink, alertFromJson(taken.alert as unknown as AlertJson));
    return taken;
  }
}
