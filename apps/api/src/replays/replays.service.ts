import { Injectable, Logger } from '@nestjs/common';
import { PrismaService } from '@bellhop/database';
import { ReplayDriver, replayMatch } from '@bellhop/delivery';
import { AppError, newId } from '@bellhop/domain';
import { TenantScope } from '../auth/principal';
import { AuditContext, AuditService } from '../common/audit.service';
import { present } from '../common/present';
import { CreateReplayDto, REPLAY_MAX_WINDOW_DAYS } from './dto/create-replay.dto';

const DAY_MS = 24 * 60 * 60 * 1000;

@Injectable()
export class ReplaysService {
  private readonly logger = new Logger(ReplaysService.name);

  constructor(
    private readonly prisma: PrismaService,
    private readonly audit: AuditService,
    private readonly driver: ReplayDriver,
  ) {}

  /** The window asked for: `to` defaults to now; from < to, at most 30 days apart. */
  private static window(dto: CreateReplayDto): { from: Date; to: Date } {
    const from = new Date(dto.from);
    const to = dto.to === undefined ? new Date() : new Date(dto.to);
    if (Number.isNaN(from.getTime())) throw AppError.validation([{ field: 'from', message: 'from must be an ISO-8601 time' }]);
    if (Number.isNaN(to.getTime())) throw AppError.validation([{ field: 'to', message: 'to must be an ISO-8601 time' }]);
    if (from >= to) throw AppError.validation([{ field: 'from', message: dto.to === undefined ? 'from must be in the past' : 'from must be before to' }]);
    if (to.getTime() - from.getTime() > REPLAY_MAX_WINDOW_DAYS * DAY_MS) {
      throw AppError.validation([{ field: 'to', message: `a replay covers at most ${REPLAY_MAX_WINDOW_DAYS} days: to - from is longer` }]);
    }
    return { from, to };
  }

  /**
   * Counts the matching deliveries (dry run), or records a replay of them: the count and the
   * newest matching id come from one statement, so that the replay takes exactly the deliveries
   * it counted that still match when their turn comes (deliveries made later are beyond last_id).
   * The replay driver queues them a page at a time; the first page is requested here at once.
   */
  async create(tenant: TenantScope, webhookId: string, dto: CreateReplayDto, context: AuditContext) {
    const { from, to } = ReplaysService.window(dto);
    const statuses = [...new Set(dto.status ?? ['failed'])];
    const webhook = await this.prisma.webhook.findFirst({
      where: { id: webhookId, organizationId: tenant.organizationId },
      select: { id: true, projectId: true, enabled: true, deletedAt: true },
    });
    if (!webhook) throw AppError.notFound('Webhook');
    // A dry run writes nothing: it may size the recovery of a webhook still disabled.
    if (webhook.deletedAt || (!webhook.enabled && !dto.dryRun)) {
      throw new AppError('webhook_disabled', 'This webhook is disabled or deleted: re-enable it before replaying its deliveries');
    }
    const [match] = await this.prisma.$queryRaw<Array<{ matched: number; last_id: string | null }>>`
      SELECT count(*)::int AS matched, max(d.id) AS last_id
        FROM deliveries d
       WHERE ${replayMatch({ webhookId: webhook.id, from, to, statuses, eventType: dto.event ?? null })}`;
    if (dto.dryRun) return { dryRun: true as const, body: { replay: { matched: match.matched } } };

    const id = newId('replay');
    const replay = await this.prisma.$transaction(async (tx) => {
      const created = await tx.replay.create({
        data: {
          id,
          organizationId: tenant.organizationId,
          projectId: webhook.projectId,
          webhookId: webhook.id,
          status: 'running',
          fromTime: from,
          toTime: to,
          statuses,
          eventType: dto.event ?? null,
          matched: match.matched,
          lastId: match.last_id,
          createdByType: tenant.principal.type,
          createdById: tenant.principal.id,
        },
      });
      await tx.auditLogEntry.create({
        data: this.audit.entry({ organizationId: tenant.organizationId, principal: tenant.principal, ...context, action: 'replay.created', target: { type: 'replay', id } }),
      });
      return created;
    });
    // The first page now rather than at the worker's next pass; the workers' driver goes on from it.
    await this.driver.advance(id).catch((err: Error) => this.logger.warn({ msg: 'first replay step failed; the worker will take it', replayId: id, error: err.message }));
    // The replay as accepted: its progress is GET /replays/{id}.
    return { dryRun: false as const, body: { replay: present.replay(replay) } };
  }

  async get(tenant: TenantScope, replayId: string) {
    const replay = await this.prisma.replay.findFirst({ where: { id: replayId, organizationId: tenant.organizationId } });
    if (!replay) throw AppError.notFound('Replay');
    return { replay: present.replay(replay) };
  }

  /**
   * Stops queueing: the replay ends cancelled; its attempts already asked for still run and
   * count. A replay already finished is answered as it is.
   */
  async cancel(tenant: TenantScope, replayId: string, context: AuditContext) {
    await this.prisma.$transaction(async (tx) => {
      // Waits for a driver's step in progress (it holds the row), so nothing is queued after this.
      const { count } = await tx.replay.updateMany({
        where: { id: replayId, organizationId: tenant.organizationId, status: 'running' },
        data: { status: 'cancelled', completedAt: new Date() },
      });
      if (count > 0) {
        await tx.auditLogEntry.create({
          data: this.audit.entry({ organizationId: tenant.organizationId, principal: tenant.principal, ...context, action: 'replay.cancelled', target: { type: 'replay', id: replayId } }),
        });
      }
    });
    return this.get(tenant, replayId);
  }
}
