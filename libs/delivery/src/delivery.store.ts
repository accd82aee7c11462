import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Batcher, Prisma, PrismaService, isTransientDatabaseError } from '@bellhop/database';
import { type AttemptTrigger, type AttemptVerdict, OPERATIONAL_EVENT_TYPES, isSendableCustomHeader, newId } from '@bellhop/domain';

/*
 * The one owner of a delivery's state: status, attempt_count, scheduled_attempts,
 * next_attempt_at, the manual request, the lease and the last result. Every change is a named
 * transition below, each one guarded statement that says whether it happened. The API (manual
 * retry, webhook delete), the sweeper and the worker call these; nothing else writes those columns.
 *
 * Leases are fenced: a claim writes a fresh lease_token, and a recording moves the delivery only
 * when it carries the token that is still on the row. A holder that lost its lease (paused past
 * it while another worker claimed the delivery) still gets its attempt into the history, because
 * the request was made, but the delivery's state stays the current holder's.
 */

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed' | 'cancelled';

/** What a job asks to claim: the next scheduled attempt (made for a given step), or a manual one. */
export type ClaimRequest =
  | { deliveryId: string; kind: 'scheduled'; /** The scheduled attempt the job was made for (1-based). */ scheduledAttempt?: number }
  | { deliveryId: string; kind: 'manual' };

/** A delivery leased for one attempt, with everything needed to sign and send it. */
export interface Claimed {
  id: string;
  webhookId: string;
  organizationId: string;
  eventId: string;
  eventType: string;
  test: boolean;
  /** The trigger this attempt is made for. */
  trigger: AttemptTrigger;
  /** The delivery's status when the attempt was claimed. */
  statusAtClaim: DeliveryStatus;
  /** When the lease runs out, by this process's clock (a little early: measured after the claim returned). */
  leaseEndsAt: number;
  /** The number this attempt is sent with (X-Bellwether-Attempt): attempts recorded so far + 1. */
  attempt: number;
  /** Scheduled attempts made before this one. */
  scheduledAttempts: number;
  leaseToken: string;
  url: string;
  secretCiphertext: string;
  previousSecrets: unknown;
  /** The webhook's own schedule (ms), or null for the server's. */
  retryScheduleMs: unknown;
  /** The webhook's custom request headers. */
  headers: Record<string, string>;
  body: string;
  projectId: string;
  /** When this attempt was due: the scheduled step's time, or when the manual attempt was asked for. */
  dueAt: Date | null;
}

/** Why a job could not claim its delivery. */
export type ClaimRefusal =
  | { reason: 'missing' | 'done' | 'stale' }
  /** Another attempt of this delivery holds the lease (or a lost manual lease waits to be redone). */
  | { reason: 'leased' }
  | { reason: 'webhook_inactive'; deleted: boolean }
  | { reason: 'not_due'; inMs: number }
  /** It looked claimable a moment later: another job took it in between. */
  | { reason: 'raced' };

export interface AttemptRecord {
  claimed: Claimed;
  startedAt: Date;
  requestHeaders: Record<string, string>;
  statusCode: number | null;
  responseHeaders: Record<string, string | string[]> | null;
  responseBody: string | null;
  responseBodyTruncated: boolean;
  responseTimeMs: number;
  error: { code: string; message: string } | null;
  verdict: AttemptVerdict;
}

/** The delivery after a recording. */
export interface Recorded {
  /** False when the lease had passed to another attempt: the attempt is in the history, the state is not ours. */
  fenced: boolean;
  /** Its number in the history. */
  attempt: number;
  status: DeliveryStatus;
  /** Scheduled attempts made, and when the next is due (pending deliveries). */
  scheduledAttempts: number;
  nextAttemptAt: Date | null;
  /** A manual or replay attempt asked for meanwhile, still to be made (its request time). */
  manualRequestedAt: Date | null;
  /** The webhook was disabled by this recording (410). */
  webhookDisabled: boolean;
  /** This recording raised an operational event (the relay publishes it). */
  operationalRaised: boolean;
}

export type ManualRequestOutcome =
  | { kind: 'queued'; delivery: { id: string; webhookId: string; organizationId: string; requestedAt: Date } }
  | { kind: 'not_found' }
  | { kind: 'webhook_disabled' }
  | { kind: 'already_waiting' };

/** A delivery the queue may have lost: due (or with a manual attempt waiting) and not leased. */
export interface LostCandidate {
  id: string;
  webhookId: string;
  organizationId: string;
  kind: 'scheduled' | 'manual';
  /** Scheduled: the step due. */
  scheduledAttempt: number;
  /** Manual: when the waiting request was made; null for a manual attempt claimed whose holder died. */
  manualRequestedAt: Date | null;
  /** Its lease ran out (a worker died mid-attempt). */
  leaseExpired: boolean;
  /** Due for a while already (the job may be stuck in an active state). */
  overdueMs: number;
  /** Scheduled: when the step was due (the keyset position of the next page). Manual: when it was asked for, or when the dead lease ran out. */
  dueAt: Date;
}

/** The lease outlives the HTTP deadline by this much, so that recording always fits inside it. */
export const LEASE_MARGIN_MS = 30_000;
/** A job may run this much before the row's next_attempt_at (clock skew between worker, Redis and Postgres). */
export const DUE_SLACK_MS = 50;

/** Recording is retried until this long before the lease runs out. */
const RECORD_RETRY_STOP_BEFORE_LEASE_END_MS = 5_000;
/** Claims are retried this many times on transient errors (a deadlock, a killed connection). */
const CLAIM_TRIES = 3;

/**
 * The attempt row exists already: a recording's first try committed after all. The key is the
 * partition's (attempts_2026_11_pkey, attempts_default_delivery_id_id_key) or the parent's.
 */
export function isDuplicateAttempt(err: unknown): boolean {
  const cause = (err as { meta?: { driverAdapterError?: { cause?: { originalCode?: unknown; originalMessage?: unknown; constraint?: unknown } } } })?.meta?.driverAdapterError?.cause;
  return cause?.originalCode === '23505' && /attempts\w*_(pkey|delivery_id_id_key)\b/.test(String(cause.originalMessage ?? '') + String(JSON.stringify(cause.constraint ?? '')));
}

/** The stored custom headers that may be sent (the API checked them when they were set; checked again). */
function customHeaders(stored: unknown): Record<string, string> {
  if (typeof stored !== 'object' || stored === null || Array.isArray(stored)) return {};
  return Object.fromEntries(Object.entries(stored as Record<string, unknown>).filter((entry): entry is [string, string] => isSendableCustomHeader(entry[0], entry[1])));
}

