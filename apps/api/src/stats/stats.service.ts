import { Inject, Injectable } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Prisma, PrismaService } from '@bellhop/database';
import { AppError, addCounts, countBucket, percentile, webhookHealth } from '@bellhop/domain';
import { TenantScope } from '../auth/principal';
import { StatsWindow } from './dto/stats.query';

const HOUR_MS = 3_600_000;

/** Each window's buckets: 24 hours, 28 six-hour periods, 30 days, aligned in UTC and ending after the current one. */
const WINDOWS: Record<StatsWindow, { bucketMs: number; buckets: number }> = {
  '24h': { bucketMs: HOUR_MS, buckets: 24 },
  '7d': { bucketMs: 6 * HOUR_MS, buckets: 28 },
  '30d': { bucketMs: 24 * HOUR_MS, buckets: 30 },
};

interface RollupRow {
  webhook_id: string;
  hour: Date;
  deliveries_succeeded: number;
  deliveries_failed: number;
  deliveries_cancelled: number;
  attempts: number;
  attempts_succeeded: number;
  attempts_failed: number;
  /** Hourly rows: the latency histogram. */
  latency: number[] | null;
  /** Deltas not folded yet: the latency bucket of each attempt. */
  buckets: number[] | null;
}

interface Totals {
  succeeded: number;
  failed: number;
  cancelled: number;
  attempts: number;
  attemptsSucceeded: number;
  attemptsFailed: number;
  latency: number[];
}

const emptyTotals = (): Totals => ({ succeeded: 0, failed: 0, cancelled: 0, attempts: 0, attemptsSucceeded: 0, attemptsFailed: 0, latency: [] });

function add(into: Totals, row: RollupRow): void {
  into.succeeded += row.deliveries_succeeded;
  into.failed += row.deliveries_failed;
  into.cancelled += row.deliveries_cancelled;
  into.attempts += row.attempts;
  into.attemptsSucceeded += row.attempts_succeeded;
  into.attemptsFailed += row.attempts_failed;
  if (row.latency) addCounts(into.latency, row.latency);
  for (const bucket of row.buckets ?? []) countBucket(into.latency, bucket);
}

const ROLLUP_COLUMNS = Prisma.sql`webhook_id, hour, deliveries_succeeded, deliveries_failed, deliveries_cancelled, attempts, attempts_succeeded, attempts_failed`;

/**
 * The rollup rows of a window: the hourly rows, and the deltas the worker has not folded into them
 * yet (a second's worth, normally).
 */
function rollupRows(where: Prisma.Sql): Prisma.Sql {
  return Prisma.sql`
    SELECT ${ROLLUP_COLUMNS}, latency, NULL::int[] AS buckets FROM webhook_stats_hourly WHERE ${where}
    UNION ALL
    SELECT ${ROLLUP_COLUMNS}, NULL::int[], buckets FROM webhook_stats_deltas WHERE ${where}`;
}

const successRate = (t: Totals): number | null => (t.succeeded + t.failed === 0 ? null : t.succeeded / (t.succeeded + t.failed));
const latencyMs = (counts: number[]) => {
  const p50 = percentile(counts, 50);
  return p50 === null ? null : { p50, p95: percentile(counts, 95)!, p99: percentile(counts, 99)! };
};
const deliveriesOf = (t: Totals, pending: number) => ({
  total: t.succeeded + t.failed + t.cancelled + pending,
  succeeded: t.succeeded,
  failed: t.failed,
  pending,
  cancelled: t.cancelled,
});

/**
 * The dashboard's numbers, read from the hourly rollups (webhook_stats_hourly,
 * webhook_errors_hourly, and the deltas that recordings and cancels append until the worker folds
 * them in): at most a few hundred rows per webhook whatever the traffic. Only pending deliveries are counted live, from the (project|webhook, status, id)
 * indexes. Test deliveries are in neither.
 */
