CREATE TABLE "alert_dead_letters" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"sink" text NOT NULL,
	"alert_id" text NOT NULL,
	"rule" text NOT NULL,
	"state" text NOT NULL,
	"reason" text NOT NULL,
	"attempts" integer NOT NULL,
	"last_error" text,
	"alert" jsonb NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "alert_dead_letters_created" ON "alert_dead_letters" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "alert_dead_letters_sink" ON "alert_dead_letters" USING btree ("sink","created_at");