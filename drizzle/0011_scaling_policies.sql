CREATE TABLE "scaling_decisions" (
	"id" serial PRIMARY KEY NOT NULL,
	"model_id" text NOT NULL,
	"version" text NOT NULL,
	"at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"from_instances" integer NOT NULL,
	"to_instances" integer NOT NULL,
	"recommended" integer NOT NULL,
	"scaler" text NOT NULL,
	"actuator" text NOT NULL,
	"reason" text NOT NULL,
	"outcome" text NOT NULL,
	"error" text
);
--> statement-breakpoint
CREATE TABLE "scaling_policies" (
	"model_id" text NOT NULL,
	"version" text NOT NULL,
	"policy" jsonb NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "scaling_policies_model_id_version_pk" PRIMARY KEY("model_id","version")
);
--> statement-breakpoint
CREATE INDEX "scaling_decisions_model_at" ON "scaling_decisions" USING btree ("model_id","version","id");