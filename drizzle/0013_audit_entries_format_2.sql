-- Batch rows of inference calls are written in format 2 (src/audit/batch-calls.ts): a table
-- {"format":2,"strings":[…],"calls":[[…],…]}, repeated strings stored once and named by index. Rows
-- written before keep format 1 (a JSON array of one object per call). The view expands both.
CREATE OR REPLACE VIEW "audit_entries" AS
SELECT l.id, l.id AS chain_row_id, l.at, l.actor, l.actor_via, l.action, l.target, l.model, l.outcome, l.ip, l.request_id, l.latency_ms, l.details
  FROM "audit_log" l WHERE l.entries IS NULL
UNION ALL
SELECT l.id + e.ord - 1, l.id, l.at, e.v->>'actor', e.v->>'actorVia', l.action, e.v->>'target', e.v->>'model', e.v->>'outcome', e.v->>'ip',
       e.v->>'requestId', (e.v->>'latencyMs')::real, coalesce(e.v->'details', '{}'::jsonb)
  FROM "audit_log" l CROSS JOIN LATERAL jsonb_array_elements(l.entries::jsonb) WITH ORDINALITY AS e(v, ord)
 WHERE l.entries IS NOT NULL AND left(l.entries, 1) = '['
UNION ALL
SELECT l.id + c.ord - 1, l.id, l.at, t.s->>((c.v->>0)::int), t.s->>((c.v->>1)::int), l.action, t.s->>((c.v->>2)::int), t.s->>((c.v->>3)::int),
       t.s->>((c.v->>4)::int), t.s->>((c.v->>5)::int), c.v->>6, (c.v->>7)::real,
       jsonb_strip_nulls(jsonb_build_object(
         'entry', t.s->((c.v->>8)::int), 'stream', c.v->9, 'version', t.s->((c.v->>10)::int),
         'promptTokens', c.v->11, 'completionTokens', c.v->12, 'errorCode', t.s->((c.v->>13)::int)))
       || coalesce(nullif(c.v->14, 'null'::jsonb), '{}'::jsonb)
  FROM "audit_log" l
 CROSS JOIN LATERAL (SELECT l.entries::jsonb AS j) p
 CROSS JOIN LATERAL (SELECT p.j->'strings' AS s) t
 CROSS JOIN LATERAL jsonb_array_elements(p.j->'calls') WITH ORDINALITY AS c(v, ord)
 WHERE l.entries IS NOT NULL AND left(l.entries, 1) = '{';
