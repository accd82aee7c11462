import { OnWorkerEvent, Processor, WorkerHost } from '@nestjs/bullmq';
import { Inject, Injectable, Logger, OnModuleDestroy, Type } from '@nestjs/common';
import { DelayedError, Job, WorkerOptions } from 'bullmq';
import { BELLHOP_CONFIG, type BellhopConfig } from '@bellhop/config';
import { DeliveryService } from '@bellhop/delivery';
import { metrics } from '@bellhop/observability';
import { DeliveryJob, Queues } from '@bellhop/queue';

/** Extra time given to in-flight attempts at shutdown, beyond their own HTTP deadline, to be recorded. */
const SHUTDOWN_MARGIN_MS = 5_000;

/** The BullMQ priority of a job refused at a cap (fresh jobs have none, which comes first). */
export const OVER_CAP_PRIORITY = 1;

/**
 * BullMQ settings derived from the configuration. The lock outlives the HTTP deadline by a wide
 * margin (BullMQ renews it at half its duration while a job runs), so a busy worker is never
 * mistaken for a dead one and a job is not started twice.
 */
export function deliveryWorkerOptions(config: BellhopConfig): Partial<WorkerOptions> {
  const lockDuration = Math.max(30_000, config.deliveryTimeoutMs + 30_000);
  return {
    concurrency: config.workerConcurrency,
    lockDuration,
    stalledInterval: Math.min(30_000, lockDuration),
    // A job that stalls twice is failed and removed; the sweeper then puts the delivery back.
    maxStalledCount: 1,
    // An idle worker waits for a job in one blocking call of up to 10 s (BullMQ's default is 5 s)
    // and is woken at once by a new one; 10 s is the ceiling BullMQ itself keeps when delayed jobs
    // exist, for the sake of reconnections.
    drainDelay: 10,
  };
}

/**
 * A thin adapter from the queue to DeliveryService: the job carries an id, Postgres decides
 * everything else. Jobs that are early or whose webhook is at its in-flight cap go back to the
 * delayed set without counting as an attempt.
 */
@Injectable()
export class DeliveryProcessor extends WorkerHost implements OnModuleDestroy {
  private readonly logger = new Logger('DeliveryProcessor');

  constructor(
    private readonly deliveries: DeliveryService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {
    super();
  }

  async process(job: Job<DeliveryJob>, token?: string): Promise<void> {
    let outcome;
    try {
      // BullMQ counts every start of the job: the ones before this were sent back to the delayed set.
      outcome = await this.deliveries.attempt(job.data, Math.max(0, (job.attemptsStarted ?? 1) - 1));
    } catch (err) {
      // The delivery stays pending (and leased, if the claim happened): the sweeper picks it up again.
      this.logger.error({ msg: 'delivery job failed', deliveryId: job.data.deliveryId, jobId: job.id, error: (err as Error).message });
      throw err;
    }
    if (outcome.kind === 'over_cap' && !job.priority) {
      // A job sent back at a cap comes back behind every fresh job: BullMQ takes waiting jobs
      // before prioritized ones, so another tenant's new delivery never queues behind a capped
      // tenant's returning backlog. Set once, on the first refusal of this job; for a job that is
      // active, BullMQ only records the priority, which the delayed set's promotion then honours.
      await job.changePriority({ priority: OVER_CAP_PRIORITY });
    }
    if (outcome.kind === 'not_due' || outcome.kind === 'over_cap') {
      metrics.sentBack.inc({ reason: outcome.kind });
      await job.moveToDelayed(outcome.at.getTime(), token);
      throw new DelayedError();
    }
  }

  /** Redis trouble surfaces here; BullMQ reconnects by itself, so it is logged, not fatal. */
  @OnWorkerEvent('error')
  onWorkerError(err: Error): void {
    this.logger.error({ msg: 'queue worker error', error: err.message });
  }

  /**
   * Graceful shutdown: stop taking jobs and let the attempts in flight finish and be recorded,
   * up to their deadline plus a margin. This runs before the database and Redis connections
   * close. Whatever is still unfinished then is left to its lease and the sweeper: an attempt is
   * recorded in one transaction or not at all.
   */
  async onModuleDestroy(): Promise<void> {
    let worker;
    try {
      worker = this.worker;
    } catch {
      return; // never started
    }
    const deadlineMs = this.config.deliveryTimeoutMs + SHUTDOWN_MARGIN_MS;
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      worker.close().then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), deadlineMs);
      }),
    ]);
    clearTimeout(timer);
    if (!finished) {
      this.logger.warn({ msg: 'shutdown deadline reached with attempts still in flight; their leases will expire and the sweeper will retry them', deadlineMs });
    }
  }
}

/**
 * The processor class registered with BullMQ. Worker options (concurrency, lock duration) come
 * from the configuration, which exists only at runtime, while @Processor() is a class decorator:
 * so each worker module gets its own subclass decorated with its own settings.
 */
export function configuredDeliveryProcessor(config: BellhopConfig): Type<DeliveryProcessor> {
  @Processor(Queues.delivery, deliveryWorkerOptions(config))
  class ConfiguredDeliveryProcessor extends DeliveryProcessor {}
  return ConfiguredDeliveryProcessor;
}
