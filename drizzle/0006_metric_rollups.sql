CREATE TABLE "metric_rollups" (
	"metric" text NOT NULL,
	"labels_key" text NOT NULL,
	"labels" jsonb NOT NULL,
	"minute" timestamp (3) with time zone NOT NULL,
	"count" integer NOT NULL,
	"sum" double precision NOT NULL,
	"min" double precision NOT NULL,
	"max" double precision NOT NULL,
	CONSTRAINT "metric_rollups_metric_labels_key_minute_pk" PRIMARY KEY("metric","labels_key","minute")
);
--> statement-breakpoint
CREATE INDEX "metric_rollups_minute" ON "metric_rollups" USING btree ("minute");