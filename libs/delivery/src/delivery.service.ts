import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { attemptOutcomeLabel, decideAttempt } from '@bellhop/domain';
import { metrics } from '@bellhop/observability';
import type { DeliveryJob } from '@bellhop/queue';
import { secretsKeyRing, signedHeaders, validSecrets } from '@bellhop/signing';
import { CapacityGate, DEFAULT_OVER_CAP_DELAY_MAX_MS, type Slot } from './capacity-gate';
import { type Claimed, type ClaimRequest, DeliveryStore, type DeliveryStatus, type Recorded } from './delivery.store';
import { DeliveryDispatcher, type Dispatch } from './dispatcher';
import { HttpSender, type AttemptError, type SendResult } from './http-sender';
import { IN_FLIGHT_LIMITER, type InFlightLimiter } from './in-flight-limiter';
import { OperationalRelay } from './operational-relay';
import type { ReplayDriver } from './replay-driver';
import { StatsCompactor } from './stats-compactor';
import { TestAttemptAnnouncer } from './test-attempts';
import { USER_AGENT } from './version';
import { WebhookHealth } from './webhook-health';

export interface DeliveryServiceOptions {
  /** Attempts to one webhook in flight at once, across all workers. Default 10. */
  maxInFlightPerWebhook?: number;
  /** Attempts of one organization in flight at once, across all workers. Default half of one worker's concurrency. */
  maxInFlightPerOrganization?: number;
  /** How long a webhook must have failed without a single success before it is disabled. Default 5 days. */
  autoDisableAfterMs?: number;
  /** ...and how many failed (non-test) attempts that run must hold at least. Default 5. */
  autoDisableMinFailures?: number;
  /** Range of the jittered delay of a job sent back at a cap, the first time. Default 250 ms to 1 s. */
  overCapDelayMs?: readonly [number, number];
  /** See CapacityOptions.overCapDelayMaxMs. Default 15 s. */
  overCapDelayMaxMs?: number;
  /** See CapacityOptions.slotWaitMs. Default 100 ms. */
  slotWaitMs?: number;
  /** The longest a job waits in place for a slot, however fast slots turn over. Default 1 s. */
  slotWaitMaxMs?: number;
}

/** Optional overrides of DeliveryServiceOptions, for the worker module or tests. */
export const DELIVERY_SERVICE_OPTIONS = Symbol('DELIVERY_SERVICE_OPTIONS');

/**
 * The worker's ReplayDriver, told of each replay attempt recorded (a token rather than the class:
 * replay-driver.ts imports this file).
 */
export const REPLAYS_OF_THIS_WORKER = Symbol('REPLAYS_OF_THIS_WORKER');

export const DEFAULT_DELIVERY_SERVICE_OPTIONS: Required<DeliveryServiceOptions> = {
  maxInFlightPerWebhook: 10,
  maxInFlightPerOrganization: 25,
  autoDisableAfterMs: 5 * 24 * 60 * 60 * 1000,
  autoDisableMinFailures: 5,
  overCapDelayMs: [250, 1000],
  overCapDelayMaxMs: DEFAULT_OVER_CAP_DELAY_MAX_MS,
  slotWaitMs: 100,
  slotWaitMaxMs: 1000,
};

/** What one job did. The processor turns not_due and over_cap into a delayed job. */
export type AttemptOutcome =
  | {
      kind: 'attempted';
      /** The attempt's number in the history. */
      attempt: number;
      /** The delivery's status after this attempt. */
      status: DeliveryStatus;
      statusCode: number | null;
      error: AttemptError | null;
      nextAttemptAt: Date | null;
      /** False when the lease had passed to another attempt: recorded in the history, the state not moved. */
      fenced: boolean;
    }
  | { kind: 'not_due'; at: Date }
  | { kind: 'over_cap'; at: Date }
  | { kind: 'cancelled'; reason: 'webhook_deleted' | 'webhook_disabled' }
  | { kind: 'skipped'; reason: 'missing' | 'done' | 'stale' | 'leased' };