@Injectable()
export class StatsService {
  constructor(
    private readonly prisma: PrismaService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {}

  /**
   * Runs the reads of one answer in one snapshot (a repeatable-read, read-only transaction), so
   * that a delivery recorded meanwhile is counted once: pending, or in the rollups, not both.
   */
  private snapshot<T extends readonly unknown[]>(reads: (tx: Prisma.TransactionClient) => { [K in keyof T]: Promise<T[K]> }): Promise<T> {
    return this.prisma.$transaction(
      async (tx) => {
        await tx.$executeRaw`SET TRANSACTION READ ONLY`;
        const results: unknown[] = [];
        // One connection: the reads run one after the other.
        for (const read of reads(tx)) results.push(await read);
        return results as unknown as T;
      },
      { isolationLevel: Prisma.TransactionIsolationLevel.RepeatableRead },
    );
  }

  /** The window's bounds, aligned to its buckets in UTC: the last bucket holds now. */
  static windowOf(window: StatsWindow, now = Date.now()) {
    const { bucketMs, buckets } = WINDOWS[window];
    const to = Math.floor(now / bucketMs) * bucketMs + bucketMs;
    return { from: new Date(to - buckets * bucketMs), to: new Date(to), bucketMs, buckets };
  }

  async forWebhook(tenant: TenantScope, webhookId: string, window: StatsWindow = '24h') {
    const webhook = await this.prisma.webhook.findFirst({ where: { id: webhookId, organizationId: tenant.organizationId, deletedAt: null }, select: { id: true } });
    if (!webhook) throw AppError.notFound('Webhook');
    const { from, to, bucketMs, buckets } = StatsService.windowOf(window);
    const [rows, errors, [pending]] = await this.snapshot((tx) => [
      tx.$queryRaw<RollupRow[]>(rollupRows(Prisma.sql`webhook_id = ${webhookId} AND hour >= ${from} AND hour < ${to}`)),
      tx.$queryRaw<Array<{ code: string; count: number }>>`
        SELECT code, sum(count)::int AS count
          FROM (SELECT code, count FROM webhook_errors_hourly WHERE webhook_id = ${webhookId} AND hour >= ${from} AND hour < ${to}
                UNION ALL
                SELECT c, 1 FROM webhook_stats_deltas d CROSS JOIN LATERAL unnest(d.errors) AS c
                 WHERE d.webhook_id = ${webhookId} AND d.hour >= ${from} AND d.hour < ${to}) e
         GROUP BY code
         ORDER BY 2 DESC, 1`,
      tx.$queryRaw<Array<{ count: number }>>`
        SELECT count(*)::int AS count FROM deliveries
         WHERE webhook_id = ${webhookId} AND status = 'pending'::"DeliveryStatus" AND NOT test
           AND created_at >= ${from} AND created_at < ${to}`,
    ] as const);
    const total = emptyTotals();
    const series = Array.from({ length: buckets }, (_, i) => ({ from: from.getTime() + i * bucketMs, totals: emptyTotals() }));
    for (const row of rows) {
      add(total, row);
      const bucket = series[Math.floor((row.hour.getTime() - from.getTime()) / bucketMs)];
      if (bucket) add(bucket.totals, row);
    }
    return {
      stats: {
        webhookId,
        window,
        from: from.toISOString(),
        to: to.toISOString(),
        deliveries: deliveriesOf(total, pending?.count ?? 0),
        attempts: { total: total.attempts, succeeded: total.attemptsSucceeded, failed: total.attemptsFailed },
        successRate: successRate(total),
        latencyMs: latencyMs(total.latency),
        errors: errors.map((e) => ({ code: e.code, count: e.count })),
        series: series.map((b) => ({
          from: new Date(b.from).toISOString(),
          to: new Date(b.from + bucketMs).toISOString(),
          succeeded: b.totals.succeeded,
          failed: b.totals.failed,
          attempts: b.totals.attempts,
          p95Ms: percentile(b.totals.latency, 95),
        })),
      },
    };
  }

  async forProject(tenant: TenantScope, projectId: string, window: StatsWindow = '24h') {
    const project = await this.prisma.project.findFirst({ where: { id: projectId, organizationId: tenant.organizationId }, select: { id: true } });
    if (!project) throw AppError.notFound('Project');
    const { from, to } = StatsService.windowOf(window);
    const [webhooks, rows, pending] = await this.snapshot((tx) => [
      tx.webhook.findMany({
        where: { projectId, organizationId: tenant.organizationId, deletedAt: null },
        orderBy: { id: 'asc' },
        select: { id: true, name: true, url: true, enabled: true, failingSince: true, lastSuccessAt: true, lastFailureAt: true, lastDeliveryAt: true },
      }),
      // Deleted webhooks' rows too: the project's totals keep their history.
      tx.$queryRaw<RollupRow[]>(rollupRows(Prisma.sql`project_id = ${projectId} AND hour >= ${from} AND hour < ${to}`)),
      tx.$queryRaw<Array<{ webhook_id: string; count: number }>>`
        SELECT webhook_id, count(*)::int AS count FROM deliveries
         WHERE project_id = ${projectId} AND status = 'pending'::"DeliveryStatus" AND NOT test
           AND created_at >= ${from} AND created_at < ${to}
         GROUP BY webhook_id`,
    ] as const);
    const total = emptyTotals();
    const byWebhook = new Map<string, Totals>();
    for (const row of rows) {
      add(total, row);
      let own = byWebhook.get(row.webhook_id);
      if (!own) byWebhook.set(row.webhook_id, (own = emptyTotals()));
      add(own, row);
    }
    const pendingOf = new Map(pending.map((p) => [p.webhook_id, p.count]));
    const allPending = pending.reduce((sum, p) => sum + p.count, 0);
    return {
      stats: {
        projectId,
        window,
        from: from.toISOString(),
        to: to.toISOString(),
        deliveries: deliveriesOf(total, allPending),
        attempts: { total: total.attempts, succeeded: total.attemptsSucceeded, failed: total.attemptsFailed },
        successRate: successRate(total),
        latencyMs: latencyMs(total.latency),
        webhooks: webhooks.map((w) => {
          const own = byWebhook.get(w.id) ?? emptyTotals();
          return {
            webhookId: w.id,
            name: w.name,
            url: w.url,
            enabled: w.enabled,
            health: webhookHealth(w, this.config.autoDisableAfterMs),
            deliveries: deliveriesOf(own, pendingOf.get(w.id) ?? 0),
            successRate: successRate(own),
            latencyMs: latencyMs(own.latency),
          };
        }),
      },
    };
  }
}
