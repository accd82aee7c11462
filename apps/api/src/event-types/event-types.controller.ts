import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Audit, Authenticated, Tenant } from '../auth/auth.guards';
import type { AuditContext } from '../common/audit.service';
import { TenantScope } from '../auth/principal';
import { EventTypeEnvelope, EventTypeList } from '../common/responses';
import { CreateEventTypeDto, EventTypesQuery, UpdateEventTypeDto } from './dto/event-type.dto';
import { EventTypesService } from './event-types.service';

@ApiTags('event types')
@Controller('projects/:projectId/event-types')
export class EventTypesController {
  constructor(private readonly eventTypes: EventTypesService) {}

  @Get()
  @Authenticated()
  @ApiOperation({ summary: "The built-in event types (source: builtin) and the project's own (source: custom)" })
  @ApiOkResponse({ type: EventTypeList })
  list(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Query() query: EventTypesQuery) {
    return this.eventTypes.list(tenant, projectId, query.category);
  }

  @Post()
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'Add an event type of the project, optionally with a JSON Schema its data must match' })
  @ApiCreatedResponse({ type: EventTypeEnvelope })
  create(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Body() dto: CreateEventTypeDto, @Audit() context: AuditContext) {
    return this.eventTypes.create(tenant, projectId, dto, context);
  }

  @Get(':type')
  @Authenticated()
  @ApiOkResponse({ type: EventTypeEnvelope })
  async get(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Param('type') type: string) {
    return { eventType: EventTypesService.presentCustom(await this.eventTypes.get(tenant, projectId, type)) };
  }

  @Patch(':type')
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: "Change a project's own event type: its description or schema (null removes it)" })
  @ApiOkResponse({ type: EventTypeEnvelope })
  update(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Param('type') type: string, @Body() dto: UpdateEventTypeDto, @Audit() context: AuditContext) {
    return this.eventTypes.update(tenant, projectId, type, dto, context);
  }

  @Delete(':type')
  @HttpCode(204)
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: "Delete a project's own event type; 409 while a webhook subscribes to it by name" })
  async remove(@Tenant() tenant: TenantScope, @Param('projectId') projectId: string, @Param('type') type: string, @Audit() context: AuditContext): Promise<void> {
    await this.eventTypes.remove(tenant, projectId, type, context);
  }
}
