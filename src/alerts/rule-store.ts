/** Alert rules in the `alert_rules` table: those of the config file (source `config`, read-only over the API) and those made over GraphQL. */
import { and, asc, count, eq, notInArray } from 'drizzle-orm';
import type { Db } from '../db/client.ts';
import { alertRules } from '../db/schema.ts';
import { McpError } from '../errors.ts';
import { alertRuleSchema, type AlertRule } from './rules.ts';

export interface StoredRule {
  rule: AlertRule;
  source: 'config' | 'api';
  updatedAt: Date;
}

export class AlertRuleStore {
  private cache = new Map<string, { at: number; rule: AlertRule }>();

  constructor(
    private readonly db: Db,
    private readonly maxRules: number,
  ) {}

  /** Makes the table's `config` rules exactly the config file's (run by every replica at start; idempotent). */
  async syncConfig(rules: readonly AlertRule[]): Promise<void> {
    const names = new Set<string>();
    for (const r of rules) {
      if (names.has(r.name))
        throw new McpError('MCP_CONFIG_INVALID', `alerts.rules: two rules are named "${r.name}"`, { details: { paths: ['alerts.rules'] } });
      names.add(r.name);
    }
    await this.db.transaction(async (tx) => {
      if (names.size > 0) await tx.delete(alertRules).where(and(eq(alertRules.source, 'config'), notInArray(alertRules.name, [...names])));
      else await tx.delete(alertRules).where(eq(alertRules.source, 'config'));
      for (const r of rules) {
        await tx
          .insert(alertRules)
          .values({ name: r.name, source: 'config', spec: r as unknown as Record<string, unknown> })
          .onConflictDoUpdate({ target: alertRules.name, set: { source: 'config', spec: r as unknown as Record<string, unknown>, updatedAt: new Date() } });
      }
    });
  }

  /** Every rule, parsed (a parse is cached until the row changes). */
  async list(): Promise<StoredRule[]> {
    const rows = await this.db.select().from(alertRules).orderBy(asc(alertRules.name));
    const seen = new Map<string, { at: number; rule: AlertRule }>();
    const out: StoredRule[] = [];
    for (const row of rows) {
      const at = row.updatedAt.getTime();
      let hit = this.cache.get(row.name);
      if (!hit || hit.at !== at) {
        const parsed = alertRuleSchema.safeParse(row.spec);
        if (!parsed.success) continue;
        hit = { at, rule: parsed.data };
      }
      seen.set(row.name, hit);
      out.push({ rule: hit.rule, source: row.source as 'config' | 'api', updatedAt: row.updatedAt });
    }
    this.cache = seen;
    return out;
  }

  async create(input: unknown): Promise<StoredRule> {
    const rule = parseRule(input);
    return this.db.transaction(async (tx) => {
      const [{ n } = { n: 0 }] = await tx.select({ n: count() }).from(alertRules);
      if (n >= this.maxRules) throw new McpError('MCP_CONFLICT', `at most ${this.maxRules} alert rules (alerts.evaluation.maxRules)`);
      const [row] = await tx
        .insert(alertRules)
        .values({ name: rule.name, source: 'api', spec: rule as unknown as Record<string, unknown> })
        .onConflictDoNothing()
        .returning();
      if (!row) throw new McpError('MCP_DUPLICATE_ID', `an alert rule named "${rule.name}" exists`);
      return { rule, source: 'api' as const, updatedAt: row.updatedAt };
    });
  }

  async update(name: string, input: unknown): Promise<StoredRule> {
    const rule = parseRule(input);
    if (rule.name !== name) throw new McpError('MCP_VALIDATION_FAILED', 'a rule cannot be renamed; delete it and create another');
    await this.writable(name);
    const [row] = await this.db
      .update(alertRules)
      .set({ spec: rule as unknown as Record<string, unknown>, updatedAt: new Date() })
      .where(and(eq(alertRules.name, name), eq(alertRules.source, 'api')))
      .returning();
    if (!row) throw new McpError('MCP_NOT_FOUND', `no alert rule named "${name}"`);
    return { rule, source: 'api', updatedAt: row.updatedAt };
  }

  async delete(name: string): Promise<boolean> {
    await this.writable(name);
    const rows = await this.db
      .delete(alertRules)
      .where(and(eq(alertRules.name, name), eq(alertRules.source, 'api')))
      .returning({ name: alertRules.name });
    return rows.length > 0;
  }

  private async writable(name: string): Promise<void> {
    const [row] = await this.db.select({ source: alertRules.source }).from(alertRules).where(eq(alertRules.name, name));
    if (!row) throw new McpError('MCP_NOT_FOUND', `no alert rule named "${name}"`);
    if (row.source === 'config') throw new McpError('MCP_CONFLICT', `alert rule "${name}" comes from the config file; change it there`);
  }
}

export function parseRule(input: unknown): AlertRule {
  const parsed = alertRuleSchema.safeParse(input);
  if (!parsed.success) {
    throw new McpError(
      'MCP_VALIDATION_FAILED',
      `invalid alert rule: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(rule)'}: ${i.message}`).join('; ')}`,
      {
        details: { paths: parsed.error.issues.map((i) => i.path.join('.')) },
      },
    );
  }
  return parsed.data;
}
