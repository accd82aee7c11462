-- Webhook fields: a name (the URL's host for existing webhooks), custom request headers, and who
-- created it (unknown for existing webhooks).
ALTER TABLE "webhooks" ADD COLUMN "name" TEXT,
ADD COLUMN "headers" JSONB NOT NULL DEFAULT '{}',
ADD COLUMN "created_by_type" TEXT,
ADD COLUMN "created_by_id" TEXT;

UPDATE "webhooks" SET "name" = COALESCE(substring("url" from '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?(\[[^]]*\]|[^:/?#]*)'), "url");

ALTER TABLE "webhooks" ALTER COLUMN "name" SET NOT NULL;
