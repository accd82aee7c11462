import { Controller, HttpCode, Param, Post, Req, Res } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBody, ApiHeader, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { Public } from '../auth/auth.guards';
import { IngestAccepted } from '../common/responses';
import { IngestService } from './ingest.service';

@ApiTags('sources')
@Controller()
export class IngestController {
  constructor(private readonly ingest: IngestService) {}

  /**
   * No bearer token: the signature is the credential. The body arrives raw (api.app.ts mounts the
   * parser for /ingest), at most INGEST_BODY_LIMIT_BYTES, and is verified before it is parsed.
   * Limits: the source's INGEST_RATE_LIMIT and the organization's PUBLISH_RATE_LIMIT for what is
   * published, AUTH_RATE_LIMIT for failed verifications per source and address (429 past it, for
   * failures only), and MAX_CONCURRENT_INGEST_READS bodies of a source read at once; no per-address
   * request limit (see UNLIMITED).
   */
  @Post('ingest/:sourceId')
  @Public()
  @HttpCode(202)
  @ApiOperation({ summary: 'Where GitHub or GitLab delivers: verified, then published as github.<X-GitHub-Event> or gitlab.<object_kind>' })
  @ApiHeader({ name: 'X-Hub-Signature-256', required: false, description: 'GitHub: sha256=<hex HMAC-SHA256 of the raw body keyed with the secret>' })
  @ApiHeader({ name: 'X-GitHub-Event', required: false, description: 'GitHub: the event (push, ping, ...)' })
  @ApiHeader({ name: 'X-GitHub-Delivery', required: false, description: 'GitHub: the delivery id; a redelivery answers 200 with the same event' })
  @ApiHeader({ name: 'X-Gitlab-Token', required: false, description: "GitLab: the source's secret" })
  @ApiHeader({ name: 'X-Gitlab-Event-UUID', required: false, description: 'GitLab: the delivery id; a redelivery answers 200 with the same event' })
  @ApiBody({ schema: { type: 'object', additionalProperties: true, description: "The sender's JSON payload, at most 5 MiB; it becomes the event's data" } })
  @ApiAcceptedResponse({ type: IngestAccepted })
  @ApiOkResponse({ type: IngestAccepted, description: 'A redelivery: the event published the first time' })
  async receive(@Param('sourceId') sourceId: string, @Req() req: Request, @Res({ passthrough: true }) res: Response) {
    const { eventId, replayed } = await this.ingest.ingest(sourceId, req, res);
    if (replayed) res.status(200);
    return { eventId };
  }
}
