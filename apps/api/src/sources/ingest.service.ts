import { Inject, Injectable } from '@nestjs/common';
import type { Request, Response } from 'express';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { AppError, SOURCE_CATEGORY, type SourceKind, isId, sourceEventType } from '@bellhop/domain';
import { decryptSecret, secretsKeyRing, verifyGitHubSignature, verifyGitLabToken } from '@bellhop/signing';
import { MAX_JSON_DEPTH, jsonDepth } from '../common/json-depth';
import { AuthFailureLimiter, IngestRateLimiter, PublishRateLimiter, SourceFailureLimiter } from '../common/rate-limit';
import { EventsService } from '../events/events.service';

/** Largest delivery a source accepts: GitHub caps its payloads at 25 MB, but pushes and merge requests are far below this. */
export const INGEST_BODY_LIMIT_BYTES = 5 * 1024 * 1024;

/** Longest delivery id kept as an idempotency key (GitHub's and GitLab's are 36-character UUIDs). */
const MAX_DELIVERY_ID_LENGTH = 200;

/** How a kind of source proves a delivery, names its event and numbers its deliveries. */
interface Sender {
  /** The delivery id, the same on the sender's redelivery: the idempotency key. */
  deliveryHeader: string;
  verify: (secret: string, body: Buffer, req: Request) => boolean;
  eventName: (req: Request, payload: Record<string, unknown>) => unknown;
  /** Where the event's name comes from, for a 422 that says so. */
  eventField: string;
}

const SENDERS: Record<SourceKind, Sender> = {
  github: {
    deliveryHeader: 'x-github-delivery',
    verify: (secret, body, req) => verifyGitHubSignature(secret, body, header(req, 'x-hub-signature-256')),
    eventName: (req) => header(req, 'x-github-event'),
    eventField: 'X-GitHub-Event',
  },
  gitlab: {
    deliveryHeader: 'x-gitlab-event-uuid',
    // The token is the secret itself; the body is not signed.
    verify: (secret, _body, req) => verifyGitLabToken(secret, header(req, 'x-gitlab-token')),
    eventName: (_req, payload) => payload.object_kind,
    eventField: 'object_kind',
  },
};

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The sender's JSON payload, read only once the bytes are verified. GitHub may be set to send
 * `application/x-www-form-urlencoded`, with the JSON in the `payload` field; the signature is over
 * the form as sent.
 */
function payloadOf(body: Buffer, contentType: string | undefined): Record<string, unknown> {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw new AppError('bad_request', 'The payload is not UTF-8 text');
  }
  if (/^application\/x-www-form-urlencoded\b/i.test(contentType ?? '')) {
    const field = new URLSearchParams(text).get('payload');
    if (field === null) throw new AppError('bad_request', 'A form-encoded delivery carries its JSON in the payload field: none was sent');
    text = field;
  }
  if (jsonDepth(Buffer.from(text, 'utf8')) > MAX_JSON_DEPTH) throw new AppError('bad_request', `JSON nested more than ${MAX_JSON_DEPTH} levels deep`);
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch {
    throw new AppError('bad_request', 'Malformed JSON in request body');
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw AppError.validation([{ field: 'body', message: 'the payload must be a JSON object' }]);
  }
  return payload as Record<string, unknown>;
}

/**
 * POST /ingest/{sourceId}: the delivery's signature (GitHub) or token (GitLab) is its only
 * credential. The raw bytes are verified before anything reads them as JSON; then the payload is
 * published into the source's project as `github.<X-GitHub-Event>` or `gitlab.<object_kind>`,
 * through the same pipeline, budget and idempotency as any publish, within the source's own
 * INGEST_RATE_LIMIT.
 */
@Injectable()
export class IngestService {
  constructor(
    private readonly prisma: PrismaService,
    private readonly events: EventsService,
    private readonly publishLimit: PublishRateLimiter,
    private readonly unknownSources: AuthFailureLimiter,
    private readonly failedVerifications: SourceFailureLimiter,
    private readonly sourceLimit: IngestRateLimiter,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {}

  async ingest(sourceId: string, req: Request, res: Response): Promise<{ eventId: string; replayed: boolean }> {
    // A malformed id, one never made and a deleted source answer alike; guessing ids counts as
    // failed authentication of the address, as a guessed token would.
    const source = isId('source', sourceId)
      ? await this.prisma.source.findFirst({ where: { id: sourceId }, select: { id: true, organizationId: true, projectId: true, type: true, secretCiphertext: true } })
      : null;
    if (!source) throw await this.unknownSources.failed(req, res, AppError.notFound('Source'));
    const kind = source.type as SourceKind;
    const sender = SENDERS[kind];
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const secret = decryptSecret(source.secretCiphertext, secretsKeyRing(this.config), source.id);
    if (!sender.verify(secret, body, req)) {
      // The same answer for a missing and a wrong signature.
      throw await this.failedVerifications.failed(source.id, req, res, new AppError('unauthenticated', 'Missing or invalid signature'));
    }

    const payload = payloadOf(body, header(req, 'content-type'));
    const event = sourceEventType(kind, sender.eventName(req, payload));
    if (!event) throw AppError.validation([{ field: sender.eventField, message: `${sender.eventField} must name the ${kind} event (lowercase letters, digits, _ and -)` }]);
    const delivery = header(req, sender.deliveryHeader);
    if (delivery !== undefined && (delivery.length === 0 || delivery.length > MAX_DELIVERY_ID_LENGTH)) {
      throw AppError.validation([{ field: sender.deliveryHeader, message: `the delivery id must be 1 to ${MAX_DELIVERY_ID_LENGTH} characters` }]);
    }
    const published = await this.events.publishFromSource(
      source.organizationId,
      source.projectId,
      // Scoped to the source: two sources of a project never share a delivery id's event.
      { event, category: SOURCE_CATEGORY, data: payload, idempotencyKey: delivery === undefined ? undefined : `${source.id}:${delivery}` },
      // Asked only for a new event: the organization's budget, then the source's. A delivery the
      // source refuses gives the organization's back, so a busy source cannot spend it for nothing.
      async (events) => {
        const admission = await this.publishLimit.admit(source.organizationId, events, res);
        try {
          await this.sourceLimit.admit(source.id, res);
        } catch (err) {
          await admission.release(events);
          throw err;
        }
        return admission;
      },
    );
    return { eventId: published.event.id, replayed: published.replayed };
  }
}
