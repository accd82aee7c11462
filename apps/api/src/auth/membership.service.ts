import { Injectable } from '@nestjs/common';
import { PrismaService } from '@bellhop/database';
import type { Role } from '@bellhop/database';
import { Principal } from './principal';

/** The organizations a caller belongs to, with its role in each. */
@Injectable()
export class MembershipService {
  constructor(private readonly prisma: PrismaService) {}

  async of(principal: Principal): Promise<Map<string, Role>> {
    if (principal.type === 'api_token') return new Map([[principal.tokenOrganizationId!, principal.tokenRole!]]);
    if (principal.memberships) return principal.memberships;
    const rows = await this.prisma.membership.findMany({ where: { userId: principal.userId! }, select: { organizationId: true, role: true } });
    return new Map(rows.map((row) => [row.organizationId, row.role as Role]));
  }
}
