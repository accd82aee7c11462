import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { MAX_RETRY_AFTER_MS, newId, nextRetryDelay, parseRetryAfter } from '@bellhop/domain';
import { metrics } from '@bellhop/observability';
import { decryptSecret, signedHeaders } from '@bellhop/signing';
import { Batcher } from '@bellhop/database';
import { DeliveryDispatcher } from './dispatcher';
import { HttpSender, type AttemptError, type SendResult } from './http-sender';
import { IN_FLIGHT_LIMITER, type InFlightLimiter } from './in-flight-limiter';
import { USER_AGENT } from './version';

export interface DeliveryServiceOptions {
  /** Attempts to one webhook in flight at once, across all workers. Default 10. */
  maxInFlightPerWebhook?: number;
  /** Attempts of one organization in flight at once in this worker. Default half the concurrency. */
  maxInFlightPerOrganization?: number;
  /** How long a webhook must have failed without a single success before it is disabled. Default 5 days. */
  autoDisableAfterMs?: number;
  /** ...and how many failed (non-test) attempts that run must hold at least. Default 5. */
  autoDisableMinFailures?: number;
  /** Range of the short, jittered delay of a job that found its webhook at the cap. Default 250 ms to 1 s. */
  overCapDelayMs?: readonly [number, number];
  /**
   * How long a job whose webhook or organization is at its cap waits in place for a slot before it
   * is sent back to the queue, unless slots of that cap are being freed in this process meanwhile.
   * So a slow endpoint's jobs give their worker slot back after this, while a fast endpoint's (or
   * a busy tenant's) wait their turn. Default 100 ms.
   */
  slotWaitMs?: number;
  /** The longest a job waits in place for a slot, however fast slots turn over. Default 1 s. */
  slotWaitMaxMs?: number;
}

/** Optional overrides of DeliveryServiceOptions, for the worker module or tests. */
export const DELIVERY_SERVICE_OPTIONS = Symbol('DELIVERY_SERVICE_OPTIONS');

export const DEFAULT_DELIVERY_SERVICE_OPTIONS: Required<DeliveryServiceOptions> = {
  maxInFlightPerWebhook: 10,
  maxInFlightPerOrganization: 25,
  autoDisableAfterMs: 5 * 24 * 60 * 60 * 1000,
  autoDisableMinFailures: 5,
  overCapDelayMs: [250, 1000],
  slotWaitMs: 100,
  slotWaitMaxMs: 1000,
};

type FinalStatus = 'pending' | 'succeeded' | 'failed' | 'cancelled';

/** What one job did. The processor turns not_due and over_cap into a delayed job. */
export type AttemptOutcome =
  | {
      kind: 'attempted';
      attempt: number;
      /** The delivery's status after this attempt. */
      status: FinalStatus;
      statusCode: number | null;
      error: AttemptError | null;
      nextAttemptAt: Date | null;
      /** False when another worker recorded this attempt number first (the lease had run out). */
      recorded: boolean;
    }
  | { kind: 'not_due'; at: Date }
  | { kind: 'over_cap'; at: Date }
  | { kind: 'cancelled'; reason: 'webhook_deleted' | 'webhook_disabled' }
  | { kind: 'skipped'; reason: 'missing' | 'not_pending' | 'leased' | 'stale' | 'raced' };

export interface AttemptOptions {
  /**
   * The attempt number the job was made for. Only used to drop stale duplicates (a job for an
   * attempt that Postgres has already recorded); the number used is always attempt_count + 1.
   */
  expectedAttempt?: number;
  /** The delivery's webhook, when the job carries it: the in-flight cap is then checked before Postgres. */
  webhookId?: string;
  /** The delivery's organization, when the job carries it, for the per-organization cap. */
  organizationId?: string;
}

/** A job may run this much before the row's next_attempt_at (clock skew between worker, Redis and Postgres). */
const DUE_SLACK_MS = 50;
/** The lease outlives the HTTP deadline by this much, so that recording always fits inside it. */
const LEASE_MARGIN_MS = 30_000;
interface StateRow {
  webhook_id: string;
  organization_id: string;
  status: string;
  attempt_count: number;
  leased: boolean;
  due_in_ms: number;
  webhook_enabled: boolean;
  webhook_deleted: boolean;
}

