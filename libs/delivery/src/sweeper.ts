import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy, Optional } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { metrics } from '@bellhop/observability';
import { DeliveryJob, Queues, deliveryJobId } from '@bellhop/queue';
import { DeliveryDispatcher, type Dispatch } from './dispatcher';

/** A due delivery whose job is active but whose row was never leased for this long has lost its worker. */
const STUCK_ACTIVE_MS = 15_000;

export interface SweeperOptions {
  /** Start sweeping (one sweep at once, then every SWEEP_INTERVAL) when the app boots. Default true. */
  autoStart?: boolean;
  /** How long past due a delivery must be before it counts as lost. Default min(5 s, SWEEP_INTERVAL). */
  graceMs?: number;
  /** Deliveries looked at per sweep. Default 1000. */
  batchSize?: number;
}

export const SWEEPER_OPTIONS = Symbol('SWEEPER_OPTIONS');

/** The subset of a BullMQ queue the sweeper uses (a stand-in is enough in tests). */
export type SweptQueue = Pick<Queue<DeliveryJob>, 'getJobState' | 'getJob' | 'remove'>;

export interface SweepResult {
  /** Due deliveries found without a lease. */
  found: number;
  /** Jobs added because none existed. */
  added: number;
  /** Delayed jobs made due at once (their row was due earlier than the job, e.g. a manual retry). */
  promoted: number;
}

/**
 * Puts back on the queue what the queue lost: due, unleased pending deliveries whose job never
 * made it to Redis (enqueue failed after commit, Redis restarted without persistence) or whose
 * worker died mid-attempt (its lease ran out). Safe to run in every worker at once: rows are
 * read with SKIP LOCKED and a job id is per attempt, so adding it twice is a no-op.
 */
@Injectable()
export class Sweeper implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(Sweeper.name);
  private readonly graceMs: number;
  private readonly batchSize: number;
  private readonly autoStart: boolean;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  private stopped = true;

  constructor(
    private readonly prisma: PrismaService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
    @InjectQueue(Queues.delivery) private readonly queue: SweptQueue,
    private readonly dispatcher: DeliveryDispatcher,
    @Optional() @Inject(SWEEPER_OPTIONS) options?: SweeperOptions,
  ) {
    this.graceMs = options?.graceMs ?? Math.min(5000, config.sweepIntervalMs);
    this.batchSize = options?.batchSize ?? 1000;
    this.autoStart = options?.autoStart ?? true;
  }

  onApplicationBootstrap(): void {
    if (this.autoStart) this.start();
  }

  async onModuleDestroy(): Promise<void> {
    await this.stop();
  }

  /** Sweeps now, then every SWEEP_INTERVAL until stop(). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.tick();
  }

  /** Stops the timer and waits for a sweep in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  async sweep(): Promise<SweepResult> {
    // The transaction is only the SELECT: its locks keep two sweepers from reading the same rows
    // at the same instant, and enqueueing happens after it, never inside.
    const rows = await this.prisma.$transaction(
      (tx) => tx.$queryRaw<Array<{ id: string; webhook_id: string; organization_id: string; attempt_count: number; lease_expired: boolean; stuck: boolean }>>`
        SELECT id, webhook_id, organization_id, attempt_count, (lease_until IS NOT NULL) AS lease_expired,
               next_attempt_at < now() - ${STUCK_ACTIVE_MS}::float8 * interval '1 millisecond' AS stuck
          FROM deliveries
         WHERE status = 'pending'::"DeliveryStatus"
           AND next_attempt_at <= now() - ${this.graceMs}::float8 * interval '1 millisecond'
           AND (lease_until IS NULL OR lease_until < now())
         ORDER BY next_attempt_at
         LIMIT ${this.batchSize}::int
         FOR UPDATE SKIP LOCKED`,
    );
    const result: SweepResult = { found: rows.length, added: 0, promoted: 0 };
    if (rows.length === 0) return result;

    const missing: Dispatch[] = [];
    for (let i = 0; i < rows.length; i += 100) {
      await Promise.all(
        rows.slice(i, i + 100).map(async (row) => {
          const attempt = row.attempt_count + 1;
          const jobId = deliveryJobId(row.id, attempt);
          const state = await this.queue.getJobState(jobId);
          if (state === 'unknown') {
            missing.push({ deliveryId: row.id, webhookId: row.webhook_id, organizationId: row.organization_id, attempt });
          } else if (state === 'delayed') {
            // The row is due but its job waits for a later time: make the job due now.
            const job = await this.queue.getJob(jobId);
            if (job && (await job.promote().then(() => true, () => false))) result.promoted++;
          } else if (state === 'active' && (row.lease_expired || row.stuck)) {
            // Also when a job has been active for long without ever taking the lease: its worker
            // died between taking the job and claiming the row.
            // Claimed, never recorded, lease run out: the worker died mid-attempt and BullMQ has not
            // noticed yet (that takes up to lockDuration + stalledInterval). A second job, with its
            // own id, retries now; whichever of the two runs second finds the attempt done and skips.
            missing.push({ deliveryId: row.id, webhookId: row.webhook_id, organizationId: row.organization_id, attempt, key: 'swept' });
          } else if (state === 'completed' || state === 'failed') {
            // A finished job would block re-adding the same id (jobs are normally removed at the end).
            await this.queue.remove(jobId);
            missing.push({ deliveryId: row.id, webhookId: row.webhook_id, organizationId: row.organization_id, attempt });
          }
          // waiting, prioritized, or active and not yet claimed: it is on its way.
        }),
      );
    }
    if (missing.length > 0) {
      await this.dispatcher.dispatch(missing);
      result.added = missing.length;
    }
    const redispatched = result.added + result.promoted;
    if (redispatched > 0) {
      metrics.swept.inc(redispatched);
      this.logger.log({ msg: 'sweeper re-dispatched lost deliveries', added: result.added, promoted: result.promoted });
    }
    return result;
  }

  private tick(): void {
    if (this.stopped) return;
    this.running = this.sweep()
      .catch((err: Error) => this.logger.error({ msg: 'sweep failed; retrying at the next interval', error: err.message }))
      .finally(() => {
        this.running = null;
        if (this.stopped) return;
        this.timer = setTimeout(() => this.tick(), this.config.sweepIntervalMs);
        this.timer.unref();
      });
  }
}
