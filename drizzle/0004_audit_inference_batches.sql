ALTER TABLE "audit_log" ADD COLUMN "entries" text;--> statement-breakpoint
ALTER TABLE "audit_log" ADD COLUMN "actors" text[];--> statement-breakpoint
ALTER TABLE "audit_log" ADD COLUMN "models" text[];--> statement-breakpoint
ALTER TABLE "audit_log" ADD COLUMN "outcomes" text[];--> statement-breakpoint
CREATE INDEX "audit_log_batch_actors" ON "audit_log" USING gin ("actors") WHERE "audit_log"."entries" is not null;--> statement-breakpoint
CREATE INDEX "audit_log_batch_models" ON "audit_log" USING gin ("models") WHERE "audit_log"."entries" is not null;--> statement-breakpoint
-- One row per audit entry, batch rows of inference calls expanded (entry i of a batch row has id id + i).
CREATE VIEW "audit_entries" AS
SELECT l.id, l.id AS chain_row_id, l.at, l.actor, l.actor_via, l.action, l.target, l.model, l.outcome, l.ip, l.request_id, l.latency_ms, l.details
  FROM "audit_log" l WHERE l.entries IS NULL
UNION ALL
SELECT l.id + e.ord - 1, l.id, l.at, e.v->>'actor', e.v->>'actorVia', l.action, e.v->>'target', e.v->>'model', e.v->>'outcome', e.v->>'ip',
       e.v->>'requestId', (e.v->>'latencyMs')::real, coalesce(e.v->'details', '{}'::jsonb)
  FROM "audit_log" l CROSS JOIN LATERAL jsonb_array_elements(l.entries::jsonb) WITH ORDINALITY AS e(v, ord) WHERE l.entries IS NOT NULL;
--> statement-breakpoint
-- One round trip for what every append does first, in this order: take the chain lock (held until the
-- transaction ends), read the last hash, reserve n ids from the sequence (nothing else draws from it
-- under the lock, so they are first_id … first_id + n - 1).
CREATE FUNCTION audit_log_reserve(lock_key bigint, n integer) RETURNS TABLE (last_hash text, first_id bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(lock_key);
  SELECT l.hash INTO last_hash FROM audit_log l ORDER BY l.id DESC LIMIT 1;
  first_id := setval(pg_get_serial_sequence('audit_log', 'id'), nextval(pg_get_serial_sequence('audit_log', 'id')) + n - 1) - n + 1;
  RETURN NEXT;
END;
$$;