interface ClaimRow {
  id: string;
  webhook_id: string;
  organization_id: string;
  event_id: string;
  event_type: string;
  test: boolean;
  attempt_count: number;
  next_trigger: 'scheduled' | 'manual' | 'test';
  url: string;
  secret_ciphertext: string;
  previous_secret_ciphertext: string | null;
  previous_valid: boolean;
  body: string;
}

interface SlotKey {
  deliveryId: string;
  webhookId: string;
  organizationId: string;
  /**
   * This job's hold on the slots, unique per job: two jobs for one delivery (a manual retry while
   * an attempt is in flight) then hold, and give back, a slot each.
   */
  member: string;
}

let slotSequence = 0;
/** A slot member unique across jobs and worker processes. */
function slotMember(deliveryId: string): string {
  slotSequence = (slotSequence + 1) % 0x100000000;
  return `${deliveryId}.${process.pid.toString(36)}.${slotSequence.toString(36)}`;
}

/** Attempts in flight per organization in this process. */
class LocalSlots {
  private readonly held = new Map<string, Set<string>>();

  tryAcquire(group: string, member: string, limit: number): boolean {
    let members = this.held.get(group);
    if (!members) this.held.set(group, (members = new Set()));
    if (!members.has(member) && members.size >= limit) return false;
    members.add(member);
    return true;
  }

  release(group: string, member: string): void {
    const members = this.held.get(group);
    if (!members) return;
    members.delete(member);
    if (members.size === 0) this.held.delete(group);
  }
}

interface ClaimItem {
  deliveryId: string;
  maxAttemptCount: number;
}

interface RecordItem {
  row: ClaimRow;
  attempt: number;
  startedAt: Date;
  requestHeaders: Record<string, string>;
  result: SendResult;
  decision: Decision;
}

interface Decision {
  status: Exclude<FinalStatus, 'cancelled'>;
  waitMs: number | null;
  gone: boolean;
  success: boolean;
}

/**
 * Makes one delivery attempt. Postgres is the truth: the attempt number is the row's
 * attempt_count + 1, a lease on the row keeps other workers off it while the HTTP call runs
 * (outside any transaction), and one short transaction records the result. Redis only says
 * "look at this delivery now".
 */
@Injectable()
export class DeliveryService {
  private readonly logger = new Logger(DeliveryService.name);
  private readonly options: Required<DeliveryServiceOptions>;
  private readonly leaseMs: number;

  constructor(
    private readonly prisma: PrismaService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
    private readonly sender: HttpSender,
    private readonly dispatcher: DeliveryDispatcher,
    @Inject(IN_FLIGHT_LIMITER) private readonly limiter: InFlightLimiter,
    @Optional() @Inject(DELIVERY_SERVICE_OPTIONS) options?: DeliveryServiceOptions,
  ) {
    this.options = {
      ...DEFAULT_DELIVERY_SERVICE_OPTIONS,
      maxInFlightPerWebhook: config.maxInFlightPerWebhook ?? DEFAULT_DELIVERY_SERVICE_OPTIONS.maxInFlightPerWebhook,
      maxInFlightPerOrganization: config.maxInFlightPerOrganization ?? DEFAULT_DELIVERY_SERVICE_OPTIONS.maxInFlightPerOrganization,
      autoDisableAfterMs: config.autoDisableAfterMs ?? DEFAULT_DELIVERY_SERVICE_OPTIONS.autoDisableAfterMs,
      ...(options ?? {}),
    };
    this.leaseMs = config.deliveryTimeoutMs + LEASE_MARGIN_MS;
  }

  private readonly organizationSlots = new LocalSlots();
  private readonly claimBatcher = new Batcher<ClaimItem, ClaimRow | null>((items) => this.claimMany(items));
  private readonly recordBatcher = new Batcher<RecordItem, FinalStatus | null>((items) => this.recordMany(items));

  async attempt(deliveryId: string, options: AttemptOptions = {}): Promise<AttemptOutcome> {
    if (options.webhookId && options.organizationId) {
      return this.attemptFast({ deliveryId, webhookId: options.webhookId, organizationId: options.organizationId, member: slotMember(deliveryId) }, options.expectedAttempt);
    }
    return this.attemptAfterRead(deliveryId, options.expectedAttempt);
  }

