import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Prisma, PrismaService } from '@bellhop/database';
import { DEFAULT_DELIVERY_SERVICE_OPTIONS, DELIVERY_SERVICE_OPTIONS, type DeliveryServiceOptions } from './delivery.service';
import { BackgroundLoop, IdleBackoff } from './background-loop';
import { DeliveryStore } from './delivery.store';
import { DeliveryDispatcher } from './dispatcher';

/** What a replay matches: the webhook's non-test deliveries created in [from, to), with one of these statuses (and this event type). */
export interface ReplayFilter {
  webhookId: string;
  from: Date;
  to: Date;
  statuses: readonly string[];
  eventType: string | null;
}

/**
 * The one definition of a replay's match, over `deliveries d`: used to count at creation and to
 * take each page after. Written for the (webhook_id, status, id) and (webhook_id, id) indexes.
 */
export function replayMatch(filter: ReplayFilter): Prisma.Sql {
  return Prisma.sql`d.webhook_id = ${filter.webhookId} AND NOT d.test
           AND d.status = ANY(${[...filter.statuses]}::text[]::"DeliveryStatus"[])
           AND d.created_at >= ${filter.from.toISOString()}::timestamptz AND d.created_at < ${filter.to.toISOString()}::timestamptz
           ${filter.eventType === null ? Prisma.empty : Prisma.sql`AND d.event_type = ${filter.eventType}`}`;
}

export interface ReplayDriverOptions {
  /** Start driving running replays when the app boots. Default true (the API provides it with false and only nudges). */
  autoStart?: boolean;
  /**
   * How soon the next pass runs while replays run: minIntervalMs after a pass that queued attempts
   * (the attempts before them were done: the receiver keeps up), then twice as long after each
   * pass that found no room, up to activeIntervalMs. Defaults 20 ms and 200 ms.
   */
  minIntervalMs?: number;
  activeIntervalMs?: number;
  /**
   * How soon the next look for running replays comes while none runs (one indexed query): after
   * idleIntervalMs, then twice as long after each look that finds none, up to idleIntervalMaxMs.
   * An attempt of a replay recorded in this worker brings the next look within activeIntervalMs
   * (replayAttemptRecorded). Defaults 2 s and 8 s: under the database pool's idle timeout (pg's
   * default, 10 s), so that an idle worker keeps its one open connection instead of opening a new
   * one for each look of its loops (a new connection costs Postgres about 10 ms of CPU, a look on
   * an open one about 0.06 ms).
   */
  idleIntervalMs?: number;
  idleIntervalMaxMs?: number;
  /**
   * Replay attempts to one webhook waiting or in flight at once, all its replays together. Default:
   * half the webhook's in-flight cap (at least 1), so that its live deliveries keep the other half.
   */
  maxInFlightPerWebhook?: number;
}

export const REPLAY_DRIVER_OPTIONS = Symbol('REPLAY_DRIVER_OPTIONS');

/** What one step of a replay did. */
export type ReplayStep =
  /** Locked by another driver, or no longer running: nothing done. */
  | { kind: 'skipped' }
  /** Attempts requested and dispatched (possibly none: all its in-flight room is taken, or every candidate already had an attempt waiting). */
  | { kind: 'queued'; queued: number }
  | { kind: 'completed' }
  /** Its webhook was disabled or deleted meanwhile. */
  | { kind: 'cancelled' };

export interface ReplayPass {
  /** Running replays looked at. */
  running: number;
  /** Attempts requested in this pass. */
  queued: number;
}

/** Running replays looked at per pass (the next pass goes on after the last). */
const PASS_SIZE = 200;
/** Replays stepped at once. */
const PARALLEL_STEPS = 4;
/**
 * How long a step waits for a delivery row another statement holds. Recordings lock deliveries
 * and then the replay (its counters); a step holds the replay and then locks deliveries. Rather
 * than wait in a circle (until the deadlock detector breaks it, a second later), the step gives
 * up soon and the next pass tries again; the recording it was in the way of never fails.
 */
const STEP_LOCK_TIMEOUT = '200ms';

interface ReplayRow {
  id: string;
  webhook_id: string;
  from_time: Date;
  to_time: Date;
  statuses: string[];
  event_type: string | null;
  cursor: string | null;
  last_id: string | null;
  active: boolean;
}

/**
 * Moves running replays along, a page at a time: each replay has at most the webhook's in-flight
 * cap of attempts waiting or in flight, so that a replay of 100,000 deliveries never floods the
 * queue nor starves the webhook's live traffic. A step locks its replay (SKIP LOCKED: workers
 * never drive one replay at once), requests the next attempts in id order after the cursor,
 * moves the cursor and commits; the jobs are dispatched after the commit (a lost one is put back
 * by the sweeper: the request is in Postgres). Runs in every worker; while no replay runs it costs
 * one indexed query every idleIntervalMs at first, then less and less often (up to idleIntervalMaxMs
 * apart) until a replay's attempt is recorded here or a look finds one running.
 */
