import { Injectable, Logger } from '@nestjs/common';
import { PrismaService } from '@bellhop/database';
import { OPERATIONAL_EVENT_TYPES, envelopeOf, findEventType, newIdAt, renderBody, subscriptionsFor } from '@bellhop/domain';
import { metrics } from '@bellhop/observability';
import { BackgroundLoop, IdleBackoff } from './background-loop';
import { DeliveryDispatcher, type Dispatch } from './dispatcher';

/**
 * How often the outbox is looked at when nothing nudges the relay: what a worker that crashed
 * after its recording committed left there (a worker nudges its own relay when it writes to the
 * outbox). 5 s after a pass that published something or failed, then twice as long after each
 * empty pass, up to a minute.
 */
const POLL_MS = 5_000;
const POLL_MAX_MS = 60_000;
/** Outbox rows published per statement, at most; halved after a batch fails (down to one row), restored after a success. */
const BATCH = 100;
/** A batch's transaction gives up after this long (a batch fanning out to very many webhooks is then split). */
const BATCH_TIMEOUT_MS = 30_000;

interface OutboxRow {
  id: string;
  organization_id: string;
  project_id: string;
  project_name: string;
  type: string;
  data: string;
  about_webhook_id: string;
  created_at: Date;
}

interface Subscriber {
  id: string;
  format: string;
  template: string | null;
}

/**
 * Publishes the operational events (webhook.disabled, delivery.exhausted) that recordings and
 * the auto-disable check wrote to the outbox in the statement that caused them. Each is published
 * like any event of its project: one event row and one delivery per subscribed, enabled webhook,
 * except the webhook it is about, in the webhook's format, then dispatched (the sweeper repairs a
 * lost dispatch). The event, its deliveries and the outbox row's removal commit together, with
 * the outbox row locked, so an outbox row is published exactly once however many workers relay.
 */
@Injectable()
export class OperationalRelay extends BackgroundLoop<number> {
  protected readonly logger = new Logger(OperationalRelay.name);
  private batchSize = BATCH;
  private readonly idle = new IdleBackoff(POLL_MS, POLL_MAX_MS);

  constructor(
    private readonly prisma: PrismaService,
    private readonly dispatcher: DeliveryDispatcher,
  ) {
    // Nudged by the recordings that write to the outbox; the poll finds what other workers wrote.
    super('publishing operational events', true);
  }

  protected pass(): Promise<number> {
    return this.drain();
  }

  protected delayAfter(published: number | null): number {
    if (published === 0) return this.idle.idle();
    this.idle.reset();
    return POLL_MS;
  }

  /** Publishes everything in the outbox. The number of events published. */
  async drain(): Promise<number> {
    let published = 0;
    for (;;) {
      const size = this.batchSize;
      let outcome: { count: number; dispatches: Dispatch[] };
      try {
        outcome = await this.publishBatch(size);
      } catch (err) {
        // One batch that cannot commit (too large to fan out in time) must not hold up the rest for good.
        this.batchSize = Math.max(1, Math.floor(size / 2));
        throw err;
      }
      this.batchSize = BATCH;
      published += outcome.count;
      if (outcome.dispatches.length > 0) await this.dispatcher.tryDispatch(outcome.dispatches);
      if (outcome.count < size) return published;
    }
  }