/** How soon a job retries when its claim failed although the row looked claimable just after. */
const RACED_RETRY_MS = 100;

/**
 * The delivery orchestrator: claim → sign → send → record → schedule. Postgres is the truth and
 * DeliveryStore its only writer; the capacity gate keeps endpoints and tenants from taking every
 * slot; the retry rules are the pure decideAttempt of libs/domain. Redis only says "look at
 * this delivery now".
 */
@Injectable()
export class DeliveryService {
  private readonly logger = new Logger(DeliveryService.name);
  private readonly options: Required<DeliveryServiceOptions>;
  private readonly gate: CapacityGate;
  private readonly health: WebhookHealth;

  constructor(
    prisma: PrismaService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
    private readonly store: DeliveryStore,
    private readonly sender: HttpSender,
    private readonly dispatcher: DeliveryDispatcher,
    @Inject(IN_FLIGHT_LIMITER) limiter: InFlightLimiter,
    @Optional() @Inject(DELIVERY_SERVICE_OPTIONS) options?: DeliveryServiceOptions,
    @Optional() private readonly operational?: OperationalRelay,
    @Optional() private readonly testAttempts?: TestAttemptAnnouncer,
    @Optional() private readonly stats?: StatsCompactor,
    @Optional() @Inject(REPLAYS_OF_THIS_WORKER) private readonly replays?: Pick<ReplayDriver, 'replayAttemptRecorded'>,
  ) {
    this.options = {
      ...DEFAULT_DELIVERY_SERVICE_OPTIONS,
      maxInFlightPerWebhook: config.maxInFlightPerWebhook ?? DEFAULT_DELIVERY_SERVICE_OPTIONS.maxInFlightPerWebhook,
      maxInFlightPerOrganization: config.maxInFlightPerOrganization ?? DEFAULT_DELIVERY_SERVICE_OPTIONS.maxInFlightPerOrganization,
      autoDisableAfterMs: config.autoDisableAfterMs ?? DEFAULT_DELIVERY_SERVICE_OPTIONS.autoDisableAfterMs,
      ...(options ?? {}),
    };
    this.gate = new CapacityGate(limiter, { ...this.options, slotTtlMs: store.leaseMs });
    this.health = new WebhookHealth(prisma, this.options);
  }

  /**
   * Makes the attempt a job asks for, if it is still to be made. `sentBack`: how many times this
   * job was put back in the queue before (at a cap, or early), so that a job refused at a cap
   * again and again comes back less and less often.
   */
  async attempt(job: DeliveryJob, sentBack = 0): Promise<AttemptOutcome> {
    const request: ClaimRequest =
      job.kind === 'manual' ? { deliveryId: job.deliveryId, kind: 'manual' } : { deliveryId: job.deliveryId, kind: 'scheduled', scheduledAttempt: job.attempt };
    let { webhookId, organizationId } = job;
    if (!webhookId || !organizationId) {
      // A job of an earlier version: find the caps' keys first.
      const owner = await this.store.ownerOf(job.deliveryId);
      if (!owner) return { kind: 'skipped', reason: 'missing' };
      ({ webhookId, organizationId } = owner);
    }
    // The cap first (Redis), then claim straight away. Only when the claim finds nothing does a
    // read explain why (early, leased, done, or its webhook disabled).
    const slot = await this.gate.enter({ deliveryId: job.deliveryId, webhookId, organizationId, member: CapacityGate.member(job.deliveryId) }, sentBack);
    if (slot.kind === 'denied') return { kind: 'over_cap', at: slot.retryAt };
    try {
      const claimed = await this.store.claim(request);
      if (claimed) return await this.attemptClaimed(claimed, slot);
      await slot.release();
      return await this.afterRefusal(request);
    } finally {
      await slot.release();
    }
  }

