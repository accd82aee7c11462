import { Inject, Injectable } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Prisma, PrismaService } from '@bellhop/database';
import { DeliveryStore, TestAttemptAnnouncer } from '@bellhop/delivery';
import type { Webhook } from '@bellhop/database';
import { AppError, checkTemplate, checkWebhookHeaders, checkWebhookUrl, defaultWebhookName, newId } from '@bellhop/domain';
import { parseRetrySchedule } from '../common/validators';
import { PREVIOUS_SECRET_GRACE_MS, decryptSecret, encryptSecret, generateWebhookSecret, secretsKeyRing } from '@bellhop/signing';
import { TenantScope } from '../auth/principal';
import { AuditContext, AuditService } from '../common/audit.service';
import { PageQuery, page, pageArgs } from '../common/pagination';
import { present } from '../common/present';
import { EventTypesService } from '../event-types/event-types.service';
import { CreateWebhookDto, UpdateWebhookDto } from './dto/webhook.dto';

@Injectable()
export class WebhooksService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly audit: AuditService,
    private readonly deliveries: DeliveryStore,
    private readonly eventTypes: EventTypesService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
    private readonly testAttempts: TestAttemptAnnouncer,
  ) {}

  /**
   * The format and template a webhook ends up with: `template` goes with format "template" (and
   * only with it); a webhook moved to another format drops its template.
   */
  private static formatOf(dto: { format?: string; template?: Record<string, unknown> | null }, current?: { format: string; template: unknown }) {
    const format = dto.format ?? current?.format ?? 'bellwether';
    const template = dto.template !== undefined ? dto.template : format === 'template' ? (current?.template ?? null) : null;
    if (format === 'template') {
      if (template === null || template === undefined) throw AppError.validation([{ field: 'template', message: 'format "template" needs a template: a JSON object' }]);
      const problem = checkTemplate(template);
      if (problem) throw AppError.validation([{ field: 'template', message: problem }]);
    } else if (template !== null) {
      throw AppError.validation([{ field: 'template', message: `template is used only with format "template" (this webhook's format is "${format}")` }]);
    }
    return { format, template: template === null ? Prisma.DbNull : (template as Prisma.InputJsonValue) };
  }

  /** Headers as the body had them (the pipe checked a placeholder: see RawJson). */
  private static checkHeaders(headers: unknown): void {
    if (headers === undefined) return;
    const problem = checkWebhookHeaders(headers);
    if (problem) throw AppError.validation([{ field: 'headers', message: problem }]);
  }

  private checkUrl(url: string): void {
    const problem = checkWebhookUrl(url, { allowHttp: this.config.allowHttpDestinations, allowPrivate: this.config.allowPrivateDestinations });
    if (problem) throw AppError.validation([{ field: 'url', message: `url ${problem}` }]);
  }

  /** The contract's webhook, with the effective retry schedule. */
  present(webhook: Webhook) {
    return present.webhook(webhook, this.config.retryScheduleMs, this.config.autoDisableAfterMs);
  }

  /** Tenant first: a webhook of another organization (or a deleted one) is simply not found. */
  async find(tenant: TenantScope, id: string): Promise<Webhook> {
    const webhook = await this.prisma.webhook.findFirst({ where: { id, organizationId: tenant.organizationId, deletedAt: null } });
    if (!webhook) throw AppError.notFound('Webhook');
    return webhook;
  }

  async create(tenant: TenantScope, projectId: string, dto: CreateWebhookDto, context: AuditContext) {
    this.checkUrl(dto.url);
    WebhooksService.checkHeaders(dto.headers);
    const project = await this.prisma.project.findFirst({
      where: { id: projectId, organizationId: tenant.organizationId },
      select: { organization: { select: { plan: true } } },
    });
    if (!project) throw AppError.notFound('Project');
    if (project.organization.plan === 'free') throw new AppError('plan_limit', 'The free plan does not include webhooks: upgrade to create one');
    const id = newId('webhook');
    const secret = dto.secret ?? generateWebhookSecret();
    const { format, template } = WebhooksService.formatOf(dto);
    const webhook = await this.prisma.$transaction(async (tx) => {
      // The project's own types it subscribes to stay until this commits (see EventTypesService.remove).
      await this.eventTypes.assertSubscribable(tx, tenant, projectId, dto.events);
      const created = await tx.webhook.create({
        data: {
          id,
          organizationId: tenant.organizationId,
          projectId,
          name: dto.name ?? defaultWebhookName(dto.url),
          url: dto.url,
          events: dto.events,
          headers: dto.headers ?? {},
          format,
          template,
          createdByType: tenant.principal.type,
          createdById: tenant.principal.id,
          enabled: dto.enabled ?? true,
          description: dto.description ?? null,
          retryScheduleMs: dto.retrySchedule ? parseRetrySchedule(dto.retrySchedule) : Prisma.DbNull,
          secretCiphertext: encryptSecret(secret, this.config.secretsKey, id),
        },
      });
      await tx.auditLogEntry.create({
        data: this.audit.entry({ ...this.auditBase(tenant, context), action: 'webhook.created', target: { type: 'webhook', id } }),
      });
      return created;
    });
    return { webhook: this.present(webhook), secret };
  }

  async list(tenant: TenantScope, projectId: string, query: PageQuery) {
    const args = pageArgs(query);
    const rows = await this.prisma.webhook.findMany({
      ...args,
      where: { ...args.where, projectId, organizationId: tenant.organizationId, deletedAt: null },
    });
    const { items, nextCursor } = page(rows, query);
    return { webhooks: items.map((w) => this.present(w)), nextCursor };
  }

  async update(tenant: TenantScope, id: string, dto: UpdateWebhookDto, context: AuditContext) {
    const current = await this.find(tenant, id);
    if (dto.url !== undefined) this.checkUrl(dto.url);
    WebhooksService.checkHeaders(dto.headers);
    const reEnabled = dto.enabled === true && !current.enabled;
    const formatChanged = dto.format !== undefined || dto.template !== undefined;
    const { format, template } = formatChanged ? WebhooksService.formatOf(dto, current) : { format: undefined, template: undefined };
    const webhook = await this.prisma.$transaction(async (tx) => {
      if (dto.events !== undefined) await this.eventTypes.assertSubscribable(tx, tenant, current.projectId, dto.events);
      const updated = await tx.webhook.update({
        where: { id: current.id },
        data: {
          name: dto.name,
          url: dto.url,
          events: dto.events,
          headers: dto.headers,
          format,
          template,
          enabled: dto.enabled,
          description: dto.description,
          retryScheduleMs: dto.retrySchedule === undefined ? undefined : dto.retrySchedule === null ? Prisma.DbNull : parseRetrySchedule(dto.retrySchedule),
          // Re-enabling clears the reason and starts the failure clock afresh.
          ...(reEnabled ? { disabledReason: null, failingSince: null } : {}),
        },
      });
      await tx.auditLogEntry.create({
        data: this.audit.entry({ ...this.auditBase(tenant, context), action: 'webhook.updated', target: { type: 'webhook', id } }),
      });
      return updated;
    });
    return { webhook: this.present(webhook) };
  }

  /** Soft delete: the rows stay for history; pending deliveries are cancelled in the same transaction. */
  async remove(tenant: TenantScope, id: string, context: AuditContext): Promise<void> {
    const current = await this.find(tenant, id);
    const now = new Date();
    // Deliveries before the webhook row: the order in which a worker's recording locks them, so
    // that a delete and a recording never wait on each other in a circle.
    const [cancelledTests] = await this.prisma.$transaction([
      this.deliveries.cancelForWebhook(current.id),
      this.prisma.webhook.update({ where: { id: current.id }, data: { deletedAt: now, enabled: false } }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.auditBase(tenant, context), action: 'webhook.deleted', target: { type: 'webhook', id } }),
      }),
    ]);
    // Committed: `?wait=true` requests for these tests, in any API process, can answer with them
    // cancelled. Not awaited: the delete does not depend on Redis (a lost announcement only delays them).
    for (const { id: deliveryId } of cancelledTests) void this.testAttempts.recorded(deliveryId);
  }

  async revealSecret(tenant: TenantScope, id: string, context: AuditContext) {
    const webhook = await this.find(tenant, id);
    const secret = decryptSecret(webhook.secretCiphertext, secretsKeyRing(this.config), webhook.id);
    await this.audit.record({ ...this.auditBase(tenant, context), action: 'webhook.secret_revealed', target: { type: 'webhook', id } });
    return { secret };
  }

  /**
   * One guarded statement reads the current secret and writes its replacement, so concurrent
   * rotations queue on the row and each moves the secret the previous one stored into
   * previous_secrets: every secret handed out is stored, as current or as a previous one that
   * signs for 24 hours. Expired entries are dropped on the way. The audit entry commits with it.
   */
  async rotateSecret(tenant: TenantScope, id: string, context: AuditContext) {
    const secret = generateWebhookSecret();
    // The ciphertext is bound to the row id; it is only stored if `id` is this tenant's webhook.
    const ciphertext = encryptSecret(secret, this.config.secretsKey, id);
    const now = new Date();
    const previousSecretExpiresAt = new Date(now.getTime() + PREVIOUS_SECRET_GRACE_MS).toISOString();
    const rotated = await this.prisma.$transaction(async (tx) => {
      const rows = await tx.$queryRaw<Array<{ id: string }>>`
        UPDATE webhooks
           SET secret_ciphertext = ${ciphertext},
               previous_secrets = jsonb_build_array(jsonb_build_object('ciphertext', secret_ciphertext, 'expiresAt', ${previousSecretExpiresAt}::text))
                 || COALESCE((SELECT jsonb_agg(p.entry ORDER BY p.n)
                                FROM jsonb_array_elements(previous_secrets) WITH ORDINALITY AS p(entry, n)
                               WHERE (p.entry->>'expiresAt')::timestamptz > ${now.toISOString()}::timestamptz), '[]'::jsonb),
               updated_at = ${now.toISOString()}::timestamptz
         WHERE id = ${id} AND organization_id = ${tenant.organizationId} AND deleted_at IS NULL
        RETURNING id`;
      if (rows.length === 0) return false;
      await tx.auditLogEntry.create({
        data: this.audit.entry({ ...this.auditBase(tenant, context), action: 'webhook.secret_rotated', target: { type: 'webhook', id } }),
      });
      return true;
    });
    if (!rotated) throw AppError.notFound('Webhook');
    return { secret, previousSecretExpiresAt };
  }

  private auditBase(tenant: TenantScope, context: AuditContext) {
    return { organizationId: tenant.organizationId, principal: tenant.principal, ...context };
  }
}
