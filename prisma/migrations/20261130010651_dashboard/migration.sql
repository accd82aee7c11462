-- The dashboard: a delivery's project (project-wide search and retention), its last error code
-- and replay, a project's retention, hourly rollups per webhook for the stats routes, replays,
-- and the outbox of operational events.
-- AlterTable
ALTER TABLE "projects" ADD COLUMN     "retention_days" INTEGER;

-- AlterTable
ALTER TABLE "deliveries" ADD COLUMN     "last_error_code" TEXT,
ADD COLUMN     "project_id" TEXT,
ADD COLUMN     "replay_id" TEXT;

-- CreateTable
CREATE TABLE "webhook_stats_hourly" (
    "webhook_id" TEXT NOT NULL,
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "project_id" TEXT NOT NULL,
    "deliveries_succeeded" INTEGER NOT NULL DEFAULT 0,
    "deliveries_failed" INTEGER NOT NULL DEFAULT 0,
    "deliveries_cancelled" INTEGER NOT NULL DEFAULT 0,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "attempts_succeeded" INTEGER NOT NULL DEFAULT 0,
    "attempts_failed" INTEGER NOT NULL DEFAULT 0,
    "latency" INTEGER[] NOT NULL DEFAULT ARRAY[]::INTEGER[],

    CONSTRAINT "webhook_stats_hourly_pkey" PRIMARY KEY ("webhook_id","hour")
);

-- CreateTable
CREATE TABLE "webhook_stats_deltas" (
    "id" BIGSERIAL NOT NULL,
    "webhook_id" TEXT NOT NULL,
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "project_id" TEXT NOT NULL,
    "deliveries_succeeded" INTEGER NOT NULL DEFAULT 0,
    "deliveries_failed" INTEGER NOT NULL DEFAULT 0,
    "deliveries_cancelled" INTEGER NOT NULL DEFAULT 0,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "attempts_succeeded" INTEGER NOT NULL DEFAULT 0,
    "attempts_failed" INTEGER NOT NULL DEFAULT 0,
    "buckets" INTEGER[] DEFAULT ARRAY[]::INTEGER[],
    "errors" TEXT[] DEFAULT ARRAY[]::TEXT[],

    CONSTRAINT "webhook_stats_deltas_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "webhook_errors_hourly" (
    "webhook_id" TEXT NOT NULL,
    "hour" TIMESTAMPTZ(3) NOT NULL,
    "code" TEXT NOT NULL,
    "count" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "webhook_errors_hourly_pkey" PRIMARY KEY ("webhook_id","hour","code")
);