@Injectable()
export class ReplayDriver extends BackgroundLoop<ReplayPass> {
  protected readonly logger = new Logger(ReplayDriver.name);
  private readonly minIntervalMs: number;
  private readonly activeIntervalMs: number;
  private readonly idle: IdleBackoff;
  private nextDelayMs: number;
  readonly cap: number;
  /** The last replay of the previous pass, when it was a full one. */
  private after: string | null = null;

  constructor(
    private readonly prisma: PrismaService,
    @Inject(BELLHOP_CONFIG) config: BellhopConfig,
    private readonly store: DeliveryStore,
    private readonly dispatcher: DeliveryDispatcher,
    @Optional() @Inject(REPLAY_DRIVER_OPTIONS) options?: ReplayDriverOptions,
    @Optional() @Inject(DELIVERY_SERVICE_OPTIONS) deliveryOptions?: DeliveryServiceOptions,
  ) {
    super('replay pass', options?.autoStart ?? true);
    this.minIntervalMs = options?.minIntervalMs ?? 20;
    this.activeIntervalMs = Math.max(this.minIntervalMs, options?.activeIntervalMs ?? 200);
    const idleIntervalMs = options?.idleIntervalMs ?? 2000;
    this.idle = new IdleBackoff(idleIntervalMs, Math.max(idleIntervalMs, options?.idleIntervalMaxMs ?? 8_000));
    this.nextDelayMs = this.minIntervalMs;
    // Half the delivery service's cap, whichever way it was set.
    const webhookCap = deliveryOptions?.maxInFlightPerWebhook ?? config.maxInFlightPerWebhook ?? DEFAULT_DELIVERY_SERVICE_OPTIONS.maxInFlightPerWebhook;
    this.cap = Math.max(1, options?.maxInFlightPerWebhook ?? Math.floor(webhookCap / 2));
  }

  protected pass(): Promise<ReplayPass> {
    return this.runOnce();
  }

  /** One pass: a step of every running replay (PASS_SIZE at most; the next pass goes on from there). */
  async runOnce(): Promise<ReplayPass> {
    const rows = await this.prisma.$queryRaw<Array<{ id: string }>>`
      SELECT id FROM replays
       WHERE status = 'running' ${this.after ? Prisma.sql`AND id > ${this.after}` : Prisma.empty}
       ORDER BY id
       LIMIT ${PASS_SIZE}::int`;
    this.after = rows.length === PASS_SIZE ? rows[rows.length - 1].id : null;
    const pass: ReplayPass = { running: rows.length, queued: 0 };
    for (let i = 0; i < rows.length; i += PARALLEL_STEPS) {
      const steps = await Promise.all(
        rows.slice(i, i + PARALLEL_STEPS).map((row) =>
          this.advance(row.id).catch((err: Error) => {
            // A lock wait given up (see STEP_LOCK_TIMEOUT) or a lost connection: the next pass tries again.
            this.logger.warn({ msg: 'replay step failed; retrying at the next pass', replayId: row.id, error: err.message });
            return { kind: 'skipped' } as const;
          }),
        ),
      );
      for (const step of steps) if (step.kind === 'queued') pass.queued += step.queued;
    }
    return pass;
  }