  /**
   * The common path: cap first (Redis), then claim straight away. Only when the claim finds
   * nothing does a read explain why (early, leased, done, or its webhook disabled).
   */
  private async attemptFast(slotKey: SlotKey, expectedAttempt: number | undefined): Promise<AttemptOutcome> {
    const slot = await this.acquireSlot(slotKey);
    if (slot === 'denied') return { kind: 'over_cap', at: new Date(Date.now() + this.overCapDelay()) };
    const release = this.releaser(slotKey, slot);
    try {
      const claimed = await this.claim(slotKey.deliveryId, expectedAttempt);
      if (claimed) return await this.attemptClaimed(claimed, release);
      await release();
      return this.attemptAfterRead(slotKey.deliveryId, expectedAttempt);
    } finally {
      await release();
    }
  }

  private async attemptAfterRead(deliveryId: string, expectedAttempt: number | undefined): Promise<AttemptOutcome> {
    // A cheap read first: a job that finds its webhook at the cap (the common case when one
    // endpoint is flooded) then costs one index lookup and no write.
    const [state] = await this.prisma.$queryRaw<StateRow[]>`
      SELECT d.webhook_id, d.organization_id, d.status::text AS status, d.attempt_count,
             (d.lease_until IS NOT NULL AND d.lease_until >= now()) AS leased,
             GREATEST(0, COALESCE(EXTRACT(EPOCH FROM (d.next_attempt_at - now())) * 1000, 0))::float8 AS due_in_ms,
             w.enabled AS webhook_enabled, (w.deleted_at IS NOT NULL) AS webhook_deleted
        FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
       WHERE d.id = ${deliveryId}`;
    if (!state) return { kind: 'skipped', reason: 'missing' };
    if (state.status !== 'pending') return { kind: 'skipped', reason: 'not_pending' };
    if (expectedAttempt !== undefined && state.attempt_count + 1 > expectedAttempt) {
      return { kind: 'skipped', reason: 'stale' };
    }
    if (state.leased) return { kind: 'skipped', reason: 'leased' };
    if (state.webhook_deleted || !state.webhook_enabled) return this.cancel(deliveryId, state.webhook_deleted);
    if (state.due_in_ms > DUE_SLACK_MS) {
      // Relative to this process's clock, so that skew with Postgres cannot make the job spin.
      return { kind: 'not_due', at: new Date(Date.now() + Math.ceil(state.due_in_ms)) };
    }

    const slotKey = { deliveryId, webhookId: state.webhook_id, organizationId: state.organization_id, member: slotMember(deliveryId) };
    const slot = await this.acquireSlot(slotKey);
    if (slot === 'denied') return { kind: 'over_cap', at: new Date(Date.now() + this.overCapDelay()) };
    const release = this.releaser(slotKey, slot);
    try {
      const claimed = await this.claim(deliveryId, expectedAttempt);
      if (!claimed) return { kind: 'skipped', reason: 'raced' };
      return await this.attemptClaimed(claimed, release);
    } finally {
      await release();
    }
  }

  /**
   * Gives the slots back once, however many times it is called. `sent` says a request was made
   * with them: only then does a quick release count as the endpoint moving.
   */
  private releaser(key: SlotKey, slot: 'held' | 'unlimited'): (sent?: boolean) => Promise<void> {
    const acquiredAt = Date.now();
    let released: Promise<void> | undefined;
    return (sent = false) => (released ??= this.release(key, slot, sent && Date.now() - acquiredAt < this.options.slotWaitMs));
  }

  /**
   * Gives the slots back. `fast`: a request was sent and answered quickly with them; only that
   * counts as the turnover that keeps waiting jobs in place.
   */
  private async release(key: SlotKey, slot: 'held' | 'unlimited', fast: boolean): Promise<void> {
    this.organizationSlots.release(key.organizationId, key.member);
    this.wake(`org:${key.organizationId}`, fast);
    if (slot === 'held') {
      await this.limiter.release(key.webhookId, key.member).catch((err: Error) =>
        this.logger.warn({ msg: 'could not release the in-flight slot (it expires with the lease)', deliveryId: key.deliveryId, error: err.message }),
      );
    }
    this.wake(`webhook:${key.webhookId}`, fast);
  }

