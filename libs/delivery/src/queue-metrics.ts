import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { Gauge, type Registry } from 'prom-client';
import { PrismaService } from '@bellhop/database';
import { APP_METRICS } from '@bellhop/observability';
import { DeliveryJob, Queues } from '@bellhop/queue';

/** Due deliveries are counted up to this many: a scrape stays cheap however large a backlog grows. */
export const DUE_COUNT_CAP = 100_000;

/** The subset of a BullMQ queue the gauges read (a stand-in is enough in tests). */
export type CountedQueue = Pick<Queue<DeliveryJob>, 'getJobCounts'>;

/**
 * The worker's view of its backlog, read when Prometheus scrapes and never in between: the delivery
 * queue's jobs by state (Redis) and the deliveries due in Postgres. The two apart tell a queue that
 * lost jobs (due rows, an empty queue: the sweeper's work) from workers that cannot keep up. No
 * webhook or tenant labels: the series stay the same few whatever the number of customers.
 */
@Injectable()
export class QueueMetrics {
  private readonly logger = new Logger(QueueMetrics.name);

  constructor(
    @InjectQueue(Queues.delivery) private readonly queue: CountedQueue,
    private readonly prisma: PrismaService,
    @Inject(APP_METRICS) registry: Registry,
  ) {
    const jobs = new Gauge({
      name: 'bellhop_queue_jobs',
      help: 'Jobs in the delivery queue by state, read from Redis at scrape time',
      labelNames: ['state'] as const,
      registers: [registry],
      collect: async () => {
        const counts = await this.read('queue job counts', () => this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'failed'));
        if (!counts) return;
        // A prioritized job waits like any other; the states are BullMQ's, folded into the four documented ones.
        jobs.set({ state: 'waiting' }, (counts.waiting ?? 0) + (counts.prioritized ?? 0));
        for (const state of ['delayed', 'active', 'failed'] as const) jobs.set({ state }, counts[state] ?? 0);
      },
    });
    const due = new Gauge({
      name: 'bellhop_deliveries_due',
      help: `Pending deliveries whose next attempt is due, read from Postgres at scrape time (counted up to ${DUE_COUNT_CAP})`,
      registers: [registry],
      collect: async () => {
        const count = await this.read('deliveries due', () => this.countDue());
        if (count !== null) due.set(count);
      },
    });
  }

  /** Walks the partial index on (next_attempt_at, id) WHERE status = 'pending', stopping at the cap. */
  async countDue(): Promise<number> {
    const [row] = await this.prisma.$queryRaw<Array<{ n: number }>>`
      SELECT count(*)::int AS n
        FROM (SELECT 1 FROM deliveries WHERE status = 'pending' AND next_attempt_at <= now()
                -- Not those being attempted right now (a claim leaves next_attempt_at as it was).
                AND (lease_until IS NULL OR lease_until < now()) LIMIT ${DUE_COUNT_CAP}) due`;
    return row?.n ?? 0;
  }

  /** A scrape that cannot reach Redis or Postgres keeps the last values rather than failing every metric. */
  private async read<T>(what: string, work: () => Promise<T>): Promise<T | null> {
    try {
      return await work();
    } catch (err) {
      this.logger.warn({ msg: `metrics: could not read ${what}; the last value stays`, error: (err as Error).message });
      return null;
    }
  }
}
