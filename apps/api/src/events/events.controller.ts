import { Body, Controller, Get, Headers, HttpCode, Param, Post, Query, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiHeader, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { AppError, CATALOG } from '@bellhop/domain';
import { Authenticated, Public, Tenant } from '../auth/auth.guards';
import { TenantScope } from '../auth/principal';
import { PublishRateLimiter, PublishRoute } from '../common/rate-limit';
import { BatchPublished, EventDetailEnvelope, EventList, EventTypeList, PublishedEvent } from '../common/responses';
import { PublishBatchDto, PublishEventDto } from './dto/publish-event.dto';
import { ListEventsQuery } from './dto/list-events.query';
import { EventTypesService } from '../event-types/event-types.service';
import { EventsService, MAX_IDEMPOTENCY_KEY_LENGTH } from './events.service';

@ApiTags('events')
@Controller()
export class EventsController {
  constructor(
    private readonly events: EventsService,
    private readonly publishLimit: PublishRateLimiter,
  ) {}

  @Public()
  @Get('event-types')
  @ApiOperation({ summary: 'The event catalog, with a JSON schema and an example payload for each type' })
  @ApiOkResponse({ type: EventTypeList })
  eventTypes() {
    return {
      eventTypes: CATALOG.map(EventTypesService.presentBuiltIn),
    };
  }

  @Post('projects/:projectId/events')
  @HttpCode(202)
  @Authenticated()
  @PublishRoute()
  @ApiHeader({ name: 'Idempotency-Key', required: false, description: 'The same key again for the same project answers 200 with the first event' })
  @ApiOperation({ summary: 'Publish an event to every subscribed webhook of the project' })
  @ApiAcceptedResponse({ type: PublishedEvent })
  @ApiOkResponse({ type: PublishedEvent, description: 'The Idempotency-Key was seen before: the first event' })
  async publish(
    @Tenant() tenant: TenantScope,
    @Param('projectId') projectId: string,
    @Body() dto: PublishEventDto,
    @Headers('idempotency-key') idempotencyKey: string | undefined,
    @Res({ passthrough: true }) res: Response,
  ) {
    if (idempotencyKey !== undefined && (idempotencyKey.length === 0 || idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH)) {
      throw AppError.validation([{ field: 'Idempotency-Key', message: `Idempotency-Key must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters` }]);
    }
    const admit = (events: number) => this.publishLimit.admit(tenant.organizationId, events, res);
    const result = await this.events.publishChecked(tenant, projectId, { event: dto.event, data: dto.data, idempotencyKey }, admit);
    if (result.replayed) res.status(200);
    return { event: result.event, deliveries: result.deliveries };
  }

  @Post('projects/:projectId/events/batch')
  @HttpCode(202)
  @Authenticated()
  @PublishRoute()
  @ApiOperation({ summary: 'Publish 1 to 100 events in order, all or none, each with its own idempotency key' })
  @ApiAcceptedResponse({ type: BatchPublished })
  publishBatch(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Body() dto: PublishBatchDto, @Res({ passthrough: true }) res: Response) {
    return this.events.publishBatch(tenant, projectId, dto.events, (events) => this.publishLimit.admit(tenant.organizationId, events, res));
  }

  @Get('projects/:projectId/events')
  @Authenticated()
  @ApiOperation({ summary: "The project's events (test sends aside), newest first, by type and creation time" })
  @ApiOkResponse({ type: EventList })
  list(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Query() query: ListEventsQuery) {
    return this.events.list(tenant, projectId, query);
  }

  @Get('events/:eventId')
  @Authenticated()
  @ApiOkResponse({ type: EventDetailEnvelope })
  get(@Tenant() tenant: TenantScope, @Param('eventId') eventId: string) {
    return this.events.get(tenant, eventId);
  }
}
