import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { metrics } from '@bellhop/observability';
import { DeliveryJob, Queues, deliveryJobId, manualJobId } from '@bellhop/queue';
import { BackgroundLoop } from './background-loop';
import { DEFAULT_OVER_CAP_DELAY_MAX_MS } from './capacity-gate';
import { DeliveryStore, type LostCandidate } from './delivery.store';
import { DeliveryDispatcher, type Dispatch } from './dispatcher';

/** A due delivery whose job is active but whose row was never leased for this long has lost its worker. */
const STUCK_ACTIVE_MS = 15_000;
/**
 * A delayed job whose row is due is promoted only when it would otherwise wait longer than this:
 * cap back-offs are shorter (they grow with each refusal of the job, up to the over-cap maximum).
 */
const PROMOTE_AFTER_MS = Math.max(2_000, DEFAULT_OVER_CAP_DELAY_MAX_MS + 1_000);
/**
 * A job sent back at a cap waits behind every fresh job (BullMQ takes the wait list before the
 * prioritized set). Under traffic that never lets the wait list empty, it would wait for ever:
 * once its row is this overdue, it is put at the back of the wait list instead. Long enough that a
 * capped endpoint's backlog that is moving anyway is not put in other tenants' way every sweep.
 */
const REQUEUE_PRIORITIZED_AFTER_MS = 60_000;

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
  /** Jobs sent back at a cap that had waited long behind fresh ones, put back in line (not lost: not counted as re-dispatched). */
  requeued: number;
}

/**
 * Puts back on the queue what the queue lost: due, unleased pending deliveries whose job never
 * made it to Redis (enqueue failed after commit, Redis restarted without persistence) or whose
 * worker died mid-attempt (its lease ran out). Safe to run in every worker at once: rows are
 * read with SKIP LOCKED and a job id is per attempt, so adding it twice is a no-op.
 */
@Injectable()
export class Sweeper extends BackgroundLoop<SweepResult> {
  protected readonly logger = new Logger(Sweeper.name);
  private readonly graceMs: number;
  private readonly batchSize: number;

  constructor(
    private readonly store: DeliveryStore,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
    @InjectQueue(Queues.delivery) private readonly queue: SweptQueue,
    private readonly dispatcher: DeliveryDispatcher,
    @Optional() @Inject(SWEEPER_OPTIONS) options?: SweeperOptions,
  ) {
    super('sweep', options?.autoStart ?? true);
    this.graceMs = options?.graceMs ?? Math.min(5000, config.sweepIntervalMs);
    this.batchSize = options?.batchSize ?? 1000;
  }

  /** Sweeps at boot, then every SWEEP_INTERVAL. */
  protected pass(): Promise<SweepResult> {
    return this.sweep();
  }

  protected delayAfter(): number {
    return this.config.sweepIntervalMs;
  }

  /** Where the last sweep stopped in due order; the next one goes on from there. */
  private cursor: { dueAt: Date; id: string } | null = null;