/** Postgres text cannot hold NUL characters; receivers do send them. */
function withoutNul(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}

interface ClaimRow {
  id: string;
  status: DeliveryStatus;
  webhook_id: string;
  organization_id: string;
  event_id: string;
  event_type: string;
  test: boolean;
  trigger: AttemptTrigger;
  attempt_count: number;
  scheduled_attempts: number;
  lease_token: string;
  url: string;
  secret_ciphertext: string;
  previous_secrets: unknown;
  retry_schedule_ms: unknown;
  headers: unknown;
  body: string;
  project_id: string;
  due_at: Date | null;
}

interface RecordRow {
  id: string;
  attempt_id: string;
  fenced: boolean;
  attempt: number;
  status: DeliveryStatus;
  scheduled_attempts: number;
  next_attempt_at: Date | null;
  manual_requested_at: Date | null;
  webhook_disabled: boolean;
  operational_raised: boolean;
}

interface RecordItem extends AttemptRecord {
  /** Chosen before the first try, so that a retried recording finds its own committed row. */
  attemptId: string;
}

@Injectable()
export class DeliveryStore {
  private readonly logger = new Logger(DeliveryStore.name);
  readonly leaseMs: number;
  /** Concurrent claims share one statement, and so do concurrent recordings. */
  private readonly claims = new Batcher<ClaimRequest & { token: string }, ClaimRow | null>((items) => this.claimMany(items));
  private readonly records = new Batcher<RecordItem, Recorded>((items) => this.recordManyRetrying(items), { isolateFailures: true });

