import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Audit, Authenticated, Tenant } from '../auth/auth.guards';
import { TenantScope } from '../auth/principal';
import type { AuditContext } from '../common/audit.service';
import { PageQuery } from '../common/pagination';
import { SourceList, SourceWithSecret } from '../common/responses';
import { CreateSourceDto } from './dto/create-source.dto';
import { SourcesService } from './sources.service';

@ApiTags('sources')
@Controller()
export class SourcesController {
  constructor(private readonly sources: SourcesService) {}

  @Post('projects/:projectId/sources')
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: "An inbound source (GitHub or GitLab): its URL and secret go into the sender's webhook settings; the secret is shown only here" })
  @ApiCreatedResponse({ type: SourceWithSecret })
  create(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Body() dto: CreateSourceDto, @Audit() context: AuditContext) {
    return this.sources.create(tenant, projectId, dto, context);
  }

  @Get('projects/:projectId/sources')
  @Authenticated()
  @ApiOkResponse({ type: SourceList })
  list(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Query() query: PageQuery) {
    return this.sources.list(tenant, projectId, query);
  }

  @Delete('sources/:sourceId')
  @HttpCode(204)
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'Delete an inbound source; its deliveries are 404 from then on' })
  async remove(@Tenant() tenant: TenantScope, @Param('sourceId') sourceId: string, @Audit() context: AuditContext): Promise<void> {
    await this.sources.remove(tenant, sourceId, context);
  }
}