  /**
   * One step of one replay: requests as many attempts as its room allows, or ends it (completed
   * when nothing is left to queue or in flight; cancelled when its webhook is disabled or deleted).
   * A cancelled or completed replay is not touched: its attempts in flight still finish and count.
   */
  async advance(replayId: string): Promise<ReplayStep> {
    // Most steps of a replay to a slow receiver find its room taken: a read tells, without the lock
    // that the recordings of its attempts (which count them on the replay) would wait for.
    if ((await this.store.outstandingReplayAttempts(replayId, this.prisma, true)) >= this.cap) return { kind: 'queued', queued: 0 };
    const { step, dispatch } = await this.prisma.$transaction(
      async (tx) => {
        await tx.$queryRaw`SELECT set_config('lock_timeout', ${STEP_LOCK_TIMEOUT}, true)`;
        const [replay] = await tx.$queryRaw<ReplayRow[]>`
          SELECT r.id, r.webhook_id, r.from_time, r.to_time, r.statuses, r.event_type, r.cursor, r.last_id,
                 -- A webhook gone with its project ends the replay too.
                 COALESCE((SELECT w.enabled AND w.deleted_at IS NULL FROM webhooks w WHERE w.id = r.webhook_id), false) AS active
            FROM replays r
           WHERE r.id = ${replayId} AND r.status = 'running'
             FOR UPDATE SKIP LOCKED`;
        if (!replay) return { step: { kind: 'skipped' } as ReplayStep, dispatch: [] };
        if (!replay.active) {
          await tx.$executeRaw`UPDATE replays SET status = 'cancelled', completed_at = now() WHERE id = ${replay.id}`;
          return { step: { kind: 'cancelled' } as ReplayStep, dispatch: [] };
        }
        // The room is the webhook's, shared by its replays: one step per webhook at a time (the other
        // replay's step tries again at the next pass), so two replays of one webhook never take more than one.
        const [{ locked }] = await tx.$queryRaw<Array<{ locked: boolean }>>`
          SELECT pg_try_advisory_xact_lock(hashtextextended(${`bellhop:replay:${replay.webhook_id}`}, 0)) AS locked`;
        if (!locked) return { step: { kind: 'queued', queued: 0 } as ReplayStep, dispatch: [] };
        const outstanding = await this.store.outstandingReplayAttempts(replay.id, tx);
        const room = this.cap - (await this.store.outstandingReplayAttempts(replay.id, tx, true));
        if (room <= 0) return { step: { kind: 'queued', queued: 0 } as ReplayStep, dispatch: [] };
        const more = replay.last_id !== null && (replay.cursor === null || replay.cursor < replay.last_id);
        const page = more
          ? await tx.$queryRaw<Array<{ id: string }>>`
              SELECT d.id FROM deliveries d
               WHERE ${replayMatch({ webhookId: replay.webhook_id, from: replay.from_time, to: replay.to_time, statuses: replay.statuses, eventType: replay.event_type })}
                 AND d.id <= ${replay.last_id} ${replay.cursor ? Prisma.sql`AND d.id > ${replay.cursor}` : Prisma.empty}
               ORDER BY d.id
               LIMIT ${room}::int`
          : [];
        if (page.length === 0) {
          if (outstanding === 0) {
            await tx.$executeRaw`UPDATE replays SET status = 'completed', completed_at = now(), cursor = COALESCE(last_id, cursor) WHERE id = ${replay.id}`;
            return { step: { kind: 'completed' } as ReplayStep, dispatch: [] };
          }
          // Nothing left to queue: the cursor goes to the end, so that later steps only wait for the last attempts.
          if (more) await tx.$executeRaw`UPDATE replays SET cursor = last_id WHERE id = ${replay.id}`;
          return { step: { kind: 'queued', queued: 0 } as ReplayStep, dispatch: [] };
        }
        const match = replayMatch({ webhookId: replay.webhook_id, from: replay.from_time, to: replay.to_time, statuses: replay.statuses, eventType: replay.event_type });
        const queued = await this.store.requestReplayAttempts({ id: replay.id, webhookId: replay.webhook_id }, page.map((row) => row.id), tx, match);
        // Past every delivery of the page, queued or skipped (one with a manual attempt already waiting).
        await tx.$executeRaw`
          UPDATE replays SET queued = queued + ${queued.length}::int, cursor = ${page[page.length - 1].id} WHERE id = ${replay.id}`;
        return { step: { kind: 'queued', queued: queued.length } as ReplayStep, dispatch: queued };
      },
      { maxWait: 5_000, timeout: 10_000 },
    );
    if (dispatch.length > 0) {
      const failed = await this.dispatcher.tryDispatch(
        dispatch.map((d) => ({ deliveryId: d.id, webhookId: d.webhookId, organizationId: d.organizationId, kind: 'manual' as const, requestedAt: d.requestedAt })),
      );
      if (failed) this.logger.warn({ msg: 'enqueue failed; the sweeper will dispatch', replayId, error: failed.message });
    }
    return step;
  }

  /**
   * An attempt of a replay was recorded in this worker: a replay runs (the API took its first step,
   * or another worker drives it), so an idle driver looks within activeIntervalMs. A driver already
   * driving one is left at its pace.
   */
  replayAttemptRecorded(): void {
    this.wake(this.activeIntervalMs);
  }

  /** A replay moves as fast as its webhook answers, and an idle worker looks less and less often. */
  protected delayAfter(pass: ReplayPass | null): number {
    if (pass === null) return this.idle.minMs;
    if (pass.running === 0) {
      this.nextDelayMs = this.minIntervalMs;
      return this.idle.idle();
    }
    this.idle.reset();
    this.nextDelayMs = pass.queued > 0 ? this.minIntervalMs : Math.min(2 * this.nextDelayMs, this.activeIntervalMs);
    return this.nextDelayMs;
  }
}
