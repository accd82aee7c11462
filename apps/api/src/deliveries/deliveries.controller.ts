import { Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Authenticated, Tenant } from '../auth/auth.guards';
import { TenantScope } from '../auth/principal';
import { DeliveriesService } from './deliveries.service';
import { AttemptsQuery, ListDeliveriesQuery } from './dto/list-deliveries.query';
import { SearchDeliveriesQuery } from './dto/search-deliveries.query';
import { DeliveryList } from '../common/responses';

@ApiTags('deliveries')
@Controller()
export class DeliveriesController {
  constructor(private readonly deliveries: DeliveriesService) {}

  @Get('webhooks/:webhookId/deliveries')
  @Authenticated()
  @ApiOperation({ summary: 'Delivery history of a webhook, newest first' })
  @ApiOkResponse({ type: DeliveryList })
  list(@Tenant() tenant: TenantScope, @Param('webhookId') webhookId: string, @Query() query: ListDeliveriesQuery) {
    return this.deliveries.list(tenant, webhookId, query);
  }

  @Get('projects/:projectId/deliveries')
  @Authenticated()
  @ApiOperation({ summary: "The project's deliveries, deleted webhooks' included, newest first, filtered" })
  @ApiOkResponse({ type: DeliveryList })
  search(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Query() query: SearchDeliveriesQuery) {
    return this.deliveries.search(tenant, projectId, query);
  }

  @Get('deliveries/:deliveryId')
  @Authenticated()
  @ApiOperation({ summary: 'A delivery with its 20 most recent attempts: request, response and error' })
  get(@Tenant() tenant: TenantScope, @Param('deliveryId') deliveryId: string) {
    return this.deliveries.get(tenant, deliveryId);
  }

  @Get('deliveries/:deliveryId/attempts')
  @Authenticated()
  @ApiOperation({ summary: 'Every attempt of a delivery, newest first, 20 a page at most' })
  attempts(@Tenant() tenant: TenantScope, @Param('deliveryId') deliveryId: string, @Query() query: AttemptsQuery) {
    return this.deliveries.attempts(tenant, deliveryId, query);
  }

  @Post('deliveries/:deliveryId/retry')
  @HttpCode(202)
  @Authenticated()
  @ApiOperation({ summary: 'One more attempt now (trigger: manual)' })
  retry(@Tenant() tenant: TenantScope, @Param('deliveryId') deliveryId: string) {
    return this.deliveries.retry(tenant, deliveryId);
  }
}