  private async afterRefusal(request: ClaimRequest): Promise<AttemptOutcome> {
    const refusal = await this.store.explainRefusal(request);
    switch (refusal.reason) {
      case 'missing':
      case 'done':
      case 'stale':
      case 'leased':
        // A leased delivery's holder dispatches whatever is due after it when it records.
        return { kind: 'skipped', reason: refusal.reason };
      case 'webhook_inactive': {
        const cancelled = await this.store.cancelInactive(request.deliveryId);
        // A `?wait=true` request for this test is over too: it reads the delivery cancelled.
        if (cancelled.changed && cancelled.test) void this.testAttempts?.recorded(request.deliveryId);
        return { kind: 'cancelled', reason: refusal.deleted ? 'webhook_deleted' : 'webhook_disabled' };
      }
      case 'not_due':
        // Relative to this process's clock, so that skew with Postgres cannot make the job spin.
        return { kind: 'not_due', at: new Date(Date.now() + refusal.inMs) };
      case 'raced':
        // Another job took it in between, or it became due between the claim and the read: look again shortly.
        return { kind: 'not_due', at: new Date(Date.now() + RACED_RETRY_MS) };
    }
  }

  /** Signs, sends, records, then dispatches what comes next. The slots are given back as soon as the request is over. */
  private async attemptClaimed(claimed: Claimed, slot: Extract<Slot, { release: unknown }>): Promise<AttemptOutcome> {
    const startedAt = new Date();
    if (claimed.dueAt) metrics.deliveryLag.observe(Math.max(0, startedAt.getTime() - claimed.dueAt.getTime()) / 1000);
    let secrets: string[] | null = null;
    let secretProblem: string | null = null;
    try {
      secrets = validSecrets({ id: claimed.webhookId, secretCiphertext: claimed.secretCiphertext, previousSecrets: claimed.previousSecrets }, secretsKeyRing(this.config), startedAt);
    } catch (err) {
      secretProblem = (err as Error).message;
    }

    let headers: Record<string, string> = {};
    let result: SendResult;
    if (secrets) {
      // The webhook's own headers first: Bellhop's (reserved, refused as custom names) are set over them.
      headers = {
        ...claimed.headers,
        ...signedHeaders({
          secrets,
          eventId: claimed.eventId,
          eventType: claimed.eventType,
          deliveryId: claimed.id,
          attempt: claimed.attempt,
          timestampSeconds: Math.floor(startedAt.getTime() / 1000),
          body: claimed.body,
          userAgent: USER_AGENT,
        }),
      };
      metrics.inFlight.inc();
      try {
        result = await this.sender.send({ url: claimed.url, headers, body: claimed.body });
      } finally {
        metrics.inFlight.dec();
        void slot.release(true);
      }
    } else {
      // A poison delivery: no request can be signed. It is recorded as a failed attempt and
      // follows the schedule like any other failure, so it ends instead of looping.
      void slot.release(false);
      this.logger.error({ msg: 'cannot decrypt the secret of the webhook: the key it was stored under is neither SECRETS_KEY nor in SECRETS_KEY_PREVIOUS (see error)', webhookId: claimed.webhookId, deliveryId: claimed.id, error: secretProblem });
      result = {
        statusCode: null,
        headers: {},
        body: null,
        bodyTruncated: false,
        responseTimeMs: 0,
        error: { code: 'secret_unavailable', message: 'The webhook secret could not be decrypted; no request was sent' },
      };
    }

    const verdict = decideAttempt({
      trigger: claimed.trigger,
      statusCode: result.statusCode,
      errored: result.error !== null,
      retryAfter: result.headers['retry-after'],
      scheduledAttemptsBefore: claimed.scheduledAttempts,
      scheduleMs: this.scheduleOf(claimed),
    });
    metrics.attempts.inc({ outcome: attemptOutcomeLabel(result.statusCode, result.error?.code ?? null) });
    metrics.attemptDuration.observe(result.responseTimeMs / 1000);

    const recorded = await this.store.record({
      claimed,
      startedAt,
      requestHeaders: headers,
      statusCode: result.statusCode,
      responseHeaders: result.statusCode === null ? null : result.headers,
      responseBody: result.body,
      responseBodyTruncated: result.bodyTruncated,
      responseTimeMs: result.responseTimeMs,
      error: result.error,
      verdict,
    });
    if (!recorded.fenced) {
      this.logger.warn({ msg: 'attempt recorded after its lease had passed to another attempt; the delivery keeps that attempt\'s state', deliveryId: claimed.id, attempt: recorded.attempt });
    } else if (!verdict.success) {
      this.logger.log({
        msg: 'delivery attempt failed',
        deliveryId: claimed.id,
        webhookId: claimed.webhookId,
        attempt: recorded.attempt,
        statusCode: result.statusCode,
        errorCode: result.error?.code ?? null,
        nextStatus: recorded.status,
      });
    }
    if (recorded.webhookDisabled) this.logger.warn({ msg: 'webhook disabled: the receiver answered 410 Gone', webhookId: claimed.webhookId, deliveryId: claimed.id });
    // The recording has committed: a `?wait=true` request for this test can answer now.
    if (claimed.test) void this.testAttempts?.recorded(claimed.id);
    // Loops that slow down while idle keep their working pace: the recording appended stats deltas
    // to fold, and a replay's attempt means a replay runs.
    this.stats?.deltasAppended();
    if (claimed.trigger === 'replay') this.replays?.replayAttemptRecorded();

    await this.dispatchNext(claimed, recorded);
    // After the dispatch, and on its own: a failure here must not cost the next attempt.
    let disabled = false;
    if (recorded.fenced && !claimed.test && !verdict.success && !verdict.gone) {
      disabled = await this.health.checkAutoDisable(claimed.webhookId).catch((err: Error) => {
        this.logger.error({ msg: 'auto-disable check failed; it runs again at the next failure', webhookId: claimed.webhookId, error: err.message });
        return false;
      });
    }
    // An operational event was written with the recording (or the disable): publish it now.
    if (recorded.operationalRaised || disabled) this.operational?.nudge();
    return {
      kind: 'attempted',
      attempt: recorded.attempt,
      status: recorded.status,
      statusCode: result.statusCode,
      error: result.error,
      nextAttemptAt: recorded.status === 'pending' ? recorded.nextAttemptAt : null,
      fenced: recorded.fenced,
    };
  }