-- CreateTable
CREATE TABLE "replays" (
    "id" TEXT NOT NULL,
    "organization_id" TEXT NOT NULL,
    "project_id" TEXT NOT NULL,
    "webhook_id" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'running',
    "from_time" TIMESTAMPTZ(3) NOT NULL,
    "to_time" TIMESTAMPTZ(3) NOT NULL,
    "statuses" TEXT[],
    "event_type" TEXT,
    "matched" INTEGER NOT NULL,
    "queued" INTEGER NOT NULL DEFAULT 0,
    "succeeded" INTEGER NOT NULL DEFAULT 0,
    "failed" INTEGER NOT NULL DEFAULT 0,
    "cursor" TEXT,
    "last_id" TEXT,
    "created_by_type" TEXT NOT NULL,
    "created_by_id" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completed_at" TIMESTAMPTZ(3),

    CONSTRAINT "replays_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "operational_outbox" (
    "id" TEXT NOT NULL,
    "organization_id" TEXT NOT NULL,
    "project_id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "data" JSON NOT NULL,
    "about_webhook_id" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "operational_outbox_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "webhook_stats_hourly_project_id_hour_idx" ON "webhook_stats_hourly"("project_id", "hour");

-- CreateIndex
CREATE INDEX "replays_webhook_id_id_idx" ON "replays"("webhook_id", "id");

-- CreateIndex
CREATE INDEX "replays_status_idx" ON "replays"("status");

-- CreateIndex
CREATE INDEX "deliveries_project_id_id_idx" ON "deliveries"("project_id", "id");

-- CreateIndex
CREATE INDEX "deliveries_project_id_status_id_idx" ON "deliveries"("project_id", "status", "id");

-- Existing deliveries: their project, and the error code of their last attempt.
UPDATE "deliveries" d SET "project_id" = w."project_id" FROM "webhooks" w WHERE w."id" = d."webhook_id";
ALTER TABLE "deliveries" ALTER COLUMN "project_id" SET NOT NULL;
UPDATE "deliveries" d SET "last_error_code" = a."error_code"
  FROM "attempts" a WHERE a."delivery_id" = d."id" AND a."attempt" = d."attempt_count" AND a."error_code" IS NOT NULL;

-- A replay's attempts still to be made (a handful per running replay).
CREATE INDEX "deliveries_replay_waiting_idx" ON "deliveries"("replay_id") WHERE "manual_requested_at" IS NOT NULL;

-- Searches for a rare last error code, and for test deliveries: small partial indexes, so that a
-- code no delivery has is answered without reading the whole project.
CREATE INDEX "deliveries_project_error_idx" ON "deliveries"("project_id", "last_error_code", "id") WHERE "last_error_code" IS NOT NULL;
CREATE INDEX "deliveries_project_test_idx" ON "deliveries"("project_id", "id") WHERE "test";

-- The relay publishes the outbox oldest first.
CREATE INDEX "operational_outbox_created_at_id_idx" ON "operational_outbox"("created_at", "id");

-- Latency buckets: 0 is under 1 ms, bucket i (1..120) holds [1.1^(i-1), 1.1^i) ms, 120 also everything above.
CREATE FUNCTION bellhop_latency_bucket(ms double precision) RETURNS int
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $fn$ SELECT CASE WHEN ms < 1 THEN 0 ELSE LEAST(120, 1 + floor(ln(ms) / ln(1.1))::int) END $fn$;

-- Element-wise sum of two count arrays (the shorter one padded with zeros).
CREATE FUNCTION bellhop_counts_add(a int[], b int[]) RETURNS int[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $fn$ SELECT COALESCE(array_agg(COALESCE(x, 0) + COALESCE(y, 0) ORDER BY i), '{}') FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i) $fn$;

-- Bucket indexes to a count array.
CREATE FUNCTION bellhop_histogram(buckets int[]) RETURNS int[]
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $fn$ SELECT COALESCE(array_agg((SELECT count(*) FROM unnest(buckets) b WHERE b = g)::int ORDER BY g), '{}')
            FROM generate_series(0, (SELECT max(b) FROM unnest(buckets) b)) g $fn$;

CREATE AGGREGATE bellhop_counts_sum(int[]) (SFUNC = bellhop_counts_add, STYPE = int[], INITCOND = '{}');

-- Rollups of the history kept so far.
INSERT INTO "webhook_stats_hourly" ("webhook_id", "hour", "project_id", "deliveries_succeeded", "deliveries_failed",
                                    "deliveries_cancelled", "attempts", "attempts_succeeded", "attempts_failed", "latency")
SELECT s.webhook_id, s.hour, max(s.project_id), sum(s.ds), sum(s.df), sum(s.dc), sum(s.a), sum(s.asu), sum(s.af), bellhop_counts_sum(s.lat)
  FROM (
    SELECT d."webhook_id", date_trunc('hour', d."created_at", 'UTC') AS hour, d."project_id",
           count(*) FILTER (WHERE d."status" = 'succeeded') AS ds, count(*) FILTER (WHERE d."status" = 'failed') AS df,
           count(*) FILTER (WHERE d."status" = 'cancelled') AS dc, 0 AS a, 0 AS asu, 0 AS af, '{}'::int[] AS lat
      FROM "deliveries" d
     WHERE NOT d."test" AND d."status" <> 'pending'
     GROUP BY 1, 2, 3
    UNION ALL
    SELECT d."webhook_id", date_trunc('hour', a."created_at", 'UTC'), d."project_id", 0, 0, 0, count(*),
           count(*) FILTER (WHERE a."error_code" IS NULL AND a."response_status" BETWEEN 200 AND 299),
           count(*) FILTER (WHERE NOT (a."error_code" IS NULL AND a."response_status" BETWEEN 200 AND 299)),
           bellhop_histogram(COALESCE(array_agg(bellhop_latency_bucket(a."response_time_ms")) FILTER (WHERE a."response_status" IS NOT NULL), '{}'))
      FROM "attempts" a JOIN "deliveries" d ON d."id" = a."delivery_id"
     WHERE NOT d."test"
     GROUP BY 1, 2, 3
  ) s
 GROUP BY s.webhook_id, s.hour;

INSERT INTO "webhook_errors_hourly" ("webhook_id", "hour", "code", "count")
SELECT d."webhook_id", date_trunc('hour', a."created_at", 'UTC'), COALESCE(a."error_code", 'http_' || a."response_status"), count(*)
  FROM "attempts" a JOIN "deliveries" d ON d."id" = a."delivery_id"
 WHERE NOT d."test" AND NOT (a."error_code" IS NULL AND a."response_status" BETWEEN 200 AND 299)
   AND (a."error_code" IS NOT NULL OR a."response_status" IS NOT NULL)
 GROUP BY 1, 2, 3;
