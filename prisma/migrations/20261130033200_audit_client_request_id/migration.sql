-- AlterTable
ALTER TABLE "audit_log" ADD COLUMN     "client_request_id" TEXT;
