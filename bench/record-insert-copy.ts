/**
 * The next lever on the embedded default's inference path, measured: CPU per `inferences` row written to PGlite as
 * the recorder writes them today (one `jsonb_to_recordset` INSERT per batch) against `COPY … FROM '/dev/blob'` (CSV),
 * batches of 420 rows, interleaved rounds. Plain PGlite (its default compilation tier), the table's columns
 * without the gateway's indexes: a comparison of the two ways in, not the gateway's figure.
 *
 *   npx tsx bench/record-insert-copy.ts [--disk]
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
const pg = new PGlite(process.argv.includes('--disk') ? mkdtempSync(join(tmpdir(), 'cp-')) : undefined);
await pg.exec(
  `create table inf (id text primary key, model_id text, version text, instance_id text, variant text, principal_id text, entry text, ok boolean, error_code text, latency_ms real, prompt_tokens int, completion_tokens int, shadow boolean, output text, created_at timestamptz default now())`,
);
const N = 420,
  B = 20;
const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const rows = () =>
  Array.from({ length: N }, () => ({
    id: crypto.randomUUID(),
    model_id: 'chat-model',
    version: 'v1',
    instance_id: 'chat-model-v1-0',
    variant: null,
    principal_id: 'bench',
    entry: 'openai',
    ok: true,
    error_code: null,
    latency_ms: 1 + Math.random(),
    prompt_tokens: 3,
    completion_tokens: 4,
    shadow: false,
    output: null,
  }));
const cols = 'id, model_id, version, instance_id, variant, principal_id, entry, ok, error_code, latency_ms, prompt_tokens, completion_tokens, shadow, output';
async function json() {
  await pg.query(
    `insert into inf (${cols}) select ${cols} from jsonb_to_recordset($1::jsonb) as t(id text, model_id text, version text, instance_id text, variant text, principal_id text, entry text, ok boolean, error_code text, latency_ms real, prompt_tokens int, completion_tokens int, shadow boolean, output text) on conflict do nothing`,
    [JSON.stringify(rows())],
  );
}
const csvField = (v: unknown) => (v === null ? '' : typeof v === 'string' ? `"${v.replaceAll('"', '""')}"` : String(v));
async function copy() {
  const csv =
    rows()
      .map((r) => Object.values(r).map(csvField).join(','))
      .join('\n') + '\n';
  await pg.query(`copy inf (${cols}) from '/dev/blob' with (format csv)`, [], { blob: new Blob([csv]) });
}
for (let r = 0; r < 4; r++)
  for (const [name, f] of [
    ['jsonb_to_recordset', json],
    ['copy csv', copy],
  ] as const) {
    const c0 = cpu();
    for (let b = 0; b < B; b++) await f();
    console.log(name, ((cpu() - c0) / (N * B)).toFixed(1), 'µs/row');
  }
process.exit(0);