  constructor(
    private readonly prisma: PrismaService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {
    this.leaseMs = config.deliveryTimeoutMs + LEASE_MARGIN_MS;
  }

  /**
   * claim: takes the lease for one attempt with a fresh token. A manual claim takes the waiting
   * manual request (or redoes a manual attempt whose holder died); a scheduled claim takes the
   * due scheduled step the job was made for. Deliveries of deleted webhooks are never claimed,
   * nor those of disabled ones unless they are test deliveries. Of two workers racing for one
   * row, exactly one gets it.
   */
  async claim(request: ClaimRequest): Promise<Claimed | null> {
    const startedAt = Date.now();
    const row = await this.claims.run({ ...request, token: randomUUID() });
    if (!row) return null;
    return {
      id: row.id,
      webhookId: row.webhook_id,
      organizationId: row.organization_id,
      eventId: row.event_id,
      eventType: row.event_type,
      test: row.test,
      trigger: row.trigger,
      statusAtClaim: row.status,
      leaseEndsAt: startedAt + this.leaseMs,
      attempt: row.attempt_count + 1,
      scheduledAttempts: row.scheduled_attempts,
      leaseToken: row.lease_token,
      url: row.url,
      secretCiphertext: row.secret_ciphertext,
      previousSecrets: row.previous_secrets,
      retryScheduleMs: row.retry_schedule_ms,
      headers: customHeaders(row.headers),
      body: row.body,
      projectId: row.project_id,
      dueAt: row.due_at,
    };
  }

  private async claimMany(items: Array<ClaimRequest & { token: string }>): Promise<Array<ClaimRow | null>> {
    // A claim is one statement, so a failed one changed nothing and may run again (unless only its
    // reply was lost: then the row is leased to a token nobody holds, and the lease runs out).
    for (let tries = 1; ; tries++) {
      try {
        return await this.claimManyOnce(items);
      } catch (err) {
        if (tries >= CLAIM_TRIES || !isTransientDatabaseError(err)) throw err;
        await new Promise((resolve) => setTimeout(resolve, 20 * tries));
      }
    }
  }

  private async claimManyOnce(items: Array<ClaimRequest & { token: string }>): Promise<Array<ClaimRow | null>> {
    // Rows are reached by primary key only. The status is compared as text and the webhook
    // checked in a subquery so that no plan walks the status or webhook indexes instead: their
    // 'pending' entries are mostly dead rows between vacuums.
    // One request per delivery in a statement (an UPDATE moves a row once): the first of the batch.
    // In id order, the order in which every claim and recording locks rows, so that two workers
    // claiming the same rows cannot deadlock.
    const seen = new Set<string>();
    const distinct = items
      .filter((item) => !seen.has(item.deliveryId) && (seen.add(item.deliveryId), true))
      .sort((a, b) => (a.deliveryId < b.deliveryId ? -1 : a.deliveryId > b.deliveryId ? 1 : 0));
    const rows = await this.prisma.$queryRaw<ClaimRow[]>`
      WITH claimed AS (
        UPDATE deliveries d SET
               lease_token = i.token,
               lease_until = now() + ${this.leaseMs}::float8 * interval '1 millisecond',
               -- A manual claim first redoes a manual attempt whose holder died (its lease ran out
               -- unrecorded) and leaves a request made meanwhile waiting; otherwise it takes the
               -- waiting request. manual_requested_at stays set until the manual attempt is recorded,
               -- so that the sweeper finds one whose holder died. (Nothing a claim changes is in an
               -- index, so that claims are HOT updates.)
               lease_trigger = CASE
                 WHEN i.kind = 'manual' AND d.lease_trigger::text IN ('manual', 'replay') THEN d.lease_trigger
                 WHEN i.kind = 'manual' THEN COALESCE(d.manual_trigger, 'manual'::"AttemptTrigger")
                 WHEN d.test THEN 'test'::"AttemptTrigger"
                 ELSE 'scheduled'::"AttemptTrigger" END,
               manual_trigger = CASE
                 WHEN i.kind = 'manual' AND d.lease_trigger::text IN ('manual', 'replay') THEN d.manual_trigger
                 WHEN i.kind = 'manual' THEN NULL
                 ELSE d.manual_trigger END
          FROM unnest(${distinct.map((i) => i.deliveryId)}::text[], ${distinct.map((i) => i.kind)}::text[],
                      ${distinct.map((i) => (i.kind === 'scheduled' ? (i.scheduledAttempt ?? null) : null))}::int[],
                      ${distinct.map((i) => i.token)}::text[]) AS i(id, kind, scheduled_attempt, token)
         WHERE d.id = i.id
           AND (d.lease_until IS NULL OR d.lease_until < now())
           AND (SELECT w.deleted_at IS NULL AND (w.enabled OR d.test) FROM webhooks w WHERE w.id = d.webhook_id)
           AND CASE WHEN i.kind = 'manual'
                 THEN d.manual_requested_at IS NOT NULL
                 ELSE d.status::text = 'pending'
                      -- a manual attempt whose holder died is redone by a manual job first
                      AND (d.lease_trigger IS NULL OR d.lease_trigger::text NOT IN ('manual', 'replay'))
                      AND d.next_attempt_at <= now() + ${DUE_SLACK_MS}::float8 * interval '1 millisecond'
                      AND (i.scheduled_attempt IS NULL OR d.scheduled_attempts < i.scheduled_attempt)
               END
        RETURNING d.id, d.webhook_id, d.organization_id, d.event_id, d.event_type, d.test, d.lease_trigger,
                  d.attempt_count, d.scheduled_attempts, d.lease_token, d.status, d.body, d.project_id,
                  -- When the attempt was due (neither column is changed by a claim).
                  CASE WHEN d.lease_trigger::text IN ('manual', 'replay') THEN d.manual_requested_at ELSE d.next_attempt_at END AS due_at
      )
      SELECT c.id, c.webhook_id, c.organization_id, c.event_id, c.event_type, c.test, c.lease_trigger::text AS trigger,
             c.status::text AS status,
             c.attempt_count, c.scheduled_attempts, c.lease_token, c.project_id, c.due_at, w.url, w.secret_ciphertext,
             w.previous_secrets, w.retry_schedule_ms, w.headers,
             -- The body rendered for the webhook's format, or else the event's envelope.
             COALESCE(c.body, (SELECT e.body FROM events e WHERE e.id = c.event_id)) AS body
        FROM claimed c JOIN webhooks w ON w.id = c.webhook_id`;
    const byToken = new Map(rows.map((row) => [row.lease_token, row]));
    return items.map((item) => byToken.get(item.token) ?? null);
  }

  /** The keys of a delivery's caps, for a job that does not carry them. */
  async ownerOf(deliveryId: string): Promise<{ webhookId: string; organizationId: string } | null> {
    const [row] = await this.prisma.$queryRaw<Array<{ webhook_id: string; organization_id: string }>>`
      SELECT webhook_id, organization_id FROM deliveries WHERE id = ${deliveryId}`;
    return row ? { webhookId: row.webhook_id, organizationId: row.organization_id } : null;
  }

  /** Why a claim found nothing: read once, only on that path. */
  async explainRefusal(request: ClaimRequest): Promise<ClaimRefusal> {
    const [state] = await this.prisma.$queryRaw<
      Array<{ status: string; scheduled_attempts: number; leased: boolean; lost_manual: boolean; manual_waiting: boolean; due_in_ms: number; enabled: boolean; deleted: boolean; test: boolean }>
    >`
      SELECT d.status::text AS status, d.scheduled_attempts, d.test,
             (d.lease_until IS NOT NULL AND d.lease_until >= now()) AS leased,
             (d.lease_until IS NOT NULL AND d.lease_until < now() AND d.lease_trigger::text IN ('manual', 'replay')) AS lost_manual,
             -- a manual attempt asked for, or claimed and not yet recorded
             (d.manual_requested_at IS NOT NULL) AS manual_waiting,
             GREATEST(0, COALESCE(EXTRACT(EPOCH FROM (d.next_attempt_at - now())) * 1000, 0))::float8 AS due_in_ms,
             w.enabled, (w.deleted_at IS NOT NULL) AS deleted
        FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
       WHERE d.id = ${request.deliveryId}`;
    if (!state) return { reason: 'missing' };
    const manualWork = state.manual_waiting || state.lost_manual;
    if (request.kind === 'manual' && !manualWork) return { reason: 'done' };
    if (request.kind === 'scheduled') {
      if (state.status !== 'pending') return { reason: 'done' };
      if (request.scheduledAttempt !== undefined && state.scheduled_attempts >= request.scheduledAttempt) return { reason: 'stale' };
    }
    if (state.leased || (request.kind === 'scheduled' && state.lost_manual)) return { reason: 'leased' };
    if (state.deleted || !(state.enabled || state.test)) return { reason: 'webhook_inactive', deleted: state.deleted };
    if (request.kind === 'scheduled' && state.due_in_ms > DUE_SLACK_MS) return { reason: 'not_due', inMs: Math.ceil(state.due_in_ms) };
    return { reason: 'raced' };
  }

  /**
   * record: the attempt's row, and (when the lease token is still the row's) the delivery's next
   * state and the webhook's, in one statement. Retried on transient database errors, isolated
   * from the other recordings batched with it; idempotent through the attempt id, so a retry
   * after a lost commit reply finds its own row instead of adding a second.
   */
  record(attempt: AttemptRecord): Promise<Recorded> {
    return this.records.run({ ...attempt, attemptId: newId('attempt') });
  }

  private async recordManyRetrying(items: RecordItem[]): Promise<Recorded[]> {
    // A statement moves each delivery row once: two recordings of one delivery (a stale holder's
    // and the current one's, in one batch) go in statements one after the other.
    const ids = new Set(items.map((item) => item.claimed.id));
    if (ids.size < items.length) {
      const results = new Map<RecordItem, Recorded>();
      let rest = items;
      while (rest.length > 0) {
        const seen = new Set<string>();
        const round = rest.filter((item) => !seen.has(item.claimed.id) && (seen.add(item.claimed.id), true));
        rest = rest.filter((item) => !round.includes(item));
        (await this.recordManyRetrying(round)).forEach((recorded, i) => results.set(round[i], recorded));
      }
      return items.map((item) => results.get(item)!);
    }
    // Until shortly before the first of their leases runs out: after that another worker may
    // claim the delivery, and the attempt (still recorded later as stale, if Postgres comes back)
    // may be made again.
    const deadline = Math.min(...items.map((item) => item.claimed.leaseEndsAt)) - RECORD_RETRY_STOP_BEFORE_LEASE_END_MS;
    for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 2000)) {
      try {
        return await this.recordMany(items);
      } catch (err) {
        // A first try that committed after its connection was lost, still committing when this one
        // started: its attempt row shows up as a duplicate key. The next try finds it and skips it.
        const retryable = isTransientDatabaseError(err) || isDuplicateAttempt(err);
        if (!retryable || Date.now() + delayMs > deadline) throw err;
        this.logger.warn({ msg: 'recording attempts failed; retrying', attempts: items.length, error: (err as Error).message, retryInMs: delayMs });
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  /**
   * The attempts as an `x` relation (one row each, with everything the statements below need).
   * The statement for stale holders leaves out those whose row exists already: a retry of a
   * recording whose commit reply was lost. (The lease holders' statement needs no such look-up: a
   * recording that did commit cleared the lease token, so its retry matches no row there and comes
   * to the second.)
   */
  private attemptsRelation(unordered: RecordItem[]): Prisma.Sql {
    // In delivery id order, the order in which claims and recordings lock rows (no deadlocks).
    const items = [...unordered].sort((a, b) => (a.claimed.id < b.claimed.id ? -1 : a.claimed.id > b.claimed.id ? 1 : 0));
    const column = <T>(pick: (item: RecordItem) => T) => items.map(pick);
    return Prisma.sql`
        SELECT * FROM unnest(${column((i) => i.attemptId)}::text[], ${column((i) => i.claimed.id)}::text[],
                             ${column((i) => i.claimed.leaseToken)}::text[], ${column((i) => i.claimed.trigger)}::text[],
                             ${column((i) => i.verdict.success)}::bool[], ${column((i) => i.verdict.gone)}::bool[],
                             ${column((i) => i.verdict.retryInMs)}::float8[], ${column((i) => i.statusCode)}::int[],
                             ${column((i) => i.responseTimeMs)}::int[], ${column((i) => i.startedAt.toISOString())}::timestamptz[],
                             ${column((i) => i.claimed.test)}::bool[], ${column((i) => i.claimed.statusAtClaim)}::text[],
                             ${column((i) => i.claimed.url)}::text[], ${column((i) => JSON.stringify(i.requestHeaders))}::text[],
                             ${column((i) => (i.responseHeaders === null ? null : JSON.stringify(i.responseHeaders)))}::text[],
                             ${column((i) => (i.responseBody === null ? null : withoutNul(i.responseBody)))}::text[],
                             ${column((i) => i.responseBodyTruncated)}::bool[],
                             ${column((i) => i.error?.code ?? null)}::text[],
                             ${column((i) => (i.error ? withoutNul(i.error.message) : null))}::text[])
               AS x(attempt_id, id, token, trigger, success, gone, retry_ms, code, time_ms, started_at, test, status_at_claim,
                    url, request_headers, response_headers, body, truncated, error_code, error_message)
`;
  }

  /** The attempt rows of the recordings in `u` (their numbers from the delivery's attempt_count). */
  private static readonly insertAttempts = Prisma.sql`
        INSERT INTO attempts (id, delivery_id, attempt, trigger, created_at, request_url, request_headers,
                              response_status, response_headers, response_body, response_body_truncated,
                              response_time_ms, error_code, error_message)
        SELECT x.attempt_id, x.id, u.attempt_count, x.trigger::"AttemptTrigger", x.started_at, x.url, x.request_headers::jsonb,
               x.code, x.response_headers::jsonb, x.body, x.truncated, x.time_ms, x.error_code, x.error_message
          FROM x JOIN u ON u.attempt_id = x.attempt_id
        RETURNING 1`;

  /**
   * What the attempts in `u` and the deliveries in `delivery_changes` add to the hourly rollups, as
   * one CTE (stats_written): a delta row per webhook and hour, appended, so that concurrent
   * recordings never share a row. The worker folds them into webhook_stats_hourly (StatsCompactor).
   * Test deliveries are never counted.
   */
  private static readonly rollupAttempts = Prisma.sql`stats_rows AS (
        SELECT s.webhook_id, s.hour, max(s.project_id) AS project_id, sum(s.succeeded)::int AS deliveries_succeeded,
               sum(s.failed)::int AS deliveries_failed, sum(s.cancelled)::int AS deliveries_cancelled,
               sum(s.attempts)::int AS attempts, sum(s.attempts_succeeded)::int AS attempts_succeeded,
               sum(s.attempts_failed)::int AS attempts_failed,
               COALESCE(array_agg(s.bucket) FILTER (WHERE s.bucket IS NOT NULL), '{}') AS buckets,
               COALESCE(array_agg(s.error) FILTER (WHERE s.error IS NOT NULL), '{}') AS errors
          FROM (
            SELECT c.webhook_id, c.hour, c.project_id, c.succeeded, c.failed, c.cancelled,
                   0 AS attempts, 0 AS attempts_succeeded, 0 AS attempts_failed, NULL::int AS bucket, NULL::text AS error
              FROM delivery_changes c
            UNION ALL
            SELECT u.webhook_id, date_trunc('hour', u.started_at, 'UTC'), u.project_id, 0, 0, 0,
                   1, u.success::int, (NOT u.success)::int,
                   CASE WHEN u.code IS NOT NULL THEN bellhop_latency_bucket(u.time_ms) END,
                   -- A failed attempt's error code, or http_<status> for an answer that was not 2xx.
                   CASE WHEN NOT u.success THEN COALESCE(u.error_code, 'http_' || u.code) END
              FROM u WHERE NOT u.test
          ) s
         GROUP BY s.webhook_id, s.hour
      ), stats_written AS (
        INSERT INTO webhook_stats_deltas (webhook_id, hour, project_id, deliveries_succeeded, deliveries_failed,
                                          deliveries_cancelled, attempts, attempts_succeeded, attempts_failed, buckets, errors)
        SELECT * FROM stats_rows
        RETURNING 1
      )`;

  /** What deliveries cancelled in `changed` (those that were pending) add to the rollups of the hour they were created in. */
  private static readonly rollupCancelled = Prisma.sql`cancelled_written AS (
        INSERT INTO webhook_stats_deltas (webhook_id, hour, project_id, deliveries_cancelled)
        SELECT c.webhook_id, date_trunc('hour', c.created_at, 'UTC') AS hour, max(c.project_id), count(*)::int
          FROM changed c
         WHERE NOT c.test AND c.old_status = 'pending'::"DeliveryStatus"
         GROUP BY 1, 2
        RETURNING 1
      )`;

  private async recordMany(items: RecordItem[]): Promise<Recorded[]> {
    // The common case in one statement: the lease holders' attempts. (Under a concurrent change of
    // a row, the token is checked again on the row as it is then.)
    const newStatus = Prisma.sql`CASE
                 -- Cancelled while this attempt was in flight (its webhook deleted or disabled): it stays cancelled.
                 WHEN d.status = 'cancelled'::"DeliveryStatus" AND x.status_at_claim <> 'cancelled' THEN d.status
                 WHEN x.success THEN 'succeeded'::"DeliveryStatus"
                 -- A finished delivery's failed attempt (a manual one) leaves it as it was.
                 WHEN d.status <> 'pending'::"DeliveryStatus" THEN d.status
                 WHEN x.gone THEN 'failed'::"DeliveryStatus"
                 -- Manual and replay attempts are outside the schedule: a pending delivery keeps its next step.
                 WHEN x.trigger IN ('manual', 'replay') THEN d.status
                 WHEN x.retry_ms IS NOT NULL THEN 'pending'::"DeliveryStatus"
                 ELSE 'failed'::"DeliveryStatus" END`;
    // The parts only some recordings need are left out of the others' statement: it is planned at
    // every call, and its planning is most of its cost.
    const replaysCounted = items.some((item) => item.claimed.trigger === 'replay')
      ? Prisma.sql`      ), replays_counted AS (
        -- A replay's progress: its attempts as they are recorded (by the lease holder only, so once each).
        UPDATE replays r SET succeeded = r.succeeded + c.succeeded, failed = r.failed + c.failed
          FROM (SELECT u.replay_id, count(*) FILTER (WHERE u.success)::int AS succeeded, count(*) FILTER (WHERE NOT u.success)::int AS failed
                  FROM u WHERE u.trigger = 'replay' AND u.replay_id IS NOT NULL GROUP BY u.replay_id) c
         WHERE r.id = c.replay_id
        RETURNING 1
`
      : Prisma.empty;
    // Operational events come only from a failed attempt (a delivery ending failed, a 410).
    const outboxWrite = items.some((item) => !item.verdict.success)
      ? Prisma.sql`      ), outbox AS (
        -- Operational events, in the statement that causes them (published by the worker's relay):
        -- a delivery that ended failed, and a webhook disabled by a 410. Never for test deliveries
        -- nor for operational deliveries themselves.
        INSERT INTO operational_outbox (id, organization_id, project_id, type, data, about_webhook_id)
        SELECT gen_random_uuid()::text, u.organization_id, u.project_id, 'delivery.exhausted',
               json_build_object('deliveryId', u.id, 'webhookId', u.webhook_id, 'eventId', u.event_id, 'event', u.event_type,
                                 'attempts', u.attempt_count, 'lastStatusCode', u.code,
                                 'lastError', CASE WHEN u.error_code IS NULL THEN NULL ELSE json_build_object('code', u.error_code, 'message', u.error_message) END),
               u.webhook_id
          FROM u
         WHERE u.status::text = 'failed' AND u.status_at_claim <> 'failed' AND NOT u.test AND NOT u.operational
        UNION ALL
        SELECT gen_random_uuid()::text, wc.organization_id, wc.project_id, 'webhook.disabled',
               json_build_object('webhookId', wc.id, 'name', wc.name, 'url', wc.url, 'reason', 'gone',
                                 'failingSince', to_char(wc.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
               wc.id
          FROM webhooks_changed wc
         WHERE wc.raises
        RETURNING 1
`
      : Prisma.empty;
    const rows = await this.prisma.$queryRaw<RecordRow[]>`
      WITH x AS (${this.attemptsRelation(items)}
      ), u AS (
        UPDATE deliveries d SET
               attempt_count = d.attempt_count + 1,
               scheduled_attempts = d.scheduled_attempts + CASE WHEN x.trigger IN ('scheduled', 'test') THEN 1 ELSE 0 END,
               status = ${newStatus},
               next_attempt_at = CASE
                 WHEN ${newStatus} <> 'pending'::"DeliveryStatus" THEN NULL
                 WHEN x.trigger IN ('scheduled', 'test') THEN now() + x.retry_ms * interval '1 millisecond'
                 ELSE d.next_attempt_at END,
               completed_at = CASE
                 WHEN ${newStatus} <> d.status AND ${newStatus} <> 'pending'::"DeliveryStatus" THEN now()
                 ELSE d.completed_at END,
               last_status_code = x.code,
               last_response_time_ms = x.time_ms,
               last_error_code = x.error_code,
               -- The manual attempt is made: its request is done, unless another was made meanwhile.
               manual_requested_at = CASE
                 WHEN x.trigger IN ('manual', 'replay') AND d.manual_trigger IS NULL THEN NULL
                 ELSE d.manual_requested_at END,
               lease_token = NULL, lease_until = NULL, lease_trigger = NULL
          FROM x
         WHERE d.id = x.id AND d.lease_token = x.token
        RETURNING d.id, x.attempt_id, d.webhook_id, d.attempt_count, d.status, d.scheduled_attempts, d.next_attempt_at,
                  CASE WHEN d.manual_trigger IS NOT NULL THEN d.manual_requested_at END AS manual_requested_at,
                  x.success, x.gone, x.test, x.started_at, x.trigger, x.status_at_claim, x.code, x.time_ms, x.error_code, x.error_message,
                  d.project_id, d.organization_id, d.event_id, d.event_type, d.created_at, d.replay_id,
                  d.event_type IN (${Prisma.join(OPERATIONAL_EVENT_TYPES)}) AS operational
      ), inserted AS (${DeliveryStore.insertAttempts}
      ), delivery_changes AS (
        -- Deliveries that ended (succeeded or failed) with this attempt, or changed how they ended
        -- (a manual attempt of a failed one succeeded): the rollup of the hour they were created in.
        -- A delivery cancelled while the attempt was in flight stays cancelled: nothing changes here.
        SELECT u.webhook_id, u.project_id, date_trunc('hour', u.created_at, 'UTC') AS hour,
               (u.status::text = 'succeeded')::int - (u.status_at_claim = 'succeeded')::int AS succeeded,
               (u.status::text = 'failed')::int - (u.status_at_claim = 'failed')::int AS failed,
               -(u.status_at_claim = 'cancelled')::int AS cancelled
          FROM u
         WHERE NOT u.test AND u.status::text <> u.status_at_claim AND u.status::text IN ('succeeded', 'failed')
      ), ${DeliveryStore.rollupAttempts}, outcome AS (
        -- One row per webhook, so that each webhook row is updated once by this statement. Test
        -- deliveries never move it.
        SELECT u.webhook_id,
               bool_or(u.gone) AS gone,
               -- A 410 to an operational delivery disables the webhook but raises no further event.
               bool_or(u.gone AND NOT u.operational) AS gone_raises,
               bool_or(u.success) AS succeeded,
               min(u.started_at) FILTER (WHERE NOT u.success AND NOT u.gone) AS first_failure,
               max(u.started_at) FILTER (WHERE u.success) AS last_success,
               max(u.started_at) FILTER (WHERE NOT u.success) AS last_failure,
               max(u.started_at) AS last_attempt
          FROM u
         WHERE NOT u.test
         GROUP BY u.webhook_id
      ), webhooks_locked AS (
        -- The webhooks this recording changes, locked in id order and read as they are now (after
        -- any concurrent change commits): 410 disables the webhook; a success ends its run of
        -- failures; a failure starts one. In the same statement as the attempt, so a crash cannot
        -- record one without the other. The times of the last attempts are kept to within a second:
        -- a webhook receiving a thousand deliveries a second has its row written about once a
        -- second, not once per recording. Webhooks with nothing to change are neither locked nor written.
        SELECT w.id, w.enabled AS was_enabled
          FROM webhooks w JOIN outcome o ON o.webhook_id = w.id
         WHERE w.deleted_at IS NULL
           AND ((o.gone AND w.enabled) OR (o.succeeded AND w.failing_since IS NOT NULL) OR (o.first_failure IS NOT NULL AND w.failing_since IS NULL)
                OR o.last_success >= COALESCE(w.last_success_at, '-infinity') + interval '1 second'
                OR o.last_failure >= COALESCE(w.last_failure_at, '-infinity') + interval '1 second')
         ORDER BY w.id
           -- NO KEY: publishes inserting deliveries hold key-share locks on their webhooks (the
           -- foreign key); this lock must not wait for them, nor they for it.
           FOR NO KEY UPDATE OF w
      ), webhooks_changed AS (
        UPDATE webhooks w SET
               last_success_at = GREATEST(w.last_success_at, o.last_success),
               last_failure_at = GREATEST(w.last_failure_at, o.last_failure),
               last_delivery_at = GREATEST(w.last_delivery_at, o.last_attempt),
               enabled = CASE WHEN o.gone THEN false ELSE w.enabled END,
               disabled_reason = CASE WHEN o.gone AND l.was_enabled THEN 'gone' ELSE w.disabled_reason END,
               updated_at = CASE WHEN o.gone AND l.was_enabled THEN now() ELSE w.updated_at END,
               failing_since = CASE
                 WHEN o.succeeded THEN NULL
                 WHEN o.first_failure IS NOT NULL THEN COALESCE(w.failing_since, o.first_failure)
                 ELSE w.failing_since END
          FROM webhooks_locked l JOIN outcome o ON o.webhook_id = l.id
         WHERE w.id = l.id
        -- Disabled by this recording: it was enabled when locked, and the lock is held since.
        RETURNING w.id, (o.gone AND l.was_enabled) AS disabled, (o.gone_raises AND l.was_enabled) AS raises,
                  w.name, w.url, w.project_id, w.organization_id, COALESCE(w.failing_since, o.last_failure) AS failing_since
${replaysCounted}${outboxWrite}      )
      SELECT u.id, u.attempt_id, true AS fenced, u.attempt_count AS attempt, u.status::text AS status, u.scheduled_attempts,
             u.next_attempt_at, u.manual_requested_at, COALESCE(u.gone AND NOT u.test AND wc.disabled, false) AS webhook_disabled,
             ${outboxWrite === Prisma.empty ? Prisma.sql`false` : Prisma.sql`(SELECT count(*) FROM outbox) > 0`} AS operational_raised
        FROM u LEFT JOIN webhooks_changed wc ON wc.id = u.webhook_id`;
    const byAttempt = new Map(rows.map((row) => [row.attempt_id, row]));
    const others = items.filter((item) => !byAttempt.has(item.attemptId));
    if (others.length > 0) {
      // Holders whose lease passed to another attempt: their requests were made, so they are in
      // the history, but the delivery's state stays the current holder's. (And retries of
      // recordings that did commit: skipped here, found below.)
      const stale = await this.prisma.$queryRaw<RecordRow[]>`
        WITH x AS (${this.attemptsRelation(others)}
        ), u AS (
          UPDATE deliveries d SET attempt_count = d.attempt_count + 1
            FROM x
           WHERE d.id = x.id
             -- Not a retry of a recording that did commit. Looked up here rather than in x, so that
             -- this statement locks deliveries before attempts, as every other recording does.
             AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = x.id AND a.id = x.attempt_id)
          RETURNING d.id, x.attempt_id, d.attempt_count, d.status, d.scheduled_attempts, d.next_attempt_at,
                    CASE WHEN d.manual_trigger IS NOT NULL THEN d.manual_requested_at END AS manual_requested_at,
                    d.webhook_id, d.project_id, x.test, x.success, x.started_at, x.code, x.time_ms, x.error_code
        ), inserted AS (${DeliveryStore.insertAttempts}
        ), delivery_changes AS (
          SELECT NULL::text AS webhook_id, NULL::text AS project_id, NULL::timestamptz AS hour, 0 AS succeeded, 0 AS failed, 0 AS cancelled WHERE false
        ), ${DeliveryStore.rollupAttempts}
        SELECT u.id, u.attempt_id, false AS fenced, u.attempt_count AS attempt, u.status::text AS status, u.scheduled_attempts,
               u.next_attempt_at, u.manual_requested_at, false AS webhook_disabled, false AS operational_raised
          FROM u`;
      for (const row of stale) byAttempt.set(row.attempt_id, row);
    }
    const missing = items.filter((item) => !byAttempt.has(item.attemptId));
    if (missing.length > 0) {
      // Already recorded by an earlier try whose reply was lost (or the delivery is gone). Whether
      // that try was the lease holder's is not kept; it is taken as so when the lease is no longer
      // ours, which at worst dispatches a job that finds nothing to claim.
      const earlier = await this.prisma.$queryRaw<RecordRow[]>`
        SELECT d.id, a.id AS attempt_id, COALESCE(d.lease_token <> x.token, true) AS fenced, a.attempt,
               d.status::text AS status, d.scheduled_attempts, d.next_attempt_at,
               CASE WHEN d.manual_trigger IS NOT NULL THEN d.manual_requested_at END AS manual_requested_at, false AS webhook_disabled,
               false AS operational_raised
          FROM unnest(${missing.map((i) => i.attemptId)}::text[], ${missing.map((i) => i.claimed.id)}::text[],
                      ${missing.map((i) => i.claimed.leaseToken)}::text[]) AS x(attempt_id, delivery_id, token)
          JOIN attempts a ON a.delivery_id = x.delivery_id AND a.id = x.attempt_id
          JOIN deliveries d ON d.id = a.delivery_id`;
      for (const row of earlier) byAttempt.set(row.attempt_id, row);
    }
    return items.map((item) => {
      const row = byAttempt.get(item.attemptId);
      if (!row) throw new Error(`delivery ${item.claimed.id} no longer exists; its attempt could not be recorded`);
      return {
        fenced: row.fenced,
        attempt: row.attempt,
        status: row.status,
        scheduledAttempts: row.scheduled_attempts,
        nextAttemptAt: row.next_attempt_at,
        manualRequestedAt: row.manual_requested_at,
        webhookDisabled: row.webhook_disabled,
        operationalRaised: row.operational_raised,
      };
    });
  }

  /**
   * cancelInactive: a pending delivery of a disabled or deleted webhook is never attempted: it
   * ends cancelled, and a waiting manual request is dropped. Not while an attempt holds the lease.
   * Says whether it changed the delivery, and whether that is a test delivery (to be announced).
   */
  async cancelInactive(deliveryId: string): Promise<{ changed: boolean; test: boolean }> {
    // The row is locked first, so that its status before the change is known (for the rollup).
    const [row] = await this.prisma.$queryRaw<Array<{ changed: number; test: boolean }>>`
      WITH target AS (
        SELECT d.id, d.status AS old_status
          FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE d.id = ${deliveryId}
           AND (w.deleted_at IS NOT NULL OR NOT (w.enabled OR d.test))
           AND (d.lease_until IS NULL OR d.lease_until < now())
           AND (d.status = 'pending'::"DeliveryStatus" OR d.manual_requested_at IS NOT NULL OR d.lease_trigger IS NOT NULL)
           FOR NO KEY UPDATE OF d
      ), changed AS (
        UPDATE deliveries d SET
               status = CASE WHEN t.old_status = 'pending'::"DeliveryStatus" THEN 'cancelled'::"DeliveryStatus" ELSE d.status END,
               completed_at = CASE WHEN t.old_status = 'pending'::"DeliveryStatus" THEN now() ELSE d.completed_at END,
               next_attempt_at = CASE WHEN t.old_status = 'pending'::"DeliveryStatus" THEN NULL ELSE d.next_attempt_at END,
               manual_requested_at = NULL, manual_trigger = NULL,
               lease_token = NULL, lease_until = NULL, lease_trigger = NULL
          FROM target t
         WHERE d.id = t.id
        RETURNING d.webhook_id, d.project_id, d.created_at, d.test, t.old_status
      ), ${DeliveryStore.rollupCancelled}
      SELECT count(*)::int AS changed, coalesce(bool_or(test), false) AS test FROM changed`;
    return { changed: (row?.changed ?? 0) > 0, test: row?.test ?? false };
  }

  /**
   * cancelForWebhook: the webhook is being deleted (call inside its transaction): its pending
   * deliveries are cancelled and waiting manual attempts dropped. An attempt in flight is still
   * recorded when it ends; the delivery stays cancelled. Yields the ids of the test deliveries it
   * changed, to be announced once the transaction has committed.
   */
  cancelForWebhook(webhookId: string) {
    return this.prisma.$queryRaw<Array<{ id: string }>>`
      WITH target AS (
        SELECT d.id, d.status AS old_status
          FROM deliveries d
         WHERE d.webhook_id = ${webhookId}
           AND (d.status = 'pending'::"DeliveryStatus" OR d.manual_requested_at IS NOT NULL)
         ORDER BY d.id
           FOR NO KEY UPDATE OF d
      ), changed AS (
        UPDATE deliveries d SET
               status = CASE WHEN t.old_status = 'pending'::"DeliveryStatus" THEN 'cancelled'::"DeliveryStatus" ELSE d.status END,
               completed_at = CASE WHEN t.old_status = 'pending'::"DeliveryStatus" THEN now() ELSE d.completed_at END,
               next_attempt_at = NULL, manual_requested_at = NULL, manual_trigger = NULL
          FROM target t
         WHERE d.id = t.id
        RETURNING d.id, d.webhook_id, d.project_id, d.created_at, d.test, t.old_status
      ), ${DeliveryStore.rollupCancelled}
      SELECT c.id FROM changed c WHERE c.test`;
  }

  /**
   * requestManualAttempt: one more attempt, outside the schedule, as soon as possible (after the
   * attempt in flight, if any). Refused when the webhook is disabled or deleted, and when a
   * manual attempt of this delivery is already waiting; two concurrent requests get one each.
   */
  async requestManualAttempt(deliveryId: string, organizationId: string, trigger: 'manual' | 'replay' = 'manual'): Promise<ManualRequestOutcome> {
    const [row] = await this.prisma.$queryRaw<Array<{ id: string; webhook_id: string; organization_id: string; active: boolean; requested_at: Date | null }>>`
      WITH target AS (
        SELECT d.id, d.webhook_id, d.organization_id, (w.enabled AND w.deleted_at IS NULL) AS active
          FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE d.id = ${deliveryId} AND d.organization_id = ${organizationId}
      ), requested AS (
        UPDATE deliveries d SET manual_requested_at = now(), manual_trigger = ${trigger}::text::"AttemptTrigger"
          FROM target t
         WHERE d.id = t.id AND t.active AND d.manual_trigger IS NULL
        RETURNING d.id, d.manual_requested_at
      )
      SELECT t.id, t.webhook_id, t.organization_id, t.active, r.manual_requested_at AS requested_at
        FROM target t LEFT JOIN requested r ON r.id = t.id`;
    if (!row) return { kind: 'not_found' };
    if (!row.active) return { kind: 'webhook_disabled' };
    if (!row.requested_at) return { kind: 'already_waiting' };
    return { kind: 'queued', delivery: { id: row.id, webhookId: row.webhook_id, organizationId: row.organization_id, requestedAt: row.requested_at } };
  }

  /**
   * findLost: deliveries that should be in the queue: a scheduled step due for longer than
   * graceMs, a manual attempt waiting that long, or a lease run out. Keyset-paged from `after`
   * in due order, so that a long legitimate backlog does not hide a lost row behind it. Locked
   * with SKIP LOCKED, so that sweepers in several workers read different rows.
   */
  async findLost(options: { graceMs: number; limit: number; after?: { dueAt: Date; id: string } | null }): Promise<LostCandidate[]> {
    const after = options.after ?? null;
    return this.prisma.$transaction(async (tx) => {
      const scheduled = await tx.$queryRaw<
        Array<{ id: string; webhook_id: string; organization_id: string; scheduled_attempts: number; lease_expired: boolean; overdue_ms: number; due_at: Date }>
      >`
        SELECT id, webhook_id, organization_id, scheduled_attempts, (lease_until IS NOT NULL) AS lease_expired,
               (EXTRACT(EPOCH FROM (now() - next_attempt_at)) * 1000)::float8 AS overdue_ms, next_attempt_at AS due_at
          FROM deliveries
         WHERE status = 'pending'::"DeliveryStatus"
           AND next_attempt_at <= now() - ${options.graceMs}::float8 * interval '1 millisecond'
           AND (lease_until IS NULL OR lease_until < now())
           AND (lease_trigger IS NULL OR lease_trigger::text NOT IN ('manual', 'replay'))
           ${after ? Prisma.sql`AND (next_attempt_at, id) > (${after.dueAt}::timestamptz, ${after.id}::text)` : Prisma.empty}
         ORDER BY next_attempt_at, id
         LIMIT ${options.limit}::int
           FOR UPDATE SKIP LOCKED`;
      const manual = await tx.$queryRaw<
        Array<{ id: string; webhook_id: string; organization_id: string; manual_requested_at: Date; claimed: boolean; lease_expired: boolean; overdue_ms: number; due_at: Date }>
      >`
        SELECT id, webhook_id, organization_id, manual_requested_at, manual_trigger IS NULL AS claimed, (lease_until IS NOT NULL) AS lease_expired,
               COALESCE(lease_until, manual_requested_at) AS due_at,
               (EXTRACT(EPOCH FROM (now() - COALESCE(lease_until, manual_requested_at))) * 1000)::float8 AS overdue_ms
          FROM deliveries
         -- A manual request waiting, or a manual attempt claimed whose lease has run out unrecorded.
         WHERE manual_requested_at IS NOT NULL
           AND manual_requested_at <= now() - ${options.graceMs}::float8 * interval '1 millisecond'
           AND (lease_until IS NULL OR lease_until < now() - ${options.graceMs}::float8 * interval '1 millisecond')
         ORDER BY manual_requested_at, id
         LIMIT ${options.limit}::int
           FOR UPDATE SKIP LOCKED`;
      return [
        ...scheduled.map((r): LostCandidate => ({
          id: r.id,
          webhookId: r.webhook_id,
          organizationId: r.organization_id,
          kind: 'scheduled',
          scheduledAttempt: r.scheduled_attempts + 1,
          manualRequestedAt: null,
          leaseExpired: r.lease_expired,
          overdueMs: r.overdue_ms,
          dueAt: r.due_at,
        })),
        ...manual.map((r): LostCandidate => ({
          id: r.id,
          webhookId: r.webhook_id,
          organizationId: r.organization_id,
          kind: 'manual',
          scheduledAttempt: 0,
          manualRequestedAt: r.claimed ? null : r.manual_requested_at,
          leaseExpired: r.lease_expired,
          overdueMs: r.overdue_ms,
          dueAt: r.due_at,
        })),
      ];
    });
  }

  /**
   * requestReplayAttempts: one attempt with trigger `replay` for each of these deliveries of the
   * replay's webhook, outside the schedule, as soon as possible: the manual retry's transition for
   * a page of deliveries at once, recording which replay asked (replay_id). Only while the webhook
   * is enabled and not deleted; a delivery with a manual attempt already waiting (or a replay
   * attempt still in flight, whose recording counts for the replay that asked for it) is skipped.
   * Rows are taken in id order, the order in which claims and recordings lock them. Call inside
   * the transaction that holds the replay. Returns the deliveries queued, in id order.
   */
  async requestReplayAttempts(
    replay: { id: string; webhookId: string },
    deliveryIds: readonly string[],
    db: Prisma.TransactionClient = this.prisma,
    /** The replay's match over `d`, checked again on the locked rows (a manual retry may have changed a status since the page was read). */
    match: Prisma.Sql = Prisma.sql`true`,
  ): Promise<Array<{ id: string; webhookId: string; organizationId: string; requestedAt: Date }>> {
    if (deliveryIds.length === 0) return [];
    const ids = [...new Set(deliveryIds)].sort();
    const rows = await db.$queryRaw<Array<{ id: string; webhook_id: string; organization_id: string; requested_at: Date }>>`
      WITH target AS (
        SELECT d.id
          FROM deliveries d
         WHERE d.id = ANY(${ids}::text[]) AND d.webhook_id = ${replay.webhookId}
           AND (SELECT w.enabled AND w.deleted_at IS NULL FROM webhooks w WHERE w.id = d.webhook_id)
           AND d.manual_trigger IS NULL
           AND (d.manual_requested_at IS NULL OR d.lease_trigger IS DISTINCT FROM 'replay'::"AttemptTrigger")
           AND ${match}
         ORDER BY d.id
           FOR NO KEY UPDATE OF d
      )
      UPDATE deliveries d SET manual_requested_at = now(), manual_trigger = 'replay'::"AttemptTrigger", replay_id = ${replay.id}
        FROM target t
       WHERE d.id = t.id
      RETURNING d.id, d.webhook_id, d.organization_id, d.manual_requested_at AS requested_at`;
    return rows
      .map((row) => ({ id: row.id, webhookId: row.webhook_id, organizationId: row.organization_id, requestedAt: row.requested_at }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * outstandingReplayAttempts: the replay's attempts asked for and not yet recorded (waiting or in
   * flight): manual_requested_at stays set until the attempt is recorded. A manual retry asked for
   * afterwards by a user is not the replay's. Read from the partial index on (replay_id) WHERE
   * manual_requested_at IS NOT NULL: a handful of rows per replay. With `atWebhook`, those of every
   * replay of the same webhook (running, or finished within the hour), which share its room.
   */
  async outstandingReplayAttempts(replayId: string, db: Prisma.TransactionClient = this.prisma, atWebhook = false): Promise<number> {
    const replays = atWebhook
      ? Prisma.sql`(SELECT r2.id FROM replays r JOIN replays r2 ON r2.webhook_id = r.webhook_id
                     WHERE r.id = ${replayId} AND (r2.status = 'running' OR r2.completed_at > now() - interval '1 hour'))`
      : Prisma.sql`(${replayId})`;
    const [row] = await db.$queryRaw<Array<{ outstanding: number }>>`
      SELECT count(*)::int AS outstanding FROM deliveries
       WHERE replay_id IN ${replays} AND manual_requested_at IS NOT NULL
         AND (manual_trigger = 'replay'::"AttemptTrigger" OR lease_trigger = 'replay'::"AttemptTrigger")`;
    return row?.outstanding ?? 0;
  }
}
