import { Logger } from '@nestjs/common';
import type { PrismaService } from '@bellhop/database';

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
    const disabled = await this.prisma.$executeRaw`
      UPDATE webhooks w SET enabled = false, disabled_reason = 'failing', updated_at = now()
       WHERE w.id = ${webhookId} AND w.enabled AND w.deleted_at IS NULL
         AND w.failing_since <= now() - ${afterMs}::float8 * interval '1 millisecond'
         AND (SELECT count(*) FROM (
               SELECT 1 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                WHERE d.webhook_id = w.id AND NOT d.test AND a.created_at >= w.failing_since
                  AND (a.error_code IS NOT NULL OR a.response_status IS NULL OR a.response_status NOT BETWEEN 200 AND 299)
                LIMIT ${minFailures}::int) failures) >= ${minFailures}::int`;
    if (disabled > 0) this.logger.warn({ msg: 'webhook disabled: failing for too long', webhookId });
    return disabled > 0;
  }
}
