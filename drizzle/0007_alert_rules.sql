CREATE TABLE "alert_instances" (
	"id" text PRIMARY KEY NOT NULL,
	"rule" text NOT NULL,
	"labels" jsonb NOT NULL,
	"state" text NOT NULL,
	"seq" integer NOT NULL,
	"value" real,
	"active_since" timestamp (3) with time zone,
	"fired_at" timestamp (3) with time zone,
	"resolved_at" timestamp (3) with time zone,
	"notified" boolean DEFAULT false NOT NULL,
	"silenced_until" timestamp (3) with time zone,
	"acknowledged_by" text,
	"acknowledged_at" timestamp (3) with time zone,
	"epoch" integer NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "alert_leases" (
	"name" text PRIMARY KEY NOT NULL,
	"holder" text NOT NULL,
	"epoch" integer NOT NULL,
	"expires_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "alert_outbox" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"alert_id" text NOT NULL,
	"seq" integer NOT NULL,
	"alert" jsonb NOT NULL,
	"delivered_at" timestamp (3) with time zone,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "alert_rules" (
	"name" text PRIMARY KEY NOT NULL,
	"source" text NOT NULL,
	"spec" jsonb NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "alert_transitions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"alert_id" text NOT NULL,
	"seq" integer NOT NULL,
	"rule" text NOT NULL,
	"from_state" text NOT NULL,
	"to_state" text NOT NULL,
	"value" real,
	"epoch" integer NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "alert_instances_state" ON "alert_instances" USING btree ("state");--> statement-breakpoint
CREATE INDEX "alert_instances_rule" ON "alert_instances" USING btree ("rule");--> statement-breakpoint
CREATE UNIQUE INDEX "alert_outbox_alert_seq" ON "alert_outbox" USING btree ("alert_id","seq");--> statement-breakpoint
CREATE INDEX "alert_outbox_pending" ON "alert_outbox" USING btree ("id") WHERE "alert_outbox"."delivered_at" is null;--> statement-breakpoint
CREATE UNIQUE INDEX "alert_transitions_alert_seq" ON "alert_transitions" USING btree ("alert_id","seq");--> statement-breakpoint
CREATE INDEX "alert_transitions_created" ON "alert_transitions" USING btree ("created_at");