  private async publishBatch(size: number): Promise<{ count: number; dispatches: Dispatch[] }> {
    return this.prisma.$transaction(async (tx) => {
      const rows = await tx.$queryRaw<OutboxRow[]>`
        SELECT o.id, o.organization_id, o.project_id, p.name AS project_name, o.type, o.data::text AS data, o.about_webhook_id, o.created_at
          FROM operational_outbox o JOIN projects p ON p.id = o.project_id
         ORDER BY o.created_at, o.id
         LIMIT ${size}::int
           FOR UPDATE OF o SKIP LOCKED`;
      if (rows.length === 0) {
        // Rows of deleted projects have nothing to publish to.
        await tx.$executeRaw`DELETE FROM operational_outbox o WHERE NOT EXISTS (SELECT 1 FROM projects p WHERE p.id = o.project_id)`;
        return { count: 0, dispatches: [] };
      }
      const subscribers = await tx.$queryRaw<Array<Subscriber & { k: number }>>`
        SELECT x.k::int AS k, w.id, w.format, w.template::text AS template
          FROM unnest(${rows.map((r) => r.project_id)}::text[], ${rows.map((r) => r.about_webhook_id)}::text[],
                      ${rows.map((r) => `{${this.subscriptionsOf(r.type).map((s) => JSON.stringify(s)).join(',')}}`)}::text[])
               WITH ORDINALITY AS x(project_id, about, subscriptions, k)
          JOIN webhooks w ON w.project_id = x.project_id AND w.deleted_at IS NULL AND w.enabled
               AND w.events && x.subscriptions::text[] AND w.id <> x.about
         ORDER BY x.k, w.id`;
      const events = rows.map((row) => {
        // The payload keeps its keys in the documented order: it is spliced into the envelope as written.
        const data = JSON.parse(row.data) as unknown;
        const envelope = envelopeOf({ event: row.type, timestamp: row.created_at, project: { id: row.project_id, name: row.project_name }, data });
        // Ids dated like the rows (when it happened), so that searches by time find them where they belong.
        return { row, id: newIdAt('event', row.created_at), body: JSON.stringify(envelope), envelope };
      });
      const deliveries = subscribers.map((s) => {
        const event = events[s.k - 1];
        return { id: newIdAt('delivery', event.row.created_at), eventId: event.id, webhookId: s.id, body: renderBody(s.format, s.template === null ? null : JSON.parse(s.template), event.envelope), event };
      });
      // The same outbox row published twice (it cannot be, under the lock) would meet its idempotency key.
      const inserted = await tx.$queryRaw<Array<{ id: string }>>`
        WITH e AS (
          INSERT INTO events (id, organization_id, project_id, type, body, idempotency_key, created_at)
          SELECT * FROM unnest(${events.map((e) => e.id)}::text[], ${events.map((e) => e.row.organization_id)}::text[],
                               ${events.map((e) => e.row.project_id)}::text[], ${events.map((e) => e.row.type)}::text[],
                               ${events.map((e) => e.body)}::text[], ${events.map((e) => `bellhop:${e.row.id}`)}::text[],
                               ${events.map((e) => e.row.created_at.toISOString())}::timestamptz[])
          ON CONFLICT DO NOTHING
          RETURNING id
        ), d AS (
          INSERT INTO deliveries (id, organization_id, project_id, event_id, webhook_id, event_type, created_at, body)
          SELECT y.id, y.organization_id, y.project_id, y.event_id, y.webhook_id, y.type, y.created_at, y.body
            FROM unnest(${deliveries.map((d) => d.id)}::text[], ${deliveries.map((d) => d.event.row.organization_id)}::text[],
                        ${deliveries.map((d) => d.event.row.project_id)}::text[], ${deliveries.map((d) => d.eventId)}::text[],
                        ${deliveries.map((d) => d.webhookId)}::text[], ${deliveries.map((d) => d.event.row.type)}::text[],
                        ${deliveries.map((d) => d.event.row.created_at.toISOString())}::timestamptz[], ${deliveries.map((d) => d.body)}::text[])
                 AS y(id, organization_id, project_id, event_id, webhook_id, type, created_at, body)
            JOIN e ON e.id = y.event_id
          RETURNING 1
        ), removed AS (
          DELETE FROM operational_outbox WHERE id = ANY (${rows.map((r) => r.id)}::text[])
          RETURNING 1
        )
        SELECT id FROM e`;
      const written = new Set(inserted.map((r) => r.id));
      metrics.eventsPublished.inc(written.size);
      const dispatches: Dispatch[] = deliveries
        .filter((d) => written.has(d.eventId))
        .map((d) => ({ deliveryId: d.id, webhookId: d.webhookId, organizationId: d.event.row.organization_id, attempt: 1 }));
      if (written.size > 0) this.logger.log({ msg: 'operational events published', events: written.size, deliveries: dispatches.length });
      return { count: rows.length, dispatches };
    }, { timeout: BATCH_TIMEOUT_MS });
  }

  private subscriptionsOf(type: string): string[] {
    if (!OPERATIONAL_EVENT_TYPES.includes(type)) throw new Error(`${type} is not an operational event type`);
    return subscriptionsFor(type, findEventType(type)!.category);
  }
}