  /**
   * Jobs waiting in this process for a slot of one cap (`webhook:<id>` or `org:<id>`), in order,
   * and how many slots of that cap were freed here since the first of them started waiting.
   */
  private readonly waiting = new Map<string, { wakers: Array<() => void>; freed: number; jobs: number }>();

  /** When a slot of each cap was last freed quickly in this process (pruned when it grows large). */
  private readonly fastReleaseAt = new Map<string, number>();

  /** A slot of this cap was freed here: let the longest waiter try, and count it if it was quick. */
  private wake(cap: string, fast: boolean): void {
    if (fast) {
      if (this.fastReleaseAt.size >= 10_000) this.fastReleaseAt.clear();
      this.fastReleaseAt.set(cap, Date.now());
    }
    const line = this.waiting.get(cap);
    if (!line) return;
    if (fast) line.freed += 1;
    line.wakers.shift()?.();
  }

  /** Resolves when a slot of the cap is freed in this process, or after timeoutMs. */
  private slotFreed(line: { wakers: Array<() => void> }, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const index = line.wakers.indexOf(wake);
        if (index >= 0) line.wakers.splice(index, 1);
        resolve();
      }, timeoutMs);
      line.wakers.push(wake);
    });
  }

  /** Sends, then records. The slots are given back as soon as the request is over, before recording. */
  private async attemptClaimed(row: ClaimRow, releaseSlots: (sent: boolean) => Promise<void>): Promise<AttemptOutcome> {
    const attempt = row.attempt_count + 1;
    const secrets = this.secretsOf(row);
    const headers = signedHeaders({
      secrets,
      eventId: row.event_id,
      eventType: row.event_type,
      deliveryId: row.id,
      attempt,
      timestampSeconds: Math.floor(Date.now() / 1000),
      body: row.body,
      userAgent: USER_AGENT,
    });

    const startedAt = new Date();
    metrics.inFlight.inc();
    let result: SendResult;
    try {
      result = await this.sender.send({ url: row.url, headers, body: row.body });
    } finally {
      metrics.inFlight.dec();
      void releaseSlots(true);
    }

    const decision = this.decide(result, attempt);
    metrics.attempts.inc({ outcome: outcomeLabel(result) });
    metrics.attemptDuration.observe(result.responseTimeMs / 1000);

    const recorded = await this.record(row, attempt, startedAt, headers, result, decision);
    if (recorded === null) {
      this.logger.warn({ msg: 'attempt not recorded: another worker recorded this attempt number first', deliveryId: row.id, attempt });
      return { kind: 'attempted', attempt, status: 'pending', statusCode: result.statusCode, error: result.error, nextAttemptAt: null, recorded: false };
    }

    if (!decision.success) {
      this.logger.log({
        msg: 'delivery attempt failed',
        deliveryId: row.id,
        webhookId: row.webhook_id,
        attempt,
        statusCode: result.statusCode,
        errorCode: result.error?.code ?? null,
        nextStatus: recorded,
      });
    }

    let nextAttemptAt: Date | null = null;
    if (recorded === 'pending' && decision.waitMs !== null) {
      nextAttemptAt = new Date(Date.now() + decision.waitMs);
      try {
        await this.dispatcher.dispatch([{ deliveryId: row.id, webhookId: row.webhook_id, organizationId: row.organization_id, attempt: attempt + 1, at: nextAttemptAt }]);
      } catch (err) {
        // The row is committed as pending and due at nextAttemptAt: the sweeper will enqueue it.
        this.logger.error({ msg: 'could not enqueue the next attempt; the sweeper will', deliveryId: row.id, attempt: attempt + 1, error: (err as Error).message });
      }
    }
    return { kind: 'attempted', attempt, status: recorded, statusCode: result.statusCode, error: result.error, nextAttemptAt, recorded: true };
  }

  /** 2xx succeeds; 410 ends the delivery and the webhook; anything else waits for the schedule. */
  private decide(result: SendResult, attempt: number): Decision {
    const code = result.statusCode;
    if (result.error === null && code !== null && code >= 200 && code < 300) {
      return { status: 'succeeded', waitMs: null, gone: false, success: true };
    }
    if (code === 410) return { status: 'failed', waitMs: null, gone: true, success: false };
    let waitMs = nextRetryDelay(this.config.retryScheduleMs, attempt);
    if (waitMs === null) return { status: 'failed', waitMs: null, gone: false, success: false };
    if (code === 429 || code === 503) {
      const retryAfter = parseRetryAfter(result.headers['retry-after']);
      if (retryAfter !== null) waitMs = Math.max(waitMs, Math.min(retryAfter, MAX_RETRY_AFTER_MS));
    }
    return { status: 'pending', waitMs, gone: false, success: false };
  }

  /**
   * Records the attempt and moves the delivery on. Concurrent attempts are recorded together, in
   * one statement (so each attempt row and its delivery's update commit together or not at all).
   * The update is guarded by attempt_count, so a second recording of the same attempt number
   * changes nothing. Returns the delivery's status afterwards, or null when the guard found the
   * attempt already recorded.
   */
  private async record(
    row: ClaimRow,
    attempt: number,
    startedAt: Date,
    requestHeaders: Record<string, string>,
    result: SendResult,
    decision: Decision,
  ): Promise<FinalStatus | null> {
    const status = await this.recordBatcher.run({ row, attempt, startedAt, requestHeaders, result, decision });
    if (status === null) return null;
    if (decision.gone) this.logger.warn({ msg: 'webhook disabled: the receiver answered 410 Gone', webhookId: row.webhook_id, deliveryId: row.id });
    // The run of failures was started in the same statement; whether it has lasted long enough to
    // disable the webhook is checked only on failures (test deliveries never count).
    if (!row.test && !decision.success && !decision.gone) await this.checkAutoDisable(row);
    return status;
  }

  private async recordMany(items: RecordItem[]): Promise<Array<FinalStatus | null>> {
    const column = <T>(pick: (item: RecordItem) => T) => items.map(pick);
    const ids = column((i) => i.row.id);
    const rows = await this.prisma.$queryRaw<Array<{ id: string; status: FinalStatus }>>`
      WITH x AS (
        SELECT * FROM unnest(${ids}::text[], ${column((i) => i.attempt)}::int[], ${column((i) => i.decision.status)}::text[],
                             ${column((i) => i.result.statusCode)}::int[], ${column((i) => i.result.responseTimeMs)}::int[],
                             ${column((i) => i.decision.waitMs)}::float8[], ${column((i) => i.row.webhook_id)}::text[],
                             ${column((i) => i.decision.gone)}::bool[], ${column((i) => i.decision.success)}::bool[],
                             ${column((i) => i.row.test)}::bool[], ${column((i) => i.startedAt.toISOString())}::text[])
               AS x(id, attempt, status, code, time_ms, wait_ms, webhook_id, gone, success, test, started_at)
      ), updated AS (
        UPDATE deliveries d SET
               attempt_count = x.attempt,
               last_status_code = x.code,
               last_response_time_ms = x.time_ms,
               lease_until = NULL,
               next_trigger = 'scheduled'::"AttemptTrigger",
               -- A delivery cancelled while its attempt was in flight (webhook deleted) stays
               -- cancelled, but the attempt is still recorded: it was made.
               status = CASE WHEN d.status = 'pending'::"DeliveryStatus" THEN x.status::"DeliveryStatus" ELSE d.status END,
               next_attempt_at = CASE
                 WHEN d.status <> 'pending'::"DeliveryStatus" THEN d.next_attempt_at
                 WHEN x.wait_ms IS NULL THEN NULL
                 ELSE now() + x.wait_ms * interval '1 millisecond' END,
               completed_at = CASE
                 WHEN d.status = 'pending'::"DeliveryStatus" AND x.status <> 'pending' THEN now()
                 ELSE d.completed_at END
          FROM x
         WHERE d.id = x.id AND d.attempt_count = x.attempt - 1
        RETURNING d.id, d.status::text AS status
      ), inserted AS (
        INSERT INTO attempts (id, delivery_id, attempt, trigger, created_at, request_url, request_headers,
                              response_status, response_headers, response_body, response_body_truncated,
                              response_time_ms, error_code, error_message)
        SELECT a.id, a.delivery_id, a.attempt, a.trigger::"AttemptTrigger", a.created_at::timestamptz, a.url, a.request_headers::jsonb,
               a.code, a.response_headers::jsonb, a.body, a.truncated, a.time_ms, a.error_code, a.error_message
          FROM unnest(${column(() => newId('attempt'))}::text[], ${ids}::text[], ${column((i) => i.attempt)}::int[],
                      ${column((i) => i.row.next_trigger)}::text[], ${column((i) => i.startedAt.toISOString())}::text[],
                      ${column((i) => i.row.url)}::text[], ${column((i) => JSON.stringify(i.requestHeaders))}::text[],
                      ${column((i) => i.result.statusCode)}::int[],
                      ${column((i) => (i.result.statusCode === null ? null : JSON.stringify(i.result.headers)))}::text[],
                      ${column((i) => (i.result.body === null ? null : withoutNul(i.result.body)))}::text[],
                      ${column((i) => i.result.bodyTruncated)}::bool[], ${column((i) => i.result.responseTimeMs)}::int[],
                      ${column((i) => i.result.error?.code ?? null)}::text[],
                      ${column((i) => (i.result.error ? withoutNul(i.result.error.message) : null))}::text[])
               AS a(id, delivery_id, attempt, trigger, created_at, url, request_headers, code, response_headers, body,
                    truncated, time_ms, error_code, error_message)
         WHERE a.delivery_id IN (SELECT id FROM updated)
        RETURNING 1
      ), outcome AS (
        -- One row per webhook, so that each webhook row is updated once by this statement.
        SELECT x.webhook_id,
               bool_or(x.gone) AS gone,
               bool_or(x.success AND NOT x.test) AS succeeded,
               min(x.started_at::timestamptz) FILTER (WHERE NOT x.success AND NOT x.gone AND NOT x.test) AS first_failure
          FROM x JOIN updated u ON u.id = x.id
         GROUP BY x.webhook_id
      ), webhooks_changed AS (
        -- 410 disables the webhook; a success ends its run of failures; a failure starts one.
        -- In the same statement as the attempt, so a crash cannot record one without the other.
        UPDATE webhooks w SET
               enabled = CASE WHEN o.gone THEN false ELSE w.enabled END,
               disabled_reason = CASE WHEN o.gone AND w.enabled THEN 'gone' ELSE w.disabled_reason END,
               updated_at = CASE WHEN o.gone AND w.enabled THEN now() ELSE w.updated_at END,
               failing_since = CASE
                 WHEN o.succeeded THEN NULL
                 WHEN o.first_failure IS NOT NULL THEN COALESCE(w.failing_since, o.first_failure)
                 ELSE w.failing_since END
          FROM outcome o
         WHERE w.id = o.webhook_id AND w.deleted_at IS NULL
           AND ((o.gone AND w.enabled) OR (o.succeeded AND w.failing_since IS NOT NULL) OR (o.first_failure IS NOT NULL AND w.failing_since IS NULL))
        RETURNING 1
      )
      SELECT id, status FROM updated`;
    const statusById = new Map(rows.map((r) => [r.id, r.status]));
    return items.map((item) => statusById.get(item.row.id) ?? null);
  }

  /**
   * Disables the webhook once its run of failures is older than autoDisableAfterMs and holds at
   * least autoDisableMinFailures failed attempts.
   */
  private async checkAutoDisable(row: ClaimRow): Promise<void> {
    const tx = this.prisma;
    const afterMs = this.options.autoDisableAfterMs;
    const [state] = await tx.$queryRaw<Array<{ overdue: boolean }>>`
      SELECT (failing_since <= now() - ${afterMs}::float8 * interval '1 millisecond') AS overdue
        FROM webhooks WHERE id = ${row.webhook_id} AND enabled AND deleted_at IS NULL`;
    if (!state?.overdue) return;
    const minFailures = this.options.autoDisableMinFailures;
    const disabled = await tx.$executeRaw`
      UPDATE webhooks w SET enabled = false, disabled_reason = 'failing', updated_at = now()
       WHERE w.id = ${row.webhook_id} AND w.enabled AND w.deleted_at IS NULL
         AND (SELECT count(*) FROM (
               SELECT 1 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
                WHERE d.webhook_id = w.id AND NOT d.test AND a.created_at >= w.failing_since
                  AND (a.error_code IS NOT NULL OR a.response_status IS NULL OR a.response_status NOT BETWEEN 200 AND 299)
                LIMIT ${minFailures}::int) failures) >= ${minFailures}::int`;
    if (disabled > 0) this.logger.warn({ msg: 'webhook disabled: failing for too long', webhookId: row.webhook_id, deliveryId: row.id });
  }

  /**
   * Takes the lease. Every condition is checked in the UPDATE itself: of two workers racing for
   * the same row, exactly one gets it back. Concurrent claims share one statement.
   */
  private claim(deliveryId: string, expectedAttempt: number | undefined): Promise<ClaimRow | null> {
    return this.claimBatcher.run({ deliveryId, maxAttemptCount: expectedAttempt === undefined ? 2_147_483_647 : expectedAttempt - 1 });
  }

  private async claimMany(items: ClaimItem[]): Promise<Array<ClaimRow | null>> {
    const ids = items.map((i) => i.deliveryId);
    // Rows are reached by primary key only. The status is compared as text and the webhook
    // checked in a subquery so that no plan walks the status or webhook indexes instead: their
    // 'pending' entries are mostly dead rows between vacuums, and a backlog would make every
    // claim walk all of them.
    const rows = await this.prisma.$queryRaw<ClaimRow[]>`
      WITH claimed AS (
        UPDATE deliveries d
           SET lease_until = now() + ${this.leaseMs}::float8 * interval '1 millisecond'
         WHERE d.id = ANY (${ids}::text[])
           AND d.status::text = 'pending'
           AND (d.lease_until IS NULL OR d.lease_until < now())
           AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= now() + ${DUE_SLACK_MS}::float8 * interval '1 millisecond')
           AND d.attempt_count <= (${items.map((i) => i.maxAttemptCount)}::int[])[array_position(${ids}::text[], d.id)]
           AND (SELECT w.enabled AND w.deleted_at IS NULL FROM webhooks w WHERE w.id = d.webhook_id)
        RETURNING d.id, d.webhook_id, d.organization_id, d.event_id, d.event_type, d.test, d.attempt_count, d.next_trigger
      )
      SELECT c.id, c.webhook_id, c.organization_id, c.event_id, c.event_type, c.test, c.attempt_count,
             c.next_trigger::text AS next_trigger, w.url, w.secret_ciphertext, w.previous_secret_ciphertext,
             COALESCE(w.previous_secret_expires_at > now(), false) AS previous_valid,
             (SELECT e.body FROM events e WHERE e.id = c.event_id) AS body
        FROM claimed c JOIN webhooks w ON w.id = c.webhook_id`;
    // Two jobs for one delivery in the same batch: the row goes to the first of them only.
    const byId = new Map(rows.map((row) => [row.id, row]));
    return items.map((item) => {
      const row = byId.get(item.deliveryId) ?? null;
      byId.delete(item.deliveryId);
      return row;
    });
  }

  /** Deliveries to a deleted or disabled webhook are never attempted. */
  private async cancel(deliveryId: string, deleted: boolean): Promise<AttemptOutcome> {
    await this.prisma.$executeRaw`
      UPDATE deliveries SET status = 'cancelled'::"DeliveryStatus", completed_at = now(), next_attempt_at = NULL, lease_until = NULL
       WHERE id = ${deliveryId} AND status = 'pending'::"DeliveryStatus" AND (lease_until IS NULL OR lease_until < now())`;
    return { kind: 'cancelled', reason: deleted ? 'webhook_deleted' : 'webhook_disabled' };
  }

  /** Current secret first, then the previous one while its 24 hours of rotation last. */
  private secretsOf(row: ClaimRow): string[] {
    const key = this.config.secretsKey;
    try {
      const secrets = [decryptSecret(row.secret_ciphertext, key, row.webhook_id)];
      if (row.previous_valid && row.previous_secret_ciphertext) {
        secrets.push(decryptSecret(row.previous_secret_ciphertext, key, row.webhook_id));
      }
      return secrets;
    } catch {
      // The lease stays: the sweeper retries once it runs out, by which time SECRETS_KEY may be fixed.
      throw new Error(`cannot decrypt the secret of webhook ${row.webhook_id} for delivery ${row.id}: is SECRETS_KEY the key it was stored with?`);
    }
  }

  /**
   * Two caps, so that no endpoint and no tenant can take every worker slot: the webhook's (across
   * all workers, in Redis) and the organization's (in this worker). A job at either cap waits in
   * place for a slot, woken by releases in this process. It keeps waiting while slots of that cap
   * are being freed quickly here (a fast endpoint or a busy tenant: its turn comes within
   * milliseconds), up to slotWaitMaxMs; when none is for slotWaitMs (a slow endpoint), it gives
   * its worker slot back and goes back to the queue, so that other tenants' jobs behind it run.
   * A job at its tenant's cap waits only if that tenant's attempts are finishing quickly.
   */
  private async acquireSlot(key: SlotKey): Promise<'held' | 'denied' | 'unlimited'> {
    const started = Date.now();
    let deadline = started + this.options.slotWaitMs;
    let line: { wakers: Array<() => void>; freed: number; jobs: number } | undefined;
    let cap = '';
    let freedBefore = 0;
    let mayStay = false;
    try {
      for (;;) {
        let denied: string;
        if (this.organizationSlots.tryAcquire(key.organizationId, key.member, this.options.maxInFlightPerOrganization)) {
          let webhookOk: boolean;
          try {
            webhookOk = await this.limiter.acquire(key.webhookId, key.member, this.options.maxInFlightPerWebhook, this.leaseMs);
          } catch (err) {
            // Fairness is not worth a lost attempt: without the limiter, deliver anyway.
            this.logger.warn({ msg: 'in-flight limiter unavailable; attempting without the per-webhook cap', deliveryId: key.deliveryId, error: (err as Error).message });
            return 'unlimited';
          }
          if (webhookOk) return 'held';
          this.organizationSlots.release(key.organizationId, key.member);
          // The tenant's slot is free again: let one of its waiters have it (no turnover counted).
          this.wake(`org:${key.organizationId}`, false);
          denied = `webhook:${key.webhookId}`;
        } else {
          denied = `org:${key.organizationId}`;
          // A tenant whose attempts are not finishing quickly gives the worker slot back at once,
          // so that other tenants' jobs behind it run.
          if (!line && !((this.fastReleaseAt.get(denied) ?? 0) > Date.now() - this.options.slotWaitMs)) return 'denied';
        }
        if (denied !== cap) {
          if (line && --line.jobs === 0) this.waiting.delete(cap);
          cap = denied;
          line = this.waiting.get(cap);
          if (!line) this.waiting.set(cap, (line = { wakers: [], freed: 0, jobs: 0 }));
          // Only the first few in line may keep their place beyond slotWaitMs, so that one busy
          // endpoint or tenant never holds every worker slot: twice the webhook's cap, and half
          // the tenant's (a tenant's further jobs go back to the queue at once).
          const room = cap.startsWith('org:') ? Math.ceil(this.options.maxInFlightPerOrganization / 2) : 2 * this.options.maxInFlightPerWebhook;
          if (line.jobs >= room && cap.startsWith('org:')) {
            line = undefined; // never joined
            return 'denied';
          }
          mayStay = line.jobs < room;
          line.jobs += 1;
          freedBefore = line.freed;
        }
        const now = Date.now();
        if (mayStay && line!.freed > freedBefore) {
          // Slots of this cap are turning over here: the endpoint is moving, so keep the place.
          freedBefore = line!.freed;
          deadline = Math.min(now + this.options.slotWaitMs, started + this.options.slotWaitMaxMs);
        }
        if (now >= deadline) return 'denied';
        // Only the first in line also polls, for releases by other workers: a queue of waiters
        // polling Redis would cost more than the sends.
        const first = line!.wakers.length === 0 && cap.startsWith('webhook:');
        await this.slotFreed(line!, first ? Math.min(deadline - now, 20) : deadline - now);
      }
    } finally {
      if (line && --line.jobs === 0) this.waiting.delete(cap);
    }
  }

  private overCapDelay(): number {
    const [min, max] = this.options.overCapDelayMs;
    return Math.round(min + Math.random() * Math.max(0, max - min));
  }
}


/** Postgres text cannot hold NUL characters; receivers do send them. */
function withoutNul(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}

function outcomeLabel(result: SendResult): string {
  if (result.error) return result.error.code;
  const code = result.statusCode ?? 0;
  return code >= 200 && code < 300 ? 'success' : `http_${Math.floor(code / 100)}xx`;
}
