-- Attempts partitioned by month (native declarative partitioning), so that retention drops a
-- whole month instead of deleting its rows one by one.
--
-- The partition key is delivery_id. Delivery ids are ULIDs ("dlv_" + 10 characters of creation
-- time in milliseconds + 16 random ones, Crockford base32, all in 0-9A-Z), which sort in creation
-- order, so a month of delivery creation is a range of ids. All attempts of a delivery are in the
-- month its delivery was created in, which is the age retention goes by, and:
--   - (delivery_id, attempt) stays unique across the whole table, as before;
--   - the look-ups by delivery id (a delivery's attempts, a recording's retry) read one partition.
-- Rows that fall in no month's range (a month already dropped, an id of another shape) go to
-- attempts_default.
--
-- Prisma does not model partitions: schema.prisma describes the parent table, and the worker's
-- retention loop creates the months ahead (bellhop_attempts_add_month) and drops the old ones.

-- The first 10 characters of a ULID made at `at`: its time, in Crockford base32.
CREATE FUNCTION bellhop_ulid_time(at timestamptz) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
  ms bigint := floor(extract(epoch FROM at) * 1000);
  out text := '';
BEGIN
  FOR i IN 1..10 LOOP
    out := substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', (ms % 32)::int + 1, 1) || out;
    ms := ms / 32;
  END LOOP;
  RETURN out;
END $$;

-- The delivery ids of one month (UTC): lower bound included, upper bound excluded.
CREATE FUNCTION bellhop_attempts_month_bounds(month date, OUT lower_bound text, OUT upper_bound text)
LANGUAGE sql IMMUTABLE STRICT AS $$
  SELECT 'dlv_' || bellhop_ulid_time(date_trunc('month', month::timestamp) AT TIME ZONE 'UTC'),
         'dlv_' || bellhop_ulid_time((date_trunc('month', month::timestamp) + interval '1 month') AT TIME ZONE 'UTC')
$$;

-- Adds the partition of the month holding `month` (attempts_YYYY_MM), unless it exists; rows of
-- that range already in attempts_default move into it. True when it added the month.
-- Attaching copies the foreign key (once there is one: this migration adds it last), which locks
-- deliveries against writes (SHARE ROW EXCLUSIVE) until the transaction ends; attempts_default is
-- locked while its rows move. Both are taken first, in the order in which recordings and cascading
-- deletes take them (deliveries, then attempts), so that the function waits for those instead of
-- deadlocking with them. Callers set a short lock_timeout; the worker adds months three ahead, so
-- a month put off is no harm.
CREATE FUNCTION bellhop_attempts_add_month(month date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  part text := 'attempts_' || to_char(month::timestamp, 'YYYY_MM');
  lo text;
  hi text;
BEGIN
  IF to_regclass(quote_ident(part)) IS NOT NULL THEN
    RETURN false;
  END IF;
  SELECT b.lower_bound, b.upper_bound INTO lo, hi FROM bellhop_attempts_month_bounds(month) b;
  IF NOT (lo < hi AND 'dlv_0' < 'dlv_A' AND 'dlv_01' < 'dlv_01Z' AND 'dlv_9Z' < 'dlv_A0' AND 'dlv_0123' < 'dlv_09') THEN
    RAISE EXCEPTION 'the database collation does not sort ULIDs in creation order';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'attempts'::regclass AND contype = 'f') THEN
    LOCK TABLE deliveries IN SHARE ROW EXCLUSIVE MODE;
  END IF;
  LOCK TABLE attempts_default IN ACCESS EXCLUSIVE MODE;
  EXECUTE format('CREATE TABLE %I (LIKE attempts INCLUDING DEFAULTS)', part);
  EXECUTE format(
    'WITH moved AS (DELETE FROM attempts_default WHERE delivery_id >= $1 AND delivery_id < $2 RETURNING *) INSERT INTO %I SELECT * FROM moved',
    part) USING lo, hi;
  EXECUTE format('ALTER TABLE attempts ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
  RETURN true;
END $$;

ALTER TABLE "attempts" RENAME TO "attempts_unpartitioned";
ALTER INDEX "attempts_pkey" RENAME TO "attempts_unpartitioned_pkey";
ALTER INDEX "attempts_delivery_id_attempt_key" RENAME TO "attempts_unpartitioned_delivery_id_attempt_key";
ALTER TABLE "attempts_unpartitioned" RENAME CONSTRAINT "attempts_delivery_id_fkey" TO "attempts_unpartitioned_delivery_id_fkey";

CREATE TABLE "attempts" (
    "id" TEXT NOT NULL,
    "delivery_id" TEXT NOT NULL,
    "attempt" INTEGER NOT NULL,
    "trigger" "AttemptTrigger" NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "request_url" TEXT NOT NULL,
    "request_headers" JSONB NOT NULL,
    "response_status" INTEGER,
    "response_headers" JSONB,
    "response_body" TEXT,
    "response_body_truncated" BOOLEAN NOT NULL DEFAULT false,
    "response_time_ms" INTEGER NOT NULL,
    "error_code" TEXT,
    "error_message" TEXT,

    -- A unique key of a partitioned table must hold the partition key: the attempt number within
    -- its delivery is the key, and an attempt's own id is unique within its delivery.
    CONSTRAINT "attempts_pkey" PRIMARY KEY ("delivery_id", "attempt"),
    CONSTRAINT "attempts_delivery_id_id_key" UNIQUE ("delivery_id", "id")
) PARTITION BY RANGE ("delivery_id");

CREATE TABLE "attempts_default" PARTITION OF "attempts" DEFAULT;

-- A partition for every month of the deliveries there are, through three months from now.
SELECT bellhop_attempts_add_month(m::date)
  FROM generate_series(date_trunc('month', LEAST(now(), (SELECT min(created_at) FROM deliveries)) AT TIME ZONE 'UTC'),
                       date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months',
                       interval '1 month') AS m;

INSERT INTO "attempts" ("id", "delivery_id", "attempt", "trigger", "created_at", "request_url", "request_headers", "response_status",
                        "response_headers", "response_body", "response_body_truncated", "response_time_ms", "error_code", "error_message")
SELECT "id", "delivery_id", "attempt", "trigger", "created_at", "request_url", "request_headers", "response_status",
       "response_headers", "response_body", "response_body_truncated", "response_time_ms", "error_code", "error_message"
  FROM "attempts_unpartitioned";

-- The foreign key after the copy: one check of the whole table instead of one per row, with
-- deliveries locked against writes only (reads go on).
ALTER TABLE "attempts" ADD CONSTRAINT "attempts_delivery_id_fkey" FOREIGN KEY ("delivery_id") REFERENCES "deliveries"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Last: dropping the old table removes its foreign key's triggers from deliveries, which locks
-- deliveries entirely, for an instant at the end of the transaction.
DROP TABLE "attempts_unpartitioned";
