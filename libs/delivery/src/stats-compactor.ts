import { Injectable, Logger } from '@nestjs/common';
import { PrismaService } from '@bellhop/database';
import { BackgroundLoop, IdleBackoff } from './background-loop';

/** How soon the next fold runs after one that folded something. */
const FOLD_INTERVAL_MS = 1_000;
/**
 * After one that found nothing: 5 s, then twice as long after each empty fold, up to a minute.
 * No count is late for it (the stats routes read the deltas not folded yet), and a recording in
 * this worker brings the next fold within a second (deltasAppended), so the deltas left to read
 * stay about a second's worth while attempts are made. Only an API's cancels on an otherwise idle
 * install wait longer, up to a minute: a few rows.
 */
const IDLE_INTERVAL_MS = 5_000;
const IDLE_INTERVAL_MAX_MS = 60_000;
/** Delta rows folded per statement. */
const FOLD_BATCH = 5_000;

/**
 * Folds the rollup deltas that recordings and cancels append (webhook_stats_deltas) into the
 * hourly rows the stats routes read (webhook_stats_hourly, webhook_errors_hourly): one upsert per
 * webhook and hour for all the deltas of a second, instead of one per recording. The deltas are
 * taken and folded in one statement, so a delta counts once, before or after its fold; the
 * stats routes read both. Safe in every worker at once: deltas are taken with SKIP LOCKED, and
 * hourly rows are written in (webhook, hour) order.
 */
@Injectable()
export class StatsCompactor extends BackgroundLoop<number> {
  protected readonly logger = new Logger(StatsCompactor.name);
  private readonly idle = new IdleBackoff(IDLE_INTERVAL_MS, IDLE_INTERVAL_MAX_MS);

  constructor(private readonly prisma: PrismaService) {
    super('folding stats deltas', true);
  }

  protected pass(): Promise<number> {
    return this.foldAll();
  }

  protected delayAfter(folded: number | null): number {
    if (folded === 0) return this.idle.idle();
    this.idle.reset();
    return FOLD_INTERVAL_MS;
  }

  /** A recording or a cancel in this process appended deltas: the next fold within a second. */
  deltasAppended(): void {
    this.wake(FOLD_INTERVAL_MS);
  }

  /** Folds every delta there is now. The number of delta rows folded. */
  async foldAll(): Promise<number> {
    let folded = 0;
    for (;;) {
      const n = await this.foldOnce();
      folded += n;
      // At shutdown, what is left waits for the next worker: the stats routes read deltas too.
      if (n < FOLD_BATCH || this.stopped) return folded;
    }
  }

  /** Folds up to FOLD_BATCH deltas, oldest first. */
  async foldOnce(): Promise<number> {
    const [row] = await this.prisma.$queryRaw<Array<{ folded: number }>>`
      WITH moved AS (
        DELETE FROM webhook_stats_deltas
         WHERE id IN (SELECT id FROM webhook_stats_deltas ORDER BY id LIMIT ${FOLD_BATCH}::int FOR UPDATE SKIP LOCKED)
        RETURNING webhook_id, hour, project_id, deliveries_succeeded, deliveries_failed, deliveries_cancelled,
                  attempts, attempts_succeeded, attempts_failed, buckets, errors
      ), latency AS (
        SELECT m.webhook_id, m.hour, bellhop_histogram(array_agg(b)) AS latency
          FROM moved m CROSS JOIN LATERAL unnest(m.buckets) AS b
         GROUP BY m.webhook_id, m.hour
      ), totals AS (
        SELECT m.webhook_id, m.hour, max(m.project_id) AS project_id,
               sum(m.deliveries_succeeded)::int AS deliveries_succeeded, sum(m.deliveries_failed)::int AS deliveries_failed,
               sum(m.deliveries_cancelled)::int AS deliveries_cancelled, sum(m.attempts)::int AS attempts,
               sum(m.attempts_succeeded)::int AS attempts_succeeded, sum(m.attempts_failed)::int AS attempts_failed
          FROM moved m
         GROUP BY m.webhook_id, m.hour
      ), stats AS (
        INSERT INTO webhook_stats_hourly AS h (webhook_id, hour, project_id, deliveries_succeeded, deliveries_failed,
                                               deliveries_cancelled, attempts, attempts_succeeded, attempts_failed, latency)
        SELECT t.webhook_id, t.hour, t.project_id, t.deliveries_succeeded, t.deliveries_failed, t.deliveries_cancelled,
               t.attempts, t.attempts_succeeded, t.attempts_failed, COALESCE(l.latency, '{}')
          FROM totals t LEFT JOIN latency l ON l.webhook_id = t.webhook_id AND l.hour = t.hour
         ORDER BY t.webhook_id, t.hour
        ON CONFLICT (webhook_id, hour) DO UPDATE SET
               deliveries_succeeded = h.deliveries_succeeded + EXCLUDED.deliveries_succeeded,
               deliveries_failed = h.deliveries_failed + EXCLUDED.deliveries_failed,
               deliveries_cancelled = h.deliveries_cancelled + EXCLUDED.deliveries_cancelled,
               attempts = h.attempts + EXCLUDED.attempts,
               attempts_succeeded = h.attempts_succeeded + EXCLUDED.attempts_succeeded,
               attempts_failed = h.attempts_failed + EXCLUDED.attempts_failed,
               latency = bellhop_counts_add(h.latency, EXCLUDED.latency)
        RETURNING 1
      ), errors AS (
        INSERT INTO webhook_errors_hourly AS e (webhook_id, hour, code, count)
        SELECT m.webhook_id, m.hour, c, count(*)::int
          FROM moved m CROSS JOIN LATERAL unnest(m.errors) AS c
         GROUP BY 1, 2, 3
         ORDER BY 1, 2, 3
        ON CONFLICT (webhook_id, hour, code) DO UPDATE SET count = e.count + EXCLUDED.count
        RETURNING 1
      )
      SELECT (SELECT count(*) FROM moved)::int AS folded`;
    return row?.folded ?? 0;
  }
}
