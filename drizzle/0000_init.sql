CREATE TABLE "inferences" (
	"id" text PRIMARY KEY NOT NULL,
	"model_id" text NOT NULL,
	"version" text NOT NULL,
	"instance_id" text,
	"variant" text,
	"principal_id" text,
	"entry" text NOT NULL,
	"ok" boolean NOT NULL,
	"error_code" text,
	"latency_ms" real NOT NULL,
	"prompt_tokens" integer DEFAULT 0 NOT NULL,
	"completion_tokens" integer DEFAULT 0 NOT NULL,
	"shadow" boolean DEFAULT false NOT NULL,
	"output" text,
	"feedback_score" real,
	"feedback_label" text,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "instances" (
	"id" text PRIMARY KEY NOT NULL,
	"model_id" text NOT NULL,
	"version_id" text NOT NULL,
	"backend" text NOT NULL,
	"endpoint" text,
	"device" text,
	"options" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"weight" real DEFAULT 1 NOT NULL,
	"status" text DEFAULT 'registered' NOT NULL,
	"status_reason" text,
	"runtime" text,
	"worker_id" text,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "model_versions" (
	"id" text PRIMARY KEY NOT NULL,
	"model_id" text NOT NULL,
	"version" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "models" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"task" text NOT NULL,
	"labels" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"default_version" text,
	"routing" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "workers" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"endpoint" text NOT NULL,
	"devices" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"status" text DEFAULT 'healthy' NOT NULL,
	"heartbeat_interval_ms" integer DEFAULT 5000 NOT NULL,
	"last_heartbeat_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_model_id_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."models"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_version_id_model_versions_id_fk" FOREIGN KEY ("version_id") REFERENCES "public"."model_versions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "instances" ADD CONSTRAINT "instances_worker_id_workers_id_fk" FOREIGN KEY ("worker_id") REFERENCES "public"."workers"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_versions" ADD CONSTRAINT "model_versions_model_id_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."models"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "inferences_model_created" ON "inferences" USING btree ("model_id","created_at");--> statement-breakpoint
CREATE INDEX "instances_version" ON "instances" USING btree ("version_id");--> statement-breakpoint
CREATE INDEX "instances_model" ON "instances" USING btree ("model_id");--> statement-breakpoint
CREATE UNIQUE INDEX "model_versions_model_version" ON "model_versions" USING btree ("model_id","version");--> statement-breakpoint
CREATE INDEX "models_created_at_id" ON "models" USING btree ("created_at","id");