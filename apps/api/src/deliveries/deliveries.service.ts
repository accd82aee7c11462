import { Inject, Injectable, Logger } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { DeliveryDispatcher } from '@bellhop/delivery';
import { AppError } from '@bellhop/domain';
import { TenantScope } from '../auth/principal';
import { page, pageArgs } from '../common/pagination';
import { present } from '../common/present';
import { ListDeliveriesQuery } from './dto/list-deliveries.query';

@Injectable()
export class DeliveriesService {
  private readonly logger = new Logger(DeliveriesService.name);

  constructor(
    private readonly prisma: PrismaService,
    private readonly dispatcher: DeliveryDispatcher,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {}

  async list(tenant: TenantScope, webhookId: string, query: ListDeliveriesQuery) {
    const args = pageArgs(query);
    const rows = await this.prisma.delivery.findMany({
      ...args,
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

  async get(tenant: TenantScope, deliveryId: string) {
    const delivery = await this.prisma.delivery.findFirst({
      where: { id: deliveryId, organizationId: tenant.organizationId },
      include: { attempts: { orderBy: { attempt: 'asc' } }, event: { select: { body: true } } },
    });
    if (!delivery) throw AppError.notFound('Delivery');
    const { attempts, event, ...row } = delivery;
    return { delivery: { ...present.delivery(row), attempts: attempts.map((a) => present.attempt(a, event.body)) } };
  }

  /** The delivery as lists show it (attempts as a count). */
  async summary(tenant: TenantScope, deliveryId: string) {
    const row = await this.prisma.delivery.findFirst({ where: { id: deliveryId, organizationId: tenant.organizationId } });
    if (!row) throw AppError.notFound('Delivery');
    return present.delivery(row);
  }

  /** One more attempt now, recorded with trigger `manual`. */
  async retry(tenant: TenantScope, deliveryId: string) {
    const now = new Date();
    const { count } = await this.prisma.delivery.updateMany({
      where: { id: deliveryId, organizationId: tenant.organizationId, webhook: { deletedAt: null } },
      data: { status: 'pending', nextAttemptAt: now, nextTrigger: 'manual', completedAt: null },
    });
    if (count === 0) throw AppError.notFound('Delivery');
    const row = await this.prisma.delivery.findFirstOrThrow({ where: { id: deliveryId, organizationId: tenant.organizationId } });
    // A distinct job id, so a retry is not swallowed by the job already waiting for the next scheduled attempt.
    const failed = await this.dispatcher.tryDispatch([{ deliveryId, webhookId: row.webhookId, organizationId: row.organizationId, attempt: row.attemptCount + 1, key: `m${now.getTime()}` }]);
    if (failed) this.logger.warn({ deliveryId, err: failed.message }, 'enqueue failed; the sweeper will dispatch');
    return { delivery: present.delivery(row) };
  }

  /** Waits (bounded by the attempt timeout) until the delivery's first attempt is recorded, for `?wait=true`. */
  async waitForFirstAttempt(tenant: TenantScope, deliveryId: string): Promise<boolean> {
    const deadline = Date.now() + this.config.deliveryTimeoutMs + 10_000;
    while (Date.now() < deadline) {
      const row = await this.prisma.delivery.findFirst({
        where: { id: deliveryId, organizationId: tenant.organizationId },
        select: { attemptCount: true, status: true },
      });
      if (!row) throw AppError.notFound('Delivery');
      if (row.attemptCount > 0 || row.status !== 'pending') return true;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return false;
  }
}
