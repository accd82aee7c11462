import { Injectable } from '@nestjs/common';
import { PrismaService, isUniqueViolation } from '@bellhop/database';
import type { Role } from '@bellhop/database';
import { AppError, newId } from '@bellhop/domain';
import { ApiTokenVerifier } from '../auth/api-tokens.service';
import { Principal, TenantScope, roleAtLeast } from '../auth/principal';
import { AuditService } from '../common/audit.service';
import { PageQuery, page, pageArgs } from '../common/pagination';
import { present } from '../common/present';
import { AddMemberDto, CreateApiTokenDto, UpdateOrganizationDto } from './dto/organization.dto';

/** Members an organization may have on each plan. */
const MEMBER_LIMIT: Record<string, number> = { free: 1, solo: 1, team: Number.POSITIVE_INFINITY };

@Injectable()
export class OrganizationsService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly audit: AuditService,
  ) {}

  async list(principal: Principal) {
    if (principal.type === 'api_token') {
      const org = await this.prisma.organization.findFirstOrThrow({ where: { id: principal.tokenOrganizationId! } });
      return { organizations: [{ ...present.organization(org), role: principal.tokenRole }] };
    }
    const rows = await this.prisma.membership.findMany({
      where: { userId: principal.userId! },
      include: { organization: true },
      orderBy: { organizationId: 'desc' },
    });
    return { organizations: rows.map((m) => ({ ...present.organization(m.organization), role: m.role })) };
  }

  async create(principal: Principal, name: string, plan: 'free' | 'solo' | 'team') {
    if (principal.type !== 'user') throw AppError.forbidden('API tokens cannot create organizations');
    const id = newId('organization');
    const [organization] = await this.prisma.$transaction([
      this.prisma.organization.create({ data: { id, name, plan } }),
      this.prisma.membership.create({ data: { organizationId: id, userId: principal.userId!, role: 'owner' } }),
    ]);
    return { organization: present.organization(organization) };
  }

  async update(tenant: TenantScope, dto: UpdateOrganizationDto, requestId: string) {
    const [organization] = await this.prisma.$transaction([
      this.prisma.organization.update({ where: { id: tenant.organizationId }, data: { name: dto.name, plan: dto.plan } }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.base(tenant, requestId), action: 'organization.updated', target: { type: 'organization', id: tenant.organizationId } }),
      }),
    ]);
    return { organization: present.organization(organization) };
  }

  async members(tenant: TenantScope) {
    const rows = await this.prisma.membership.findMany({
      where: { organizationId: tenant.organizationId },
      include: { user: true },
      orderBy: { createdAt: 'asc' },
    });
    return { members: rows.map((m) => this.member(m.user, m.role)) };
  }

  async addMember(tenant: TenantScope, dto: AddMemberDto, requestId: string) {
    this.assertCanGrant(tenant, dto.role);
    const user = await this.prisma.user.findUnique({ where: { email: dto.email } });
    if (!user) throw AppError.notFound('User');
    const org = await this.prisma.organization.findFirstOrThrow({ where: { id: tenant.organizationId }, include: { _count: { select: { memberships: true } } } });
    if (org._count.memberships >= MEMBER_LIMIT[org.plan]) {
      throw new AppError('plan_limit', `The ${org.plan} plan allows ${MEMBER_LIMIT[org.plan]} member; upgrade to team to add more`);
    }
    try {
      await this.prisma.$transaction([
        this.prisma.membership.create({ data: { organizationId: tenant.organizationId, userId: user.id, role: dto.role } }),
        this.prisma.auditLogEntry.create({
          data: this.audit.entry({ ...this.base(tenant, requestId), action: 'member.added', target: { type: 'user', id: user.id } }),
        }),
      ]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('conflict', 'This user is already a member');
      throw err;
    }
    return { member: this.member(user, dto.role) };
  }

  async updateMember(tenant: TenantScope, userId: string, role: Role, requestId: string) {
    const membership = await this.findMember(tenant, userId);
    this.assertCanGrant(tenant, role);
    if (membership.role === 'owner' && tenant.role !== 'owner') throw AppError.forbidden('Only an owner can change an owner');
    if (membership.role === 'owner' && role !== 'owner') await this.assertAnotherOwner(tenant, userId);
    await this.prisma.$transaction([
      this.prisma.membership.update({ where: { organizationId_userId: { organizationId: tenant.organizationId, userId } }, data: { role } }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.base(tenant, requestId), action: 'member.role_changed', target: { type: 'user', id: userId } }),
      }),
    ]);
    return { member: this.member(membership.user, role) };
  }

  async removeMember(tenant: TenantScope, userId: string, requestId: string): Promise<void> {
    const membership = await this.findMember(tenant, userId);
    if (membership.role === 'owner' && tenant.role !== 'owner') throw AppError.forbidden('Only an owner can remove an owner');
    if (membership.role === 'owner') await this.assertAnotherOwner(tenant, userId);
    await this.prisma.$transaction([
      this.prisma.membership.delete({ where: { organizationId_userId: { organizationId: tenant.organizationId, userId } } }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.base(tenant, requestId), action: 'member.removed', target: { type: 'user', id: userId } }),
      }),
    ]);
  }

  async createApiToken(tenant: TenantScope, dto: CreateApiTokenDto, requestId: string) {
    this.assertCanGrant(tenant, dto.role);
    const { token, lookupPrefix, tokenHash } = ApiTokenVerifier.generate();
    const id = newId('apiToken');
    const [row] = await this.prisma.$transaction([
      this.prisma.apiToken.create({
        data: {
          id,
          organizationId: tenant.organizationId,
          name: dto.name,
          role: dto.role,
          lookupPrefix,
          tokenHash,
          createdById: tenant.principal.id,
        },
      }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.base(tenant, requestId), action: 'api_token.created', target: { type: 'api_token', id } }),
      }),
    ]);
    return { apiToken: present.apiToken(row), token };
  }

  async listApiTokens(tenant: TenantScope, query: PageQuery) {
    const args = pageArgs(query);
    const rows = await this.prisma.apiToken.findMany({ ...args, where: { ...args.where, organizationId: tenant.organizationId, revokedAt: null } });
    const { items, nextCursor } = page(rows, query);
    return { apiTokens: items.map(present.apiToken), nextCursor };
  }

  async revokeApiToken(tenant: TenantScope, tokenId: string, requestId: string): Promise<void> {
    const [{ count }] = await this.prisma.$transaction([
      this.prisma.apiToken.updateMany({ where: { id: tokenId, organizationId: tenant.organizationId, revokedAt: null }, data: { revokedAt: new Date() } }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.base(tenant, requestId), action: 'api_token.revoked', target: { type: 'api_token', id: tokenId } }),
      }),
    ]);
    if (count === 0) throw AppError.notFound('API token');
  }

  async auditLog(tenant: TenantScope, query: PageQuery) {
    const args = pageArgs(query);
    const rows = await this.prisma.auditLogEntry.findMany({ ...args, where: { ...args.where, organizationId: tenant.organizationId } });
    const { items, nextCursor } = page(rows, query);
    return { entries: items.map(present.auditEntry), nextCursor };
  }

  private member(user: { id: string; email: string; name: string }, role: string) {
    return { user: { id: user.id, email: user.email, name: user.name }, role };
  }

  private async findMember(tenant: TenantScope, userId: string) {
    const membership = await this.prisma.membership.findFirst({ where: { organizationId: tenant.organizationId, userId }, include: { user: true } });
    if (!membership) throw AppError.notFound('Member');
    return membership;
  }

  /** Nobody grants a role above their own: an admin cannot make owners or owner tokens. */
  private assertCanGrant(tenant: TenantScope, role: Role): void {
    if (!roleAtLeast(tenant.role, role)) throw AppError.forbidden(`Your role cannot grant the ${role} role`);
  }

  /** An organization keeps at least one owner. */
  private async assertAnotherOwner(tenant: TenantScope, userId: string): Promise<void> {
    const others = await this.prisma.membership.count({ where: { organizationId: tenant.organizationId, role: 'owner', userId: { not: userId } } });
    if (others === 0) throw new AppError('conflict', 'An organization needs at least one owner: make someone else owner first');
  }

  private base(tenant: TenantScope, requestId: string) {
    return { organizationId: tenant.organizationId, principal: tenant.principal, requestId };
  }
}
