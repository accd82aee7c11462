import { Body, Controller, Get, HttpCode, Param, Post, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { Audit, Authenticated, Tenant } from '../auth/auth.guards';
import type { AuditContext } from '../common/audit.service';
import { TenantScope } from '../auth/principal';
import { ReplayDryRunEnvelope, ReplayEnvelope } from '../common/responses';
import { CreateReplayDto } from './dto/create-replay.dto';
import { ReplaysService } from './replays.service';

@ApiTags('replays')
@Controller()
export class ReplaysController {
  constructor(private readonly replays: ReplaysService) {}

  @Post('webhooks/:webhookId/replay')
  @HttpCode(202)
  // A deleted webhook is its owner's to hear about: 409 webhook_disabled, like a manual retry.
  @Authenticated({ role: 'admin', deletedWebhook: true })
  @ApiOperation({ summary: "Recover after an outage: one more attempt (trigger: replay) for each of the webhook's matching deliveries, paced within its in-flight cap" })
  @ApiAcceptedResponse({ type: ReplayEnvelope })
  @ApiOkResponse({ type: ReplayDryRunEnvelope, description: 'With dryRun: true, the count only; nothing is written' })
  async create(
    @Tenant() tenant: TenantScope,
    @Param('webhookId') webhookId: string,
    @Body() dto: CreateReplayDto,
    @Audit() context: AuditContext,
    @Res({ passthrough: true }) res: Response,
  ) {
    const result = await this.replays.create(tenant, webhookId, dto, context);
    if (result.dryRun) res.status(200);
    return result.body;
  }

  @Get('replays/:replayId')
  @Authenticated()
  @ApiOperation({ summary: "A replay's progress" })
  @ApiOkResponse({ type: ReplayEnvelope })
  get(@Tenant() tenant: TenantScope, @Param('replayId') replayId: string) {
    return this.replays.get(tenant, replayId);
  }

  @Post('replays/:replayId/cancel')
  @HttpCode(200)
  @Authenticated({ role: 'admin' })
  @ApiOperation({ summary: 'Stop queueing more attempts; those already asked for still finish and count' })
  @ApiOkResponse({ type: ReplayEnvelope })
  cancel(@Tenant() tenant: TenantScope, @Param('replayId') replayId: string, @Audit() context: AuditContext) {
    return this.replays.cancel(tenant, replayId, context);
  }
}
