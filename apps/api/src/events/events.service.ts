import { Injectable, Logger } from '@nestjs/common';
import { PrismaService, isUniqueViolation } from '@bellhop/database';
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
    const project = await this.prisma.project.findFirst({
      where: { id: projectId, organizationId: tenant.organizationId },
      select: { id: true, name: true },
    });
    if (!project) throw AppError.notFound('Project');
    const webhooks = await this.prisma.webhook.findMany({
      where: input.webhookId
        ? { id: input.webhookId, organizationId: tenant.organizationId, deletedAt: null }
        : { projectId, organizationId: tenant.organizationId, deletedAt: null, enabled: true, events: { has: input.event } },
      select: { id: true },
    });
    const createdAt = new Date();
    const eventId = newId('event');
    const body = buildEnvelope({ event: input.event, timestamp: createdAt, project, data: input.data });
    const deliveries = webhooks.map((w) => ({
      id: newId('delivery'),
      organizationId: tenant.organizationId,
      eventId,
      webhookId: w.id,
      eventType: input.event,
      test: input.test ?? false,
      nextAttemptAt: createdAt,
      nextTrigger: input.test ? ('test' as const) : ('scheduled' as const),
      createdAt,
    }));
    try {
      await this.prisma.$transaction([
        this.prisma.event.create({
          data: {
            id: eventId,
            organizationId: tenant.organizationId,
            projectId,
            type: input.event,
            body,
            idempotencyKey: input.idempotencyKey ?? null,
            test: input.test ?? false,
            createdAt,
          },
        }),
        this.prisma.delivery.createMany({ data: deliveries }),
      ]);
    } catch (err) {
      if (input.idempotencyKey && isUniqueViolation(err)) return this.replay(projectId, input.idempotencyKey);
      throw err;
    }
    metrics.eventsPublished.inc();
    const failed = await this.dispatcher.tryDispatch(deliveries.map((d) => ({ deliveryId: d.id, attempt: 1 })));
    if (failed) this.logger.warn({ eventId, err: failed.message }, 'enqueue failed after commit; the sweeper will dispatch');
    return {
      replayed: false,
      event: present.event({ id: eventId, type: input.event, createdAt, projectId }),
      deliveries: deliveries.length,
      deliveryIds: deliveries.map((d) => d.id),
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