  /**
   * What is due after this attempt: the next scheduled step of a pending delivery, and a manual
   * attempt asked for while this one was in flight (its own job found the delivery leased and
   * was dropped). A lost dispatch is repaired by the sweeper.
   */
  private async dispatchNext(claimed: Claimed, recorded: Recorded): Promise<void> {
    if (!recorded.fenced) return; // the current holder dispatches
    const owner = { deliveryId: claimed.id, webhookId: claimed.webhookId, organizationId: claimed.organizationId };
    const next: Dispatch[] = [];
    if (recorded.status === 'pending' && recorded.nextAttemptAt) {
      const outsideSchedule = claimed.trigger === 'manual' || claimed.trigger === 'replay';
      // After a manual attempt the step's own job may have been dropped while this one held the
      // lease: a second job with its own id (the step is claimed once, whichever runs first).
      next.push({ ...owner, attempt: recorded.scheduledAttempts + 1, at: recorded.nextAttemptAt, ...(outsideSchedule ? { key: `a${recorded.attempt}` } : {}) });
    }
    if (recorded.manualRequestedAt) next.push({ ...owner, kind: 'manual', requestedAt: recorded.manualRequestedAt, key: `a${recorded.attempt}` });
    if (next.length === 0) return;
    try {
      await this.dispatcher.dispatch(next);
    } catch (err) {
      this.logger.error({ msg: 'could not enqueue what is due next; the sweeper will', deliveryId: claimed.id, error: (err as Error).message });
    }
  }

  /** The webhook's own retry schedule, else the server's. */
  private scheduleOf(claimed: Claimed): number[] {
    const own = claimed.retryScheduleMs;
    return Array.isArray(own) && own.every((ms) => typeof ms === 'number') ? (own as number[]) : this.config.retryScheduleMs;
  }
}
