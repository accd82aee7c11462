-- Delivery lifecycle: fenced leases, manual attempts outside the schedule, per-webhook retry
-- schedules, and every rotated-out secret that still signs.

-- AlterEnum
ALTER TYPE "AttemptTrigger" ADD VALUE 'replay';

-- Webhooks: previous secrets as a list (each with its own expiry), own retry schedule.
ALTER TABLE "webhooks" ADD COLUMN "previous_secrets" JSONB NOT NULL DEFAULT '[]',
ADD COLUMN "retry_schedule_ms" JSONB;

UPDATE "webhooks"
   SET "previous_secrets" = jsonb_build_array(jsonb_build_object(
         'ciphertext', "previous_secret_ciphertext",
         'expiresAt', to_char("previous_secret_expires_at" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
 WHERE "previous_secret_ciphertext" IS NOT NULL AND "previous_secret_expires_at" > now();

ALTER TABLE "webhooks" DROP COLUMN "previous_secret_ciphertext",
DROP COLUMN "previous_secret_expires_at";

-- Deliveries: the lease gets a token and the trigger it was taken for, a manual attempt waits in
-- its own columns instead of overwriting the schedule, and scheduled attempts are counted apart.
ALTER TABLE "deliveries" ADD COLUMN "lease_token" TEXT,
ADD COLUMN "lease_trigger" "AttemptTrigger",
ADD COLUMN "manual_requested_at" TIMESTAMPTZ(3),
ADD COLUMN "manual_trigger" "AttemptTrigger",
ADD COLUMN "scheduled_attempts" INTEGER NOT NULL DEFAULT 0,
ALTER COLUMN "next_attempt_at" SET DEFAULT CURRENT_TIMESTAMP;

UPDATE "deliveries" SET "scheduled_attempts" = "attempt_count" WHERE "attempt_count" > 0;

-- A manual retry that was waiting keeps waiting, now outside the schedule. The earlier code had
-- put its delivery back to pending, which would now also give it automatic attempts: it gets back
-- the outcome of its last attempt instead (a delivery never attempted stays pending).
UPDATE "deliveries"
   SET "manual_requested_at" = COALESCE("next_attempt_at", now()), "manual_trigger" = 'manual',
       "status" = CASE WHEN "last_status_code" BETWEEN 200 AND 299 THEN 'succeeded'::"DeliveryStatus" ELSE 'failed'::"DeliveryStatus" END,
       "completed_at" = COALESCE("completed_at", now()),
       "next_attempt_at" = NULL
 WHERE "next_trigger" = 'manual' AND "status" = 'pending' AND "attempt_count" > 0;

ALTER TABLE "deliveries" DROP COLUMN "next_trigger";

-- The sweeper's look-ups: manual attempts asked for and not yet recorded, and pending deliveries in
-- due order with the id as tie-breaker for its keyset pages (this replaces the (status,
-- next_attempt_at) index). No index names a column that a claim changes (the lease columns,
-- manual_trigger), so that a claim stays a HOT update.
CREATE INDEX "deliveries_manual_requested_at_idx" ON "deliveries"("manual_requested_at", "id") WHERE "manual_requested_at" IS NOT NULL;
CREATE INDEX "deliveries_pending_due_idx" ON "deliveries"("next_attempt_at", "id") WHERE "status" = 'pending';
DROP INDEX "deliveries_status_next_attempt_at_idx";

-- Room on each page for a row's next version, so that a claim (which changes no indexed column)
-- can be a HOT update even on rows that a fan-out wrote into full pages.
ALTER TABLE "deliveries" SET (fillfactor = 85);
