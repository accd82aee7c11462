import { Injectable, Logger } from '@nestjs/common';
import { PrismaService } from '@bellhop/database';
import { DeliveryDispatcher } from '@bellhop/delivery';
import { AppError, buildEnvelope, newId } from '@bellhop/domain';
import { metrics } from '@bellhop/observability';
import { TenantScope } from '../auth/principal';
import { PageQuery, page, pageArgs } from '../common/pagination';
import { present } from '../common/present';

export interface PublishResult {
  replayed: boolean;
  event: ReturnType<typeof present.event>;
  deliveries: number;
  deliveryIds: string[];
}

export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

@Injectable()
export class EventsService {
  private readonly logger = new Logger(EventsService.name);

  constructor(
    private readonly prisma: PrismaService,
    private readonly dispatcher: DeliveryDispatcher,
  ) {}

  /**
   * Stores the event and one delivery per subscribed, enabled webhook in one transaction, then
   * enqueues by delivery id. Once this returns, the event is durable: if the enqueue fails, the
   * sweeper dispatches the committed rows.
   */
  async publish(
    tenant: TenantScope,
    projectId: string,
    input: { event: string; data: unknown; idempotencyKey?: string; test?: boolean; webhookId?: string },
  ): Promise<PublishResult> {
    // One query for the project's name (it is part of the envelope) and the webhooks to fan out to.
    const webhookId = input.webhookId ?? null;
    const [target] = await this.prisma.$queryRaw<Array<{ name: string; webhook_ids: string[] }>>`
      SELECT p.name, COALESCE(array_agg(w.id ORDER BY w.id) FILTER (WHERE w.id IS NOT NULL), '{}') AS webhook_ids
        FROM projects p
        LEFT JOIN webhooks w ON w.project_id = p.id AND w.deleted_at IS NULL
             AND CASE WHEN ${webhookId}::text IS NULL THEN w.enabled AND ${input.event} = ANY (w.events) ELSE w.id = ${webhookId}::text END
       WHERE p.id = ${projectId} AND p.organization_id = ${tenant.organizationId}
       GROUP BY p.id, p.name`;
    if (!target) throw AppError.notFound('Project');
    const createdAt = new Date();
    const eventId = newId('event');
    const test = input.test ?? false;
    const body = buildEnvelope({ event: input.event, timestamp: createdAt, project: { id: projectId, name: target.name }, data: input.data });
    const deliveryIds = target.webhook_ids.map(() => newId('delivery'));
    // The event and its deliveries in one statement, so both are committed or neither is. A
    // repeated Idempotency-Key inserts nothing (even when the first request is still committing).
    const [written] = await this.prisma.$queryRaw<Array<{ inserted: number }>>`
      WITH e AS (
        INSERT INTO events (id, organization_id, project_id, type, body, idempotency_key, test, created_at)
        VALUES (${eventId}, ${tenant.organizationId}, ${projectId}, ${input.event}, ${body}, ${input.idempotencyKey ?? null}, ${test}, ${createdAt}::timestamptz)
        ON CONFLICT (project_id, idempotency_key) DO NOTHING
        RETURNING id
      ), d AS (
        INSERT INTO deliveries (id, organization_id, event_id, webhook_id, event_type, test, next_attempt_at, next_trigger, created_at)
        SELECT x.id, ${tenant.organizationId}, e.id, x.webhook_id, ${input.event}, ${test}, ${createdAt}::timestamptz,
               ${test ? 'test' : 'scheduled'}::"AttemptTrigger", ${createdAt}::timestamptz
          FROM e, unnest(${deliveryIds}::text[], ${target.webhook_ids}::text[]) AS x(id, webhook_id)
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM e)::int AS inserted`;
    if (written.inserted === 0) return this.replay(projectId, input.idempotencyKey!);
    metrics.eventsPublished.inc();
    const failed = await this.dispatcher.tryDispatch(deliveryIds.map((deliveryId, i) => ({ deliveryId, webhookId: target.webhook_ids[i], organizationId: tenant.organizationId, attempt: 1 })));
    if (failed) this.logger.warn({ eventId, err: failed.message }, 'enqueue failed after commit; the sweeper will dispatch');
    return {
      replayed: false,
      event: present.event({ id: eventId, type: input.event, createdAt, projectId }),
      deliveries: deliveryIds.length,
      deliveryIds,
    };
  }

  /** The same Idempotency-Key again: the first event, and nothing sent twice. */
  private async replay(projectId: string, idempotencyKey: string): Promise<PublishResult> {
    const first = await this.prisma.event.findFirst({
      where: { projectId, idempotencyKey },
      select: { id: true, type: true, createdAt: true, projectId: true, _count: { select: { deliveries: true } } },
    });
    if (!first) throw new AppError('conflict', 'A request with this Idempotency-Key is in progress; retry it');
    return { replayed: true, event: present.event(first), deliveries: first._count.deliveries, deliveryIds: [] };
  }

  async list(tenant: TenantScope, projectId: string, query: PageQuery) {
    const args = pageArgs(query);
    const rows = await this.prisma.event.findMany({
      ...args,
      where: { ...args.where, projectId, organizationId: tenant.organizationId, test: false },
      select: { id: true, type: true, createdAt: true, projectId: true },
    });
    const { items, nextCursor } = page(rows, query);
    return { events: items.map(present.event), nextCursor };
  }

  async get(tenant: TenantScope, eventId: string) {
    const event = await this.prisma.event.findFirst({
      where: { id: eventId, organizationId: tenant.organizationId },
      include: { deliveries: { orderBy: { id: 'asc' } } },
    });
    if (!event) throw AppError.notFound('Event');
    return {
      event: {
        ...present.event(event),
        payload: JSON.parse(event.body) as unknown,
        deliveries: event.deliveries.map(present.delivery),
      },
    };
  }
}
