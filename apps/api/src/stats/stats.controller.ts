import { Controller, Get, Param, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Authenticated, Tenant } from '../auth/auth.guards';
import { TenantScope } from '../auth/principal';
import { ProjectStatsResponse, WebhookStatsResponse } from '../common/responses';
import { StatsQuery } from './dto/stats.query';
import { StatsService } from './stats.service';

@ApiTags('dashboard')
@Controller()
export class StatsController {
  constructor(private readonly stats: StatsService) {}

  @Get('webhooks/:webhookId/stats')
  @Authenticated()
  @ApiOperation({ summary: "A webhook's deliveries, attempts, latency and errors over a window, with a time series (test deliveries left out)" })
  @ApiOkResponse({ type: WebhookStatsResponse })
  webhook(@Tenant() tenant: TenantScope, @Param('webhookId') webhookId: string, @Query() query: StatsQuery) {
    return this.stats.forWebhook(tenant, webhookId, query.window);
  }

  @Get('projects/:projectId/stats')
  @Authenticated()
  @ApiOperation({ summary: "A project's totals over a window, and each webhook's with its health (test deliveries left out)" })
  @ApiOkResponse({ type: ProjectStatsResponse })
  project(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Query() query: StatsQuery) {
    return this.stats.forProject(tenant, projectId, query.window);
  }
}
