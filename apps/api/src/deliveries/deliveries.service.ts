import { Injectable, Logger } from '@nestjs/common';
import { PrismaService } from '@bellhop/database';
import { DeliveryDispatcher, DeliveryStore } from '@bellhop/delivery';
import { AppError } from '@bellhop/domain';
import { TenantScope } from '../auth/principal';
import { page, pageArgs } from '../common/pagination';
import { present } from '../common/present';
import { deliverySearchSql } from './delivery-search';
import { AttemptsQuery, ListDeliveriesQuery } from './dto/list-deliveries.query';
import { SearchDeliveriesQuery } from './dto/search-deliveries.query';
import { TestAttemptWaiters } from './test-attempt-waiters';

/** Attempts shown with a delivery (the most recent); the rest are paged. */
const ATTEMPTS_SHOWN = 20;

@Injectable()
export class DeliveriesService {
  private readonly logger = new Logger(DeliveriesService.name);

  constructor(
    private readonly prisma: PrismaService,
    private readonly dispatcher: DeliveryDispatcher,
    private readonly store: DeliveryStore,
    private readonly testWaiters: TestAttemptWaiters,
  ) {}

  async list(tenant: TenantScope, webhookId: string, query: ListDeliveriesQuery) {
    const args = pageArgs(query);
    const rows = await this.prisma.delivery.findMany({
      ...args,
      // Lists never carry bodies.
      omit: { body: true },
      where: {
        ...args.where,
        webhookId,
        organizationId: tenant.organizationId,
        ...(query.status ? { status: query.status } : {}),
        ...(query.event ? { eventType: query.event } : {}),
      },
    });
    const { items, nextCursor } = page(rows, query);
    return { deliveries: items.map(present.delivery), nextCursor };
  }

  /**
   * The project's deliveries, deleted webhooks' included, newest first, filtered. The page's ids
   * come from one statement built for the indexes (see deliverySearchSql), then its rows by id.
   */
  async search(tenant: TenantScope, projectId: string, query: SearchDeliveriesQuery) {
    const scope = { organizationId: tenant.organizationId, projectId };
    const [project, found] = await Promise.all([
      this.prisma.project.findFirst({ where: { id: projectId, organizationId: tenant.organizationId }, select: { id: true } }),
      this.prisma.$queryRaw<Array<{ id: string }>>(deliverySearchSql(scope, query)),
    ]);
    if (!project) throw AppError.notFound('Project');
    // The cursor comes from the ids: a row deleted in between (retention) must not end the pages early.
    const { items: ids, nextCursor } = page(found, query);
    const rows =
      ids.length === 0
        ? []
        : await this.prisma.delivery.findMany({
            // Lists never carry bodies.
            omit: { body: true },
            where: { id: { in: ids.map((row) => row.id) }, organizationId: tenant.organizationId },
            orderBy: { id: 'desc' },
          });
    return { deliveries: rows.map(present.delivery), nextCursor };
  }

  async get(tenant: TenantScope, deliveryId: string) {
    const delivery = await this.prisma.delivery.findFirst({
      where: { id: deliveryId, organizationId: tenant.organizationId },
      include: {
        // The most recent ones only: a delivery retried by hand many times stays one bounded answer.
        attempts: { orderBy: { id: 'desc' }, take: ATTEMPTS_SHOWN + 1 },
        event: { select: { body: true } },
      },
    });
    if (!delivery) throw AppError.notFound('Delivery');
    const { attempts, event, ...row } = delivery;
    const shown = attempts.slice(0, ATTEMPTS_SHOWN).reverse();
    // The body as sent: the one rendered for the webhook's format, else the event's envelope.
    const body = row.body ?? event.body;
    return {
      delivery: {
        ...present.delivery(row),
        attempts: shown.map((a) => present.attempt(a, body)),
        // GET /deliveries/{id}/attempts?cursor= goes on with the older ones.
        attemptsNextCursor: attempts.length > ATTEMPTS_SHOWN ? shown[0].id : null,
      },
    };
  }

  /** Every attempt of a delivery, newest first, a page at a time. */
  async attempts(tenant: TenantScope, deliveryId: string, query: AttemptsQuery) {
    const delivery = await this.prisma.delivery.findFirst({
      where: { id: deliveryId, organizationId: tenant.organizationId },
      select: { id: true, body: true, event: { select: { body: true } } },
    });
    if (!delivery) throw AppError.notFound('Delivery');
    const limit = query.limit ?? ATTEMPTS_SHOWN;
    const args = pageArgs({ ...query, limit });
    const rows = await this.prisma.attempt.findMany({ ...args, where: { ...args.where, deliveryId: delivery.id } });
    const { items, nextCursor } = page(rows, { ...query, limit });
    const body = delivery.body ?? delivery.event.body;
    return { attempts: items.map((a) => present.attempt(a, body)), nextCursor };
  }

  /** The delivery as lists show it (attempts as a count). */
  async summary(tenant: TenantScope, deliveryId: string) {
    // Prisma drops a filter whose value is undefined: never let that widen the look-up.
    if (typeof deliveryId !== 'string') throw AppError.notFound('Delivery');
    const row = await this.prisma.delivery.findFirst({ where: { id: deliveryId, organizationId: tenant.organizationId } });
    if (!row) throw AppError.notFound('Delivery');
    return present.delivery(row);
  }

  /**
   * One more attempt, outside the schedule, as soon as possible (after the attempt in flight, if
   * there is one), recorded with trigger `manual`. The request is committed before the answer;
   * the job is only the nudge (the sweeper puts back a lost one).
   */
  async retry(tenant: TenantScope, deliveryId: string) {
    const outcome = await this.store.requestManualAttempt(deliveryId, tenant.organizationId, 'manual');
    switch (outcome.kind) {
      case 'not_found':
        throw AppError.notFound('Delivery');
      case 'webhook_disabled':
        throw new AppError('webhook_disabled', 'The webhook of this delivery is disabled or deleted: re-enable it before retrying');
      case 'already_waiting':
        throw new AppError('conflict', 'A manual attempt of this delivery is already waiting');
    }
    const { delivery } = outcome;
    const failed = await this.dispatcher.tryDispatch([
      { deliveryId: delivery.id, webhookId: delivery.webhookId, organizationId: delivery.organizationId, kind: 'manual', requestedAt: delivery.requestedAt },
    ]);
    if (failed) this.logger.warn({ deliveryId, err: failed.message }, 'enqueue failed; the sweeper will dispatch');
    return { delivery: await this.summary(tenant, deliveryId) };
  }

  /**
   * For `?wait=true`: the delivery once its first attempt has finished (`finished`), else as it is
   * when the wait ends (the bound passed, this process already holds as many waiting requests
   * as it allows, of all organizations or of this one, or it is shutting down); null when the client went away first, after which nothing more is read.
   */
  async waitForFirstAttempt(tenant: TenantScope, deliveryId: string, clientGone: AbortSignal) {
    const look = async () => {
      const row = await this.prisma.delivery.findFirst({ where: { id: deliveryId, organizationId: tenant.organizationId }, omit: { body: true } });
      if (!row) throw AppError.notFound('Delivery');
      return { done: row.attemptCount > 0 || row.status !== 'pending', value: present.delivery(row) };
    };
    const outcome = await this.testWaiters.wait(deliveryId, tenant.organizationId, look, clientGone);
    switch (outcome.kind) {
      case 'gone':
        return null;
      case 'busy': {
        const seen = await look();
        return { finished: seen.done, delivery: seen.value };
      }
      default:
        return { finished: outcome.kind === 'done', delivery: outcome.value };
    }
  }
}
