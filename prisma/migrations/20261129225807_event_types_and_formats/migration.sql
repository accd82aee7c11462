-- A project's own event types, a webhook's format and template, the body a delivery sends when
-- it is not the event's envelope, and the times a webhook's health is read from.
-- AlterTable
ALTER TABLE "webhooks" ADD COLUMN     "format" TEXT NOT NULL DEFAULT 'bellwether',
ADD COLUMN     "last_delivery_at" TIMESTAMPTZ(3),
ADD COLUMN     "last_failure_at" TIMESTAMPTZ(3),
ADD COLUMN     "last_success_at" TIMESTAMPTZ(3),
ADD COLUMN     "template" JSON;

-- AlterTable
ALTER TABLE "deliveries" ADD COLUMN     "body" TEXT;

-- CreateTable
CREATE TABLE "event_types" (
    "project_id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "organization_id" TEXT NOT NULL,
    "category" TEXT NOT NULL,
    "description" TEXT,
    "schema" JSONB,
    "version" SERIAL NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "event_types_pkey" PRIMARY KEY ("project_id","type")
);

-- AddForeignKey
ALTER TABLE "event_types" ADD CONSTRAINT "event_types_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;
