import { Inject, Injectable } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { AppError, newId } from '@bellhop/domain';
import { encryptSecret, generateSourceSecret } from '@bellhop/signing';
import { TenantScope } from '../auth/principal';
import { AuditContext, AuditService } from '../common/audit.service';
import { PageQuery, page, pageArgs } from '../common/pagination';
import { present } from '../common/present';
import { CreateSourceDto } from './dto/create-source.dto';

/**
 * A project's inbound sources: where GitHub or GitLab posts (`<PUBLIC_URL>/ingest/<id>`) and the
 * secret it proves itself with, stored encrypted like a webhook's and shown only at creation.
 */
@Injectable()
export class SourcesService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly audit: AuditService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {}

  async create(tenant: TenantScope, projectId: string, dto: CreateSourceDto, context: AuditContext) {
    const project = await this.prisma.project.findFirst({ where: { id: projectId, organizationId: tenant.organizationId }, select: { id: true } });
    if (!project) throw AppError.notFound('Project');
    const id = newId('source');
    const secret = dto.secret ?? generateSourceSecret();
    const [source] = await this.prisma.$transaction([
      this.prisma.source.create({
        data: {
          id,
          organizationId: tenant.organizationId,
          projectId,
          name: dto.name,
          type: dto.type,
          // Bound to the source id, exactly as a webhook's secret is to the webhook's.
          secretCiphertext: encryptSecret(secret, this.config.secretsKey, id),
          createdByType: tenant.principal.type,
          createdById: tenant.principal.id,
        },
      }),
      this.prisma.auditLogEntry.create({ data: this.audit.entry({ ...this.auditBase(tenant, context), action: 'source.created', target: { type: 'source', id } }) }),
    ]);
    return { source: present.source(source, this.config.publicUrl), secret };
  }

  async list(tenant: TenantScope, projectId: string, query: PageQuery) {
    const args = pageArgs(query);
    const rows = await this.prisma.source.findMany({ ...args, where: { ...args.where, projectId, organizationId: tenant.organizationId } });
    const { items, nextCursor } = page(rows, query);
    return { sources: items.map((s) => present.source(s, this.config.publicUrl)), nextCursor };
  }

  /** Removed at once: deliveries to it are 404 from then on. The events it published stay. */
  async remove(tenant: TenantScope, id: string, context: AuditContext): Promise<void> {
    const removed = await this.prisma.$transaction(async (tx) => {
      const { count } = await tx.source.deleteMany({ where: { id, organizationId: tenant.organizationId } });
      if (count === 0) return false;
      await tx.auditLogEntry.create({ data: this.audit.entry({ ...this.auditBase(tenant, context), action: 'source.deleted', target: { type: 'source', id } }) });
      return true;
    });
    if (!removed) throw AppError.notFound('Source');
  }

  private auditBase(tenant: TenantScope, context: AuditContext) {
    return { organizationId: tenant.organizationId, principal: tenant.principal, ...context };
  }
}
