import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Audit, Authenticated, CurrentPrincipal, Tenant } from '../auth/auth.guards';
import type { AuditContext } from '../common/audit.service';
import { Principal, TenantScope } from '../auth/principal';
import { PageQuery } from '../common/pagination';
import { AuditLog } from '../common/responses';
import { AddMemberDto, CreateApiTokenDto, CreateOrganizationDto, UpdateMemberDto, UpdateOrganizationDto } from './dto/organization.dto';
import { OrganizationsService } from './organizations.service';

@ApiTags('organizations')
@Controller()
export class OrganizationsController {
  constructor(
    private readonly organizations: OrganizationsService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {}

  @Get('organizations')
  @Authenticated()
  list(@CurrentPrincipal() principal: Principal) {
    return this.organizations.list(principal);
  }

  @Post('organizations')
  @Authenticated()
  @ApiOperation({ summary: 'Create an organization; the caller becomes its owner' })
  create(@CurrentPrincipal() principal: Principal, @Body() dto: CreateOrganizationDto) {
    return this.organizations.create(principal, dto.name, this.config.defaultPlan);
  }

  @Patch('organizations/:orgId')
  @Authenticated({ role: 'owner' })
  @ApiOperation({ summary: 'Rename or change plan (owner only)' })
  update(@Tenant() tenant: TenantScope, @Body() dto: UpdateOrganizationDto, @Audit() context: AuditContext, @Param('orgId') _orgId: string) {
    return this.organizations.update(tenant, dto, context);
  }

  @Get('organizations/:orgId/members')
  @Authenticated()
  members(@Tenant() tenant: TenantScope, @Param('orgId') _orgId: string) {
    return this.organizations.members(tenant);
  }

  @Post('organizations/:orgId/members')
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'Add an existing user by email' })
  addMember(@Tenant() tenant: TenantScope, @Body() dto: AddMemberDto, @Audit() context: AuditContext, @Param('orgId') _orgId: string) {
    return this.organizations.addMember(tenant, dto, context);
  }

  @Patch('organizations/:orgId/members/:userId')
  @Authenticated({ role: 'admin' })
  updateMember(@Tenant() tenant: TenantScope, @Param('userId') userId: string, @Body() dto: UpdateMemberDto, @Audit() context: AuditContext) {
    return this.organizations.updateMember(tenant, userId, dto.role, context);
  }

  @Delete('organizations/:orgId/members/:userId')
  @HttpCode(204)
  @Authenticated({ role: 'admin' })
  async removeMember(@Tenant() tenant: TenantScope, @Param('userId') userId: string, @Audit() context: AuditContext): Promise<void> {
    await this.organizations.removeMember(tenant, userId, context);
  }

  @Post('organizations/:orgId/api-tokens')
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'Create an API token; the bht_ token is shown once' })
  createToken(@Tenant() tenant: TenantScope, @Body() dto: CreateApiTokenDto, @Audit() context: AuditContext, @Param('orgId') _orgId: string) {
    return this.organizations.createApiToken(tenant, dto, context);
  }

  @Get('organizations/:orgId/api-tokens')
  @Authenticated({ role: 'admin' })
  listTokens(@Tenant() tenant: TenantScope, @Query() query: PageQuery, @Param('orgId') _orgId: string) {
    return this.organizations.listApiTokens(tenant, query);
  }

  @Delete('api-tokens/:tokenId')
  @HttpCode(204)
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'Revoke an API token at once' })
  async revokeToken(@Tenant() tenant: TenantScope, @Param('tokenId') tokenId: string, @Audit() context: AuditContext): Promise<void> {
    await this.organizations.revokeApiToken(tenant, tokenId, context);
  }

  @Get('organizations/:orgId/audit-log')
  @Authenticated({ role: 'admin' })
  @ApiOkResponse({ type: AuditLog })
  auditLog(@Tenant() tenant: TenantScope, @Query() query: PageQuery, @Param('orgId') _orgId: string) {
    return this.organizations.auditLog(tenant, query);
  }
}