  async sweep(): Promise<SweepResult> {
    // The rows are read (with SKIP LOCKED, so several sweepers read different rows) and their
    // jobs looked up after; enqueueing happens after the transaction, never inside. Each sweep
    // goes on from where the last stopped, so that a backlog of legitimately waiting deliveries
    // longer than one batch cannot hide a lost one behind it: after the last page, it starts over.
    const rows = await this.store.findLost({ graceMs: this.graceMs, limit: this.batchSize, after: this.cursor });
    const scheduled = rows.filter((row) => row.kind === 'scheduled');
    const last = scheduled[scheduled.length - 1];
    this.cursor = scheduled.length < this.batchSize || !last ? null : { dueAt: last.dueAt, id: last.id };
    const result: SweepResult = { found: rows.length, added: 0, promoted: 0, requeued: 0 };
    if (rows.length === 0) return result;

    const missing: Dispatch[] = [];
    for (let i = 0; i < rows.length; i += 100) {
      await Promise.all(rows.slice(i, i + 100).map((row) => this.check(row, missing, result)));
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
    if (result.requeued > 0) {
      this.logger.log({ msg: 'sweeper put jobs sent back at a cap that had waited over a minute behind fresh jobs back in line', requeued: result.requeued });
    }
    return result;
  }

  /** Looks up the job a lost candidate should have, and says what to put back. */
  private async check(row: LostCandidate, missing: Dispatch[], result: SweepResult): Promise<void> {
    const owner = { deliveryId: row.id, webhookId: row.webhookId, organizationId: row.organizationId };
    if (row.kind === 'manual') {
      // A manual request still waiting, or a manual attempt whose worker died: a job of its own,
      // with an id that stays the same from sweep to sweep (adding it again is a no-op, however
      // long it waits at its webhook's cap), and harmless beside another (a request is claimed once).
      if (row.manualRequestedAt) {
        const jobId = manualJobId(row.id, row.manualRequestedAt);
        const state = await this.queue.getJobState(jobId);
        if (state === 'prioritized') return this.requeuePrioritized(jobId, row, result);
        if (state !== 'unknown' && state !== 'completed' && state !== 'failed') return;
        missing.push({ ...owner, kind: 'manual', requestedAt: row.manualRequestedAt, key: 'swept' });
      } else {
        missing.push({ ...owner, kind: 'manual', requestedAt: row.dueAt, key: 'lease' });
      }
      return;
    }
    const jobId = deliveryJobId(row.id, row.scheduledAttempt);
    const state = await this.queue.getJobState(jobId);
    if (state === 'unknown') {
      missing.push({ ...owner, attempt: row.scheduledAttempt });
    } else if (state === 'delayed') {
      // The row is due but its job waits for later. Only a job delayed well past the row's due
      // time is promoted: a shorter delay is a job sent back at a cap (for longer at each
      // refusal, up to the over-cap maximum), and promoting it would undo the cap's back-off.
      const job = await this.queue.getJob(jobId);
      const jobDueAt = job ? job.timestamp + (job.delay ?? 0) : 0;
      if (job && jobDueAt > Date.now() + PROMOTE_AFTER_MS && (await job.promote().then(() => true, () => false))) result.promoted++;
    } else if (state === 'prioritized') {
      await this.requeuePrioritized(jobId, row, result);
    } else if (state === 'active' && (row.leaseExpired || (await this.activeForMs(jobId)) > STUCK_ACTIVE_MS)) {
      // Claimed, never recorded, lease run out: the worker died mid-attempt and BullMQ has not
      // noticed yet (that takes up to lockDuration + stalledInterval). Also when a job has been
      // active for long without ever taking the lease: its worker died between taking the job
      // and claiming the row. That is timed from when the job became active, not from when the
      // row became due: behind a backlog, a row is long overdue when its job starts, and a job
      // claiming it right now is not lost. A second job, with its own id, retries now; whichever
      // of the two runs second finds the step done and skips.
      missing.push({ ...owner, attempt: row.scheduledAttempt, key: 'swept' });
    } else if (state === 'completed' || state === 'failed') {
      // A finished job would block re-adding the same id (jobs are normally removed at the end).
      await this.queue.remove(jobId);
      missing.push({ ...owner, attempt: row.scheduledAttempt });
    }
    // waiting, prioritized, or active and not yet claimed: it is on its way.
  }

  /** How long the job has been active (BullMQ's processedOn: set each time a worker takes it), 0 if gone. */
  private async activeForMs(jobId: string): Promise<number> {
    const job = await this.queue.getJob(jobId);
    return job?.processedOn ? Date.now() - job.processedOn : 0;
  }

  /** A job sent back at a cap whose row has waited long: to the back of the wait list (priority 0). */
  private async requeuePrioritized(jobId: string, row: LostCandidate, result: SweepResult): Promise<void> {
    if (row.overdueMs <= REQUEUE_PRIORITIZED_AFTER_MS) return;
    const job = await this.queue.getJob(jobId);
    if (job && (await job.changePriority({ priority: 0 }).then(() => true, () => false))) result.requeued++;
  }
}
