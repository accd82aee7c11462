import { Inject, Injectable } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService, isUniqueViolation } from '@bellhop/database';
import type { Plan, Prisma, Role } from '@bellhop/database';
import { AppError, newId } from '@bellhop/domain';
import { ApiTokenVerifier } from '../auth/api-tokens.service';
import { Principal, TenantScope, roleAtLeast } from '../auth/principal';
import { AuditContext, AuditService } from '../common/audit.service';
import { PageQuery, page, pageArgs } from '../common/pagination';
import { present } from '../common/present';
import { AddMemberDto, CreateApiTokenDto, UpdateOrganizationDto } from './dto/organization.dto';

type Tx = Prisma.TransactionClient;

/** Members an organization may have on each plan (the owner counts). Exported so that a test can lower a cap. */
export const MEMBER_LIMIT: Record<string, number> = { free: 1, solo: 1, team: Number.POSITIVE_INFINITY };

@Injectable()
export class OrganizationsService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly audit: AuditService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
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
    const limit = this.config.maxOrganizationsPerUser;
    const organization = await this.prisma.$transaction(async (tx) => {
      // The user's row is locked first: two creations at once cannot both pass the count.
      await tx.$queryRaw`SELECT 1 FROM users WHERE id = ${principal.userId!} FOR UPDATE`;
      const owned = await tx.membership.count({ where: { userId: principal.userId!, role: 'owner' } });
      if (owned >= limit) {
        throw new AppError('plan_limit', `A user may own at most ${limit} organizations (MAX_ORGANIZATIONS_PER_USER); this one owns ${owned}`);
      }
      const created = await tx.organization.create({ data: { id, name, plan } });
      await tx.membership.create({ data: { organizationId: id, userId: principal.userId!, role: 'owner' } });
      return created;
    });
    return { organization: present.organization(organization) };
  }

  async update(tenant: TenantScope, dto: UpdateOrganizationDto, context: AuditContext) {
    const [organization] = await this.prisma.$transaction([
      this.prisma.organization.update({ where: { id: tenant.organizationId }, data: { name: dto.name, plan: dto.plan } }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.base(tenant, context), action: 'organization.updated', target: { type: 'organization', id: tenant.organizationId } }),
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

  /** 403 plan_limit when the organization's plan has no room for one more member. */
  private async assertMemberRoom(db: Tx | PrismaService, organizationId: string): Promise<void> {
    const { plan } = await db.organization.findUniqueOrThrow({ where: { id: organizationId }, select: { plan: true } });
    const count = await db.membership.count({ where: { organizationId } });
    if (count >= MEMBER_LIMIT[plan]) {
      throw new AppError('plan_limit', `The ${plan} plan allows ${MEMBER_LIMIT[plan]} member; upgrade to team to add more`);
    }
  }

  async addMember(tenant: TenantScope, dto: AddMemberDto, context: AuditContext) {
    this.assertCanGrant(tenant, dto.role);
    // The plan first: an organization with no room answers the same whether the address has an
    // account or not, so that adding members cannot be used to find out who has one.
    await this.assertMemberRoom(this.prisma, tenant.organizationId);
    const user = await this.prisma.user.findUnique({ where: { email: dto.email } });
    if (!user) throw AppError.notFound('User');
    try {
      await this.prisma.$transaction(async (tx) => {
        // Counted again under the organization's lock: two adds at once must not both see room for one.
        await this.lockOrganization(tx, tenant.organizationId);
        await this.assertMemberRoom(tx, tenant.organizationId);
        await tx.membership.create({ data: { organizationId: tenant.organizationId, userId: user.id, role: dto.role } });
        await tx.auditLogEntry.create({
          data: this.audit.entry({ ...this.base(tenant, context), action: 'member.added', target: { type: 'user', id: user.id } }),
        });
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('conflict', 'This user is already a member');
      throw err;
    }
    return { member: this.member(user, dto.role) };
  }

  async updateMember(tenant: TenantScope, userId: string, role: Role, context: AuditContext) {
    const membership = await this.prisma.$transaction(async (tx) => {
      // The owner check and the write under one lock: owners demoting each other (or themselves)
      // at once must not each see another owner and leave none.
      await this.lockOrganization(tx, tenant.organizationId);
      const current = await this.findMember(tx, tenant, userId);
      this.assertCanGrant(tenant, role);
      if (current.role === 'owner' && tenant.role !== 'owner') throw AppError.forbidden('Only an owner can change an owner');
      if (current.role === 'owner' && role !== 'owner') await this.assertAnotherOwner(tx, tenant, userId);
      await tx.membership.update({ where: { organizationId_userId: { organizationId: tenant.organizationId, userId } }, data: { role } });
      await tx.auditLogEntry.create({
        data: this.audit.entry({ ...this.base(tenant, context), action: 'member.role_changed', target: { type: 'user', id: userId } }),
      });
      return current;
    });
    return { member: this.member(membership.user, role) };
  }

  async removeMember(tenant: TenantScope, userId: string, context: AuditContext): Promise<void> {
    await this.prisma.$transaction(async (tx) => {
      // As in updateMember: owners leaving at once must not each count the others as staying.
      await this.lockOrganization(tx, tenant.organizationId);
      const current = await this.findMember(tx, tenant, userId);
      if (current.role === 'owner' && tenant.role !== 'owner') throw AppError.forbidden('Only an owner can remove an owner');
      if (current.role === 'owner') await this.assertAnotherOwner(tx, tenant, userId);
      await tx.membership.delete({ where: { organizationId_userId: { organizationId: tenant.organizationId, userId } } });
      await tx.auditLogEntry.create({
        data: this.audit.entry({ ...this.base(tenant, context), action: 'member.removed', target: { type: 'user', id: userId } }),
      });
    });
  }

  async createApiToken(tenant: TenantScope, dto: CreateApiTokenDto, context: AuditContext) {
    this.assertCanGrant(tenant, dto.role);
    const expiresAt = dto.expiresAt === undefined ? null : new Date(dto.expiresAt);
    if (expiresAt && expiresAt.getTime() <= Date.now()) {
      throw new AppError('validation_failed', 'expiresAt must be in the future', [{ field: 'expiresAt', message: 'expiresAt must be in the future' }]);
    }
    // The user the token's rights follow: its creator, or for a token made by a token, that token's creator.
    const createdById =
      tenant.principal.type === 'user'
        ? tenant.principal.id
        : ((await this.prisma.apiToken.findUnique({ where: { id: tenant.principal.id }, select: { createdById: true } }))?.createdById ?? null);
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
          createdById,
          expiresAt,
        },
      }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.base(tenant, context), action: 'api_token.created', target: { type: 'api_token', id } }),
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

  async revokeApiToken(tenant: TenantScope, tokenId: string, context: AuditContext): Promise<void> {
    const [{ count }] = await this.prisma.$transaction([
      this.prisma.apiToken.updateMany({ where: { id: tokenId, organizationId: tenant.organizationId, revokedAt: null }, data: { revokedAt: new Date() } }),
      this.prisma.auditLogEntry.create({
        data: this.audit.entry({ ...this.base(tenant, context), action: 'api_token.revoked', target: { type: 'api_token', id: tokenId } }),
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

  private async findMember(tx: Tx, tenant: TenantScope, userId: string) {
    const membership = await tx.membership.findFirst({ where: { organizationId: tenant.organizationId, userId }, include: { user: true } });
    if (!membership) throw AppError.notFound('Member');
    return membership;
  }

  /**
   * Takes the organization's row lock until the transaction ends: every change to the member list
   * that checks a count (the plan's cap, the last owner) runs under it, so such changes happen one
   * at a time and each sees the others' result. Nothing but these few statements runs under it.
   */
  private async lockOrganization(tx: Tx, organizationId: string): Promise<{ plan: Plan }> {
    const [org] = await tx.$queryRaw<Array<{ plan: Plan }>>`SELECT plan::text AS plan FROM organizations WHERE id = ${organizationId} FOR UPDATE`;
    if (!org) throw AppError.notFound('Organization');
    return org;
  }

  /** Nobody grants a role above their own: an admin cannot make owners or owner tokens. */
  private assertCanGrant(tenant: TenantScope, role: Role): void {
    if (!roleAtLeast(tenant.role, role)) throw AppError.forbidden(`Your role cannot grant the ${role} role`);
  }

  /** An organization keeps at least one owner. Only under lockOrganization, or two callers both pass. */
  private async assertAnotherOwner(tx: Tx, tenant: TenantScope, userId: string): Promise<void> {
    const others = await tx.membership.count({ where: { organizationId: tenant.organizationId, role: 'owner', userId: { not: userId } } });
    if (others === 0) throw new AppError('conflict', 'An organization needs at least one owner: make someone else owner first');
  }

  private base(tenant: TenantScope, context: AuditContext) {
    return { organizationId: tenant.organizationId, principal: tenant.principal, ...context };
  }
}
