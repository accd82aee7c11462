import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Req, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { AppError, findEventType, firstSubscribedType, sourceTestEvent, sourceTestType } from '@bellhop/domain';
import { Audit, Authenticated, Tenant } from '../auth/auth.guards';
import type { AuditContext } from '../common/audit.service';
import { TenantScope } from '../auth/principal';
import { PageQuery } from '../common/pagination';
import { DeliveryEnvelope, RotatedSecretResponse, SecretResponse, WebhookEnvelope, WebhookList, WebhookWithSecret } from '../common/responses';
import { DeliveriesService } from '../deliveries/deliveries.service';
import { EventTypesService } from '../event-types/event-types.service';
import { EventsService } from '../events/events.service';
import { CreateWebhookDto, TestWebhookDto, UpdateWebhookDto } from './dto/webhook.dto';
import { WebhooksService } from './webhooks.service';

@ApiTags('webhooks')
@Controller()
export class WebhooksController {
  constructor(
    private readonly webhooks: WebhooksService,
    private readonly events: EventsService,
    private readonly deliveries: DeliveriesService,
    private readonly eventTypes: EventTypesService,
  ) {}

  @Post('projects/:projectId/webhooks')
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'Subscribe a URL; the whsec_ secret is returned in full here' })
  @ApiCreatedResponse({ type: WebhookWithSecret })
  create(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Body() dto: CreateWebhookDto, @Audit() context: AuditContext) {
    return this.webhooks.create(tenant, projectId, dto, context);
  }

  @Get('projects/:projectId/webhooks')
  @Authenticated()
  @ApiOkResponse({ type: WebhookList })
  list(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Query() query: PageQuery) {
    return this.webhooks.list(tenant, projectId, query);
  }

  @Get('webhooks/:webhookId')
  @Authenticated()
  @ApiOkResponse({ type: WebhookEnvelope })
  async get(@Tenant() tenant: TenantScope, @Param('webhookId') webhookId: string) {
    return { webhook: this.webhooks.present(await this.webhooks.find(tenant, webhookId)) };
  }

  @Patch('webhooks/:webhookId')
  @Authenticated({ role: 'admin' })
  @ApiOkResponse({ type: WebhookEnvelope })
  update(@Tenant() tenant: TenantScope, @Param('webhookId') webhookId: string, @Body() dto: UpdateWebhookDto, @Audit() context: AuditContext) {
    return this.webhooks.update(tenant, webhookId, dto, context);
  }

  @Delete('webhooks/:webhookId')
  @HttpCode(204)
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'Delete a webhook; its pending deliveries are cancelled' })
  async remove(@Tenant() tenant: TenantScope, @Param('webhookId') webhookId: string, @Audit() context: AuditContext): Promise<void> {
    await this.webhooks.remove(tenant, webhookId, context);
  }

  @Get('webhooks/:webhookId/secret')
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'Reveal the signing secret (owner/admin; audited)' })
  @ApiOkResponse({ type: SecretResponse })
  secret(@Tenant() tenant: TenantScope, @Param('webhookId') webhookId: string, @Audit() context: AuditContext) {
    return this.webhooks.revealSecret(tenant, webhookId, context);
  }

  @Post('webhooks/:webhookId/secret/rotate')
  @HttpCode(200)
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'New secret; the previous one keeps signing for 24 hours' })
  @ApiOkResponse({ type: RotatedSecretResponse })
  rotate(@Tenant() tenant: TenantScope, @Param('webhookId') webhookId: string, @Audit() context: AuditContext) {
    return this.webhooks.rotateSecret(tenant, webhookId, context);
  }

  @Post('webhooks/:webhookId/test')
  @HttpCode(202)
  @Authenticated()
  @ApiQuery({ name: 'wait', required: false, type: Boolean, description: 'Answer 200 once the first attempt has finished' })
  @ApiOperation({ summary: 'Send an example event through the normal pipeline, marked test: true' })
  @ApiAcceptedResponse({ type: DeliveryEnvelope })
  @ApiOkResponse({ type: DeliveryEnvelope, description: 'With wait=true, once the first attempt has finished' })
  async test(
    @Tenant() tenant: TenantScope,
    @Param('webhookId') webhookId: string,
    @Body() dto: TestWebhookDto,
    @Query('wait') wait: string | undefined,
    @Req() req: Request,
    @Res({ passthrough: true }) res: Response,
  ) {
    const webhook = await this.webhooks.find(tenant, webhookId);
    // By default the first of its events; for a wildcard, the first type it receives.
    const [first] = webhook.events;
    const type =
      dto.event ??
      (!first.endsWith('*') ? first : (firstSubscribedType([first]) ?? sourceTestType(first) ?? (await this.eventTypes.firstOfCategory(tenant, webhook.projectId, first.slice(0, -2)))));
    if (!type) throw AppError.validation([{ field: 'event', message: `name the event type to send: ${first} matches no type yet` }]);
    const builtIn = findEventType(type);
    const sent = builtIn ? { category: builtIn.category, data: builtIn.example } : (sourceTestEvent(type) ?? (await this.eventTypes.testEventFor(tenant, webhook.projectId, type)));
    if (!sent) throw AppError.validation([{ field: 'event', message: `${type} is neither a built-in event type nor one of the project's own` }]);
    const published = await this.events.publish(tenant, webhook.projectId, { event: type, category: sent.category, data: sent.data, test: true, webhookId: webhook.id });
    const [deliveryId] = published.deliveryIds;
    // Deleted between the look-up and the publish: nothing was sent, and there is nothing to show.
    if (deliveryId === undefined) throw AppError.notFound('Webhook');
    if (wait === 'true' || wait === '1') {
      // The response closing before it is written means the client went away: stop waiting for it.
      // So does the connection closing: a response queued behind another request pipelined on
      // the same connection has no socket yet, and gets no 'close' of its own when it goes. The
      // connection's listener is removed at the end, as a keep-alive connection outlives many requests.
      const gone = new AbortController();
      const onClose = () => gone.abort();
      const connection = req.socket;
      res.once('close', onClose);
      connection.once('close', onClose);
      if (res.closed || connection.destroyed) gone.abort();
      try {
        const waited = await this.deliveries.waitForFirstAttempt(tenant, deliveryId, gone.signal);
        // Nobody is left to answer.
        if (!waited) return undefined;
        if (waited.finished) res.status(200);
        return { delivery: waited.delivery };
      } finally {
        res.off('close', onClose);
        connection.off('close', onClose);
      }
    }
    return { delivery: await this.deliveries.summary(tenant, deliveryId) };
  }
}
