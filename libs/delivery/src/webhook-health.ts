import { Logger } from '@nestjs/common';
import { Prisma, type PrismaService } from '@bellhop/database';
import { OPERATIONAL_EVENT_TYPES } from '@bellhop/domain';

export interface WebhookHealthOptions {
  /** How long a webhook must have failed without a single success before it is disabled. */
  autoDisableAfterMs: number;
  /** ...and how many failed (non-test) attempts that run must hold at least. */
  autoDisableMinFailures: number;
}

/**
 * A webhook's run of failures, beyond what each recording does (the recording starts and ends the
 * run, and disables on 410, in its own statement): disabling a webhook that has failed too long.
 */
export class WebhookHealth {
  private readonly logger = new Logger(WebhookHealth.name);

  constructor(
    private readonly prisma: PrismaService,
    private readonly options: WebhookHealthOptions,
  ) {}

  /**
   * Disables the webhook once its run of failures is older than autoDisableAfterMs and holds at
   * least autoDisableMinFailures failed attempts of real (non-test) deliveries. True when it did.
   */
  async checkAutoDisable(webhookId: string): Promise<boolean> {
    const afterMs = this.options.autoDisableAfterMs;
    const [state] = await this.prisma.$queryRaw<Array<{ overdue: boolean }>>`
      SELECT (failing_since <= now() - ${afterMs}::float8 * interval '1 millisecond') AS overdue
        FROM webhooks WHERE id = ${webhookId} AND enabled AND deleted_at IS NULL`;
    if (!state?.overdue) return false;
    const minFailures = this.options.autoDisableMinFailures;
    // The webhook.disabled event is written in the same statement (the worker's relay publishes it).
    const [row] = await this.prisma.$queryRaw<Array<{ disabled: number }>>`
      WITH disabled AS (
        UPDATE webhooks w SET enabled = false, disabled_reason = 'failing', updated_at = now()
         WHERE w.id = ${webhookId} AND w.enabled AND w.deleted_at IS NULL
           AND w.failing_since <= now() - ${afterMs}::float8 * interval '1 millisecond'
           AND (SELECT count(*) FROM (
                 SELECT 1 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                  WHERE d.webhook_id = w.id AND NOT d.test AND a.created_at >= w.failing_since
                    AND (a.error_code IS NOT NULL OR a.response_status IS NULL OR a.response_status NOT BETWEEN 200 AND 299)
                  LIMIT ${minFailures}::int) failures) >= ${minFailures}::int
        RETURNING w.id, w.organization_id, w.project_id, w.name, w.url, w.failing_since
      ), raised AS (
        INSERT INTO operational_outbox (id, organization_id, project_id, type, data, about_webhook_id)
        SELECT gen_random_uuid()::text, d.organization_id, d.project_id, 'webhook.disabled',
               json_build_object('webhookId', d.id, 'name', d.name, 'url', d.url, 'reason', 'failing',
                                 'failingSince', to_char(d.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
               d.id
          FROM disabled d
         -- Not when the run holds only operational deliveries: their failures raise nothing further.
         WHERE EXISTS (SELECT 1 FROM attempts a JOIN deliveries od ON od.id = a.delivery_id
                        WHERE od.webhook_id = d.id AND NOT od.test AND a.created_at >= d.failing_since
                          AND od.event_type NOT IN (${Prisma.join(OPERATIONAL_EVENT_TYPES)})
                          AND (a.error_code IS NOT NULL OR a.response_status IS NULL OR a.response_status NOT BETWEEN 200 AND 299))
        RETURNING 1
      )
      SELECT count(*)::int AS disabled FROM disabled`;
    const disabled = row?.disabled ?? 0;
    if (disabled > 0) this.logger.warn({ msg: 'webhook disabled: failing for too long', webhookId });
    return disabled > 0;
  }
}
