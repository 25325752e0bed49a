/** Every row of every table as text: what a database dump would show (PGlite has no pg_dump). */
import { sql } from 'drizzle-orm';
import type { Db } from '../../src/db/client.ts';

type Rows<T> = { rows: T[] };

export async function everyTableText(db: Db): Promise<string> {
  const tables = (await db.execute(
    sql`select table_schema, table_name from information_schema.tables
        where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema') order by 1, 2`,
  )) as unknown as Rows<{ table_schema: string; table_name: string }>;
  const parts: string[] = [];
  for (const t of tables.rows) {
    const name = `"${t.table_schema.replaceAll('"', '""')}"."${t.table_name.replaceAll('"', '""')}"`;
    const rows = (await db.execute(sql.raw(`select t::text as row from ${name} t`))) as unknown as Rows<{ row: string }>;
    parts.push(`-- ${name}`, ...rows.rows.map((r) => r.row));
  }
  return parts.join('\n');
}
