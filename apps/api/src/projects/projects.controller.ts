import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService, type Project } from '@bellhop/database';
import { AppError, newId } from '@bellhop/domain';
import { Audit, Authenticated, CurrentPrincipal, MembershipService, Tenant, forgetProject } from '../auth/auth.guards';
import { AuditContext, AuditService } from '../common/audit.service';
import { Principal, TenantScope, roleAtLeast } from '../auth/principal';
import { PageQuery, page, pageArgs } from '../common/pagination';
import { present } from '../common/present';
import { CreateProjectDto, UpdateProjectDto } from './dto/project.dto';

@ApiTags('projects')
@Controller('projects')
export class ProjectsController {
  constructor(
    private readonly prisma: PrismaService,
    private readonly memberships: MembershipService,
    private readonly audit: AuditService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {}

  private present(project: Project) {
    return present.project(project, this.config.retentionDays);
  }

  @Post()
  @Authenticated()
  @ApiOperation({ summary: 'Create a project (owner or admin of its organization)' })
  async create(@CurrentPrincipal() principal: Principal, @Body() dto: CreateProjectDto) {
    const mine = await this.memberships.of(principal);
    let organizationId = dto.organizationId;
    if (!organizationId) {
      if (mine.size !== 1) {
        throw AppError.validation([{ field: 'organizationId', message: 'organizationId is required when you belong to several organizations' }]);
      }
      organizationId = [...mine.keys()][0];
    }
    const role = mine.get(organizationId);
    if (!role) throw AppError.notFound('Organization');
    if (!roleAtLeast(role, 'admin')) throw AppError.forbidden();
    // Left out, the project follows the RETENTION_DAYS setting (null), also when the setting changes later.
    const project = await this.prisma.project.create({
      data: { id: newId('project'), name: dto.name, organizationId, retentionDays: dto.retentionDays ?? null },
    });
    return { project: this.present(project) };
  }

  @Get()
  @Authenticated()
  @ApiOperation({ summary: 'Projects of every organization the caller belongs to, newest first' })
  async list(@CurrentPrincipal() principal: Principal, @Query() query: PageQuery) {
    const orgIds = [...(await this.memberships.of(principal)).keys()];
    const args = pageArgs(query);
    const rows = await this.prisma.project.findMany({ ...args, where: { ...args.where, organizationId: { in: orgIds } } });
    const { items, nextCursor } = page(rows, query);
    return { projects: items.map((project) => this.present(project)), nextCursor };
  }

  @Get(':projectId')
  @Authenticated()
  async get(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string) {
    return { project: this.present(await this.find(tenant, projectId)) };
  }

  @Patch(':projectId')
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: "Rename a project or change its history's retention (owner or admin)" })
  async update(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Body() dto: UpdateProjectDto, @Audit() context: AuditContext) {
    if (dto.name === undefined && dto.retentionDays === undefined) {
      throw new AppError('validation_failed', 'Nothing to change: give name or retentionDays', [{ field: 'name', message: 'give name or retentionDays' }]);
    }
    await this.find(tenant, projectId);
    // A shorter retention takes effect at the worker's next purge (RETENTION_INTERVAL).
    const [project] = await this.prisma.$transaction([
      this.prisma.project.update({ where: { id: projectId }, data: { name: dto.name, retentionDays: dto.retentionDays } }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ organizationId: tenant.organizationId, principal: tenant.principal, ...context, action: 'project.updated', target: { type: 'project', id: projectId } }),
      }),
    ]);
    return { project: this.present(project) };
  }

  @Delete(':projectId')
  @HttpCode(204)
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'Delete a project with its webhooks, events and delivery history' })
  async remove(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Audit() context: AuditContext): Promise<void> {
    // The audit entry belongs to the organization, so it outlives the project.
    const count = await this.prisma.$transaction(async (tx) => {
      const { count: deleted } = await tx.project.deleteMany({ where: { id: projectId, organizationId: tenant.organizationId } });
      if (deleted > 0) {
        await tx.auditLogEntry.create({
          data: this.audit.entry({ organizationId: tenant.organizationId, principal: tenant.principal, ...context, action: 'project.deleted', target: { type: 'project', id: projectId } }),
        });
      }
      return deleted;
    });
    forgetProject(projectId);
    if (count === 0) throw AppError.notFound('Project');
  }

  private async find(tenant: TenantScope, id: string) {
    const project = await this.prisma.project.findFirst({ where: { id, organizationId: tenant.organizationId } });
    if (!project) throw AppError.notFound('Project');
    return project;
  }
}
