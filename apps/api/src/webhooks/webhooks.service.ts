import { Inject, Injectable } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import type { Webhook } from '@bellhop/database';
import { AppError, checkWebhookUrl, newId } from '@bellhop/domain';
import { decryptSecret, encryptSecret, generateWebhookSecret } from '@bellhop/signing';
import { TenantScope } from '../auth/principal';
import { AuditService } from '../common/audit.service';
import { PageQuery, page, pageArgs } from '../common/pagination';
import { present } from '../common/present';
import { CreateWebhookDto, UpdateWebhookDto } from './dto/webhook.dto';

/** How long a rotated-out secret keeps signing, so receivers can roll over without dropping events. */
export const PREVIOUS_SECRET_GRACE_MS = 24 * 60 * 60 * 1000;

@Injectable()
export class WebhooksService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly audit: AuditService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {}

  private checkUrl(url: string): void {
    const problem = checkWebhookUrl(url, { allowHttp: this.config.allowHttpDestinations, allowPrivate: this.config.allowPrivateDestinations });
    if (problem) throw AppError.validation([{ field: 'url', message: `url ${problem}` }]);
  }

  /** Tenant first: a webhook of another organization (or a deleted one) is simply not found. */
  async find(tenant: TenantScope, id: string): Promise<Webhook> {
    const webhook = await this.prisma.webhook.findFirst({ where: { id, organizationId: tenant.organizationId, deletedAt: null } });
    if (!webhook) throw AppError.notFound('Webhook');
    return webhook;
  }

  async create(tenant: TenantScope, projectId: string, dto: CreateWebhookDto, requestId: string) {
    this.checkUrl(dto.url);
    const project = await this.prisma.project.findFirst({
      where: { id: projectId, organizationId: tenant.organizationId },
      select: { organization: { select: { plan: true } } },
    });
    if (!project) throw AppError.notFound('Project');
    if (project.organization.plan === 'free') throw new AppError('plan_limit', 'The free plan does not include webhooks: upgrade to create one');
    const id = newId('webhook');
    const secret = generateWebhookSecret();
    const [webhook] = await this.prisma.$transaction([
      this.prisma.webhook.create({
        data: {
          id,
          organizationId: tenant.organizationId,
          projectId,
          url: dto.url,
          events: dto.events,
          enabled: dto.enabled ?? true,
          description: dto.description ?? null,
          secretCiphertext: encryptSecret(secret, this.config.secretsKey, id),
        },
      }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.auditBase(tenant, requestId), action: 'webhook.created', target: { type: 'webhook', id } }),
      }),
    ]);
    return { webhook: present.webhook(webhook), secret };
  }

  async list(tenant: TenantScope, projectId: string, query: PageQuery) {
    const args = pageArgs(query);
    const rows = await this.prisma.webhook.findMany({
      ...args,
      where: { ...args.where, projectId, organizationId: tenant.organizationId, deletedAt: null },
    });
    const { items, nextCursor } = page(rows, query);
    return { webhooks: items.map(present.webhook), nextCursor };
  }

  async update(tenant: TenantScope, id: string, dto: UpdateWebhookDto, requestId: string) {
    const current = await this.find(tenant, id);
    if (dto.url !== undefined) this.checkUrl(dto.url);
    const reEnabled = dto.enabled === true && !current.enabled;
    const [webhook] = await this.prisma.$transaction([
      this.prisma.webhook.update({
        where: { id: current.id },
        data: {
          url: dto.url,
          events: dto.events,
          enabled: dto.enabled,
          description: dto.description,
          // Re-enabling clears the reason and starts the failure clock afresh.
          ...(reEnabled ? { disabledReason: null, failingSince: null } : {}),
        },
      }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.auditBase(tenant, requestId), action: 'webhook.updated', target: { type: 'webhook', id } }),
      }),
    ]);
    return { webhook: present.webhook(webhook) };
  }

  /** Soft delete: the rows stay for history; pending deliveries are cancelled in the same transaction. */
  async remove(tenant: TenantScope, id: string, requestId: string): Promise<void> {
    const current = await this.find(tenant, id);
    const now = new Date();
    await this.prisma.$transaction([
      this.prisma.webhook.update({ where: { id: current.id }, data: { deletedAt: now, enabled: false } }),
      this.prisma.delivery.updateMany({
        where: { webhookId: current.id, status: 'pending' },
        data: { status: 'cancelled', completedAt: now, nextAttemptAt: null },
      }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.auditBase(tenant, requestId), action: 'webhook.deleted', target: { type: 'webhook', id } }),
      }),
    ]);
  }

  async revealSecret(tenant: TenantScope, id: string, requestId: string) {
    const webhook = await this.find(tenant, id);
    const secret = decryptSecret(webhook.secretCiphertext, this.config.secretsKey, webhook.id);
    await this.audit.record({ ...this.auditBase(tenant, requestId), action: 'webhook.secret_revealed', target: { type: 'webhook', id } });
    return { secret };
  }

  async rotateSecret(tenant: TenantScope, id: string, requestId: string) {
    const webhook = await this.find(tenant, id);
    const secret = generateWebhookSecret();
    const previousSecretExpiresAt = new Date(Date.now() + PREVIOUS_SECRET_GRACE_MS);
    await this.prisma.$transaction([
      this.prisma.webhook.update({
        where: { id: webhook.id },
        data: {
          secretCiphertext: encryptSecret(secret, this.config.secretsKey, webhook.id),
          previousSecretCiphertext: webhook.secretCiphertext,
          previousSecretExpiresAt,
        },
      }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.auditBase(tenant, requestId), action: 'webhook.secret_rotated', target: { type: 'webhook', id } }),
      }),
    ]);
    return { secret, previousSecretExpiresAt: previousSecretExpiresAt.toISOString() };
  }

  private auditBase(tenant: TenantScope, requestId: string) {
    return { organizationId: tenant.organizationId, principal: tenant.principal, requestId };
  }
}
