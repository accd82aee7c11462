import { BeforeApplicationShutdown, Injectable, Logger } from '@nestjs/common';
import { Batcher, PrismaService } from '@bellhop/database';
import { DeliveryDispatcher, type Dispatch } from '@bellhop/delivery';
import { AppError, envelopeOf, newId, renderBody, subscriptionsFor } from '@bellhop/domain';
import { metrics } from '@bellhop/observability';
import { TenantScope } from '../auth/principal';
import type { PublishAdmission } from '../common/rate-limit';
import { page, pageArgs } from '../common/pagination';
import { idBounds, timeRange } from '../common/time-range';
import { present } from '../common/present';
import { EventTypesService } from '../event-types/event-types.service';
import { ListEventsQuery } from './dto/list-events.query';

export interface PublishResult {
  replayed: boolean;
  event: ReturnType<typeof present.event>;
  deliveries: number;
  deliveryIds: string[];
}

export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/**
 * Takes a publish's events from its organization's budget (PUBLISH_RATE_LIMIT), or throws the 429:
 * called once the events are known to be publishable, before anything is written.
 */
export type PublishAdmit = (events: number) => Promise<PublishAdmission>;

interface PublishItem {
  organizationId: string;
  projectId: string;
  event: string;
  /** The type's category: subscribers are found by the type's name, "*" and "<category>.*". */
  category: string;
  data: unknown;
  idempotencyKey: string | null;
  test: boolean;
  /** Only this webhook (a test send), whatever its subscription; otherwise every enabled subscriber. */
  webhookId: string | null;
  createdAt: Date;
  /** Chosen once, so that a batch retried item by item can tell its own committed rows. */
  eventId: string;
  /**
   * The envelope, deliveries and the body each sends (null: the envelope), fixed at the first
   * attempt to write the event.
   */
  prepared?: { body: string; webhookIds: string[]; deliveryIds: string[]; deliveryBodies: Array<string | null> };
}

type PublishOutcome =
  | { kind: 'published'; eventId: string; deliveryIds: string[] }
  | { kind: 'already_published' }
  | { kind: 'project_not_found' };

const parseTemplate = (text: string | null): unknown => (text === null ? null : JSON.parse(text));

/** Most events written by one statement; concurrent publishes beyond it go in the next. */
const PUBLISH_BATCH = 64;
/** Jobs being enqueued beyond which a publish waits for its own enqueue (backpressure). */
const MAX_JOBS_ENQUEUING = 5_000;

@Injectable()
export class EventsService implements BeforeApplicationShutdown {
  private readonly logger = new Logger(EventsService.name);
  private readonly enqueuing = new Set<Promise<void>>();
  private jobsEnqueuing = 0;
  /**
   * Publishes that arrive together share their round trips: one query finds the projects and
   * subscribers of all of them, one statement writes all their events and deliveries, one Redis
   * pipeline enqueues them. A caller is answered only once its own rows are committed; if a
   * batch fails, its events are written one by one, so one bad event fails only its caller.
   */
  private readonly publisher = new Batcher<PublishItem, PublishOutcome>((items) => this.publishMany(items), {
    maxBatch: PUBLISH_BATCH,
    isolateFailures: true,
  });

  constructor(
    private readonly prisma: PrismaService,
    private readonly dispatcher: DeliveryDispatcher,
    private readonly eventTypes: EventTypesService,
  ) {}

  /**
   * Publishes one event after checking it (nothing is written for a payload that cannot be
   * published: 422 with JSON Pointers into `data`), then taking it from the organization's budget,
   * unless its Idempotency-Key was seen before: a replay publishes nothing, and takes nothing.
   */
  async publishChecked(tenant: TenantScope, projectId: string, input: { event: string; data: unknown; idempotencyKey?: string }, admit: PublishAdmit): Promise<PublishResult> {
    const { problems, categories } = await this.eventTypes.checkPublish(tenant, projectId, [input], () => '');
    if (problems.length > 0) {
      const paths = problems.map((p) => ({ ...p, path: p.path.startsWith('/data') ? p.path.slice('/data'.length) : p.path }));
      const message = problems.some((p) => p.path === '/event') ? problems[0].message : `data does not match the schema of ${input.event}`;
      throw new AppError('validation_failed', message, paths);
    }
    if (input.idempotencyKey !== undefined) {
      const replayed = (await this.published(tenant, projectId, [input.idempotencyKey])).get(input.idempotencyKey);
      if (replayed) return replayed;
    }
    // A key first seen meanwhile (a concurrent publish) is handed back once the write finds it.
    const admission = await admit(1);
    return this.counted(admission, 1, () => this.publish(tenant, projectId, { ...input, category: categories[0]! }), (result) => (result.replayed ? 1 : 0));
  }

  /**
   * Publishes 1 to 100 events in order, all in one statement (every event and its deliveries
   * committed together, or none), after all of them were checked. An item whose idempotency key
   * was seen before answers with the first event, `replayed: true`, and takes nothing from the
   * organization's budget.
   */
  async publishBatch(tenant: TenantScope, projectId: string, inputs: Array<{ event: string; data: unknown; idempotencyKey?: string }>, admit: PublishAdmit) {
    const { problems, categories } = await this.eventTypes.checkPublish(tenant, projectId, inputs, (i) => `/events/${i}`);
    if (problems.length > 0) throw new AppError('validation_failed', 'Some events of the batch cannot be published; none was', problems.slice(0, 50));
    const seen = await this.published(
      tenant,
      projectId,
      inputs.flatMap((input) => (input.idempotencyKey === undefined ? [] : [input.idempotencyKey])),
    );
    const createdAt = new Date();
    const items = new Map<number, PublishItem>();
    for (const [i, input] of inputs.entries()) {
      if (input.idempotencyKey !== undefined && seen.has(input.idempotencyKey)) continue;
      items.set(i, {
        organizationId: tenant.organizationId,
        projectId,
        event: input.event,
        category: categories[i]!,
        data: input.data,
        idempotencyKey: input.idempotencyKey ?? null,
        test: false,
        webhookId: null,
        createdAt,
        eventId: newId('event'),
      });
    }
    // The new events all fit in the organization's budget, or none of them is written. Keys first
    // seen meanwhile (a concurrent publish) are handed back once the write finds them.
    const fresh = [...items.values()];
    const outcomes = new Map<PublishItem, PublishOutcome>();
    if (fresh.length > 0) {
      const admission = await admit(fresh.length);
      const written = await this.counted(admission, fresh.length, () => this.publishMany(fresh), (all) => all.filter((outcome) => outcome.kind !== 'published').length);
      if (written.some((outcome) => outcome.kind === 'project_not_found')) throw AppError.notFound('Project');
      for (const [k, outcome] of written.entries()) outcomes.set(fresh[k], outcome);
    }
    const events = [];
    for (const [i, input] of inputs.entries()) {
      const item = items.get(i);
      const outcome = item ? outcomes.get(item)! : undefined;
      if (!item || !outcome) {
        const first = seen.get(input.idempotencyKey!)!;
        events.push({ ...first.event, deliveries: first.deliveries, replayed: true });
      } else if (outcome.kind === 'published') {
        events.push({ ...present.event({ id: outcome.eventId, type: item.event, createdAt, projectId }), deliveries: outcome.deliveryIds.length, replayed: false });
      } else {
        const first = await this.replay(projectId, item.idempotencyKey!);
        events.push({ ...first.event, deliveries: first.deliveries, replayed: true });
      }
    }
    return { events };
  }

  /**
   * Publishes what an inbound source received (`github.push`, `gitlab.merge_request`): the payload
   * is the sender's, so there is no schema to check it against, but it takes the same organization
   * budget, idempotency and fan-out as any publish (a redelivery takes nothing). `category` is
   * `source`, the catalog's: `source.*` subscribers receive it, and `github.*` ones by its family
   * (subscriptionsFor).
   */
  async publishFromSource(
    organizationId: string,
    projectId: string,
    input: { event: string; category: string; data: unknown; idempotencyKey?: string },
    admit: PublishAdmit,
  ): Promise<PublishResult> {
    if (input.idempotencyKey !== undefined) {
      const replayed = (await this.published({ organizationId }, projectId, [input.idempotencyKey])).get(input.idempotencyKey);
      if (replayed) return replayed;
    }
    const admission = await admit(1);
    return this.counted(admission, 1, () => this.publish({ organizationId }, projectId, input), (result) => (result.replayed ? 1 : 0));
  }

  /**
   * Stores the event and one delivery per subscribed, enabled webhook in one statement, then
   * enqueues by delivery id. Once this returns, the event is durable: if the enqueue fails or
   * never happens, the sweeper dispatches the committed rows.
   */
  async publish(
    tenant: Pick<TenantScope, 'organizationId'>,
    projectId: string,
    input: { event: string; category: string; data: unknown; idempotencyKey?: string; test?: boolean; webhookId?: string },
  ): Promise<PublishResult> {
    const createdAt = new Date();
    const outcome = await this.publisher.run({
      organizationId: tenant.organizationId,
      projectId,
      event: input.event,
      category: input.category,
      data: input.data,
      idempotencyKey: input.idempotencyKey ?? null,
      test: input.test ?? false,
      webhookId: input.webhookId ?? null,
      createdAt,
      eventId: newId('event'),
    });
    if (outcome.kind === 'project_not_found') throw AppError.notFound('Project');
    if (outcome.kind === 'already_published') {
      // Only a repeated Idempotency-Key leaves an event unwritten without an error.
      if (input.idempotencyKey === undefined) throw new Error(`event ${createdAt.toISOString()} was neither written nor found`);
      return this.replay(projectId, input.idempotencyKey);
    }
    return {
      replayed: false,
      event: present.event({ id: outcome.eventId, type: input.event, createdAt, projectId }),
      deliveries: outcome.deliveryIds.length,
      deliveryIds: outcome.deliveryIds,
    };
  }

  /**
   * Writes under an admission: the events that were not new after all (replays of an Idempotency-Key
   * seen before, a project gone meanwhile), or all of them when the write fails, are handed back, so
   * that only events published count against the budget.
   */
  private async counted<T>(admission: PublishAdmission, events: number, write: () => Promise<T>, notPublished: (result: T) => number): Promise<T> {
    let result: T;
    try {
      result = await write();
    } catch (err) {
      await this.release(admission, events);
      throw err;
    }
    await this.release(admission, notPublished(result));
    return result;
  }

  /** A failure to hand events back costs the organization budget, never the publish its answer. */
  private async release(admission: PublishAdmission, events: number): Promise<void> {
    if (events === 0) return;
    await admission.release(events).catch((err: Error) => this.logger.warn({ err: err.message }, 'could not hand unpublished events back to the publish budget'));
  }

  private async publishMany(items: PublishItem[]): Promise<PublishOutcome[]> {
    // The project's name (it is part of the envelope) and the webhooks to fan out to, for each
    // distinct (project, event type, webhook) of the batch, scoped by organization.
    const targetKey = (item: PublishItem) => `${item.organizationId}\n${item.projectId}\n${item.event}\n${item.webhookId ?? ''}`;
    const distinct = [...new Map(items.filter((item) => !item.prepared).map((item) => [targetKey(item), item])).values()];
    const found = distinct.length === 0 ? [] : await this.prisma.$queryRaw<Array<{ k: number; name: string; webhook_ids: string[]; formats: string[]; templates: Array<string | null> }>>`
      SELECT x.k::int AS k, p.name,
             COALESCE(array_agg(w.id ORDER BY w.id) FILTER (WHERE w.id IS NOT NULL), '{}') AS webhook_ids,
             COALESCE(array_agg(w.format ORDER BY w.id) FILTER (WHERE w.id IS NOT NULL), '{}') AS formats,
             COALESCE(array_agg(w.template::text ORDER BY w.id) FILTER (WHERE w.id IS NOT NULL), '{}') AS templates
        FROM unnest(${distinct.map((t) => t.organizationId)}::text[], ${distinct.map((t) => t.projectId)}::text[],
                    ${distinct.map((t) => t.event)}::text[], ${distinct.map((t) => t.webhookId)}::text[],
                    ${distinct.map((t) => `{${subscriptionsFor(t.event, t.category).map((name) => JSON.stringify(name)).join(',')}}`)}::text[])
             WITH ORDINALITY AS x(organization_id, project_id, type, webhook_id, subscriptions, k)
        JOIN projects p ON p.id = x.project_id AND p.organization_id = x.organization_id
        LEFT JOIN webhooks w ON w.project_id = p.id AND w.deleted_at IS NULL
             -- The type's name, "*", its category's "<category>.*" (a source event's family's too): one array overlap.
             AND CASE WHEN x.webhook_id IS NULL THEN w.enabled AND w.events && x.subscriptions::text[] ELSE w.id = x.webhook_id END
       GROUP BY x.k, p.name`;
    const targets = new Map(found.map((row) => [targetKey(distinct[row.k - 1]), row]));

    const events: Array<{ item: PublishItem; eventId: string; body: string; deliveryIds: string[]; webhookIds: string[]; deliveryBodies: Array<string | null> }> = [];
    for (const item of items) {
      if (!item.prepared) {
        const target = targets.get(targetKey(item));
        if (!target) continue;
        const envelope = envelopeOf({ event: item.event, timestamp: item.createdAt, project: { id: item.projectId, name: target.name }, data: item.data });
        item.prepared = {
          body: JSON.stringify(envelope),
          webhookIds: target.webhook_ids,
          deliveryIds: target.webhook_ids.map(() => newId('delivery')),
          // A webhook of another format gets its own body, rendered once here: every attempt sends
          // (and signs) the same bytes, and the history shows them.
          deliveryBodies: target.webhook_ids.map((_id, i) => renderBody(target.formats[i], parseTemplate(target.templates[i]), envelope)),
        };
      }
      events.push({ item, eventId: item.eventId, ...item.prepared });
    }
    const inserted = new Set<string>();
    if (events.length > 0) {
      const deliveries = events.flatMap((e) => e.deliveryIds.map((id, i) => ({ id, eventId: e.eventId, webhookId: e.webhookIds[i], body: e.deliveryBodies[i] })));
      // All events and their deliveries in one statement, so each is committed with its deliveries
      // or not at all. A repeated Idempotency-Key (or event id) inserts nothing, even when the first
      // request is still committing or in this same batch, and neither do its deliveries.
      const rows = await this.prisma.$queryRaw<Array<{ id: string }>>`
        WITH input AS (
          SELECT * FROM unnest(${events.map((e) => e.eventId)}::text[], ${events.map((e) => e.item.organizationId)}::text[],
                               ${events.map((e) => e.item.projectId)}::text[], ${events.map((e) => e.item.event)}::text[],
                               ${events.map((e) => e.body)}::text[], ${events.map((e) => e.item.idempotencyKey)}::text[],
                               ${events.map((e) => e.item.test)}::boolean[], ${events.map((e) => e.item.createdAt.toISOString())}::timestamptz[])
                   AS x(id, organization_id, project_id, type, body, idempotency_key, test, created_at)
        ), e AS (
          INSERT INTO events (id, organization_id, project_id, type, body, idempotency_key, test, created_at)
          SELECT id, organization_id, project_id, type, body, idempotency_key, test, created_at FROM input
          ON CONFLICT DO NOTHING
          RETURNING id
        ), d AS (
          -- The delivery's state starts from the column defaults (pending, due now): after this
          -- insert only DeliveryStore changes it.
          INSERT INTO deliveries (id, organization_id, project_id, event_id, webhook_id, event_type, test, created_at, body)
          SELECT y.id, i.organization_id, i.project_id, e.id, y.webhook_id, i.type, i.test, i.created_at, y.body
            FROM unnest(${deliveries.map((d) => d.id)}::text[], ${deliveries.map((d) => d.eventId)}::text[], ${deliveries.map((d) => d.webhookId)}::text[],
                        ${deliveries.map((d) => d.body)}::text[])
                 AS y(id, event_id, webhook_id, body)
            JOIN e ON e.id = y.event_id
            JOIN input i ON i.id = y.event_id
          RETURNING 1
        )
        SELECT id FROM e`;
      for (const row of rows) inserted.add(row.id);
      metrics.eventsPublished.inc(inserted.size);
      // An event not inserted is a repeated Idempotency-Key, or (when this is the retry of a batch
      // whose answer was lost after it committed) already written under its own id.
      const notInserted = events.filter((e) => !inserted.has(e.eventId)).map((e) => e.eventId);
      if (notInserted.length > 0) {
        const committed = await this.prisma.$queryRaw<Array<{ id: string }>>`SELECT id FROM events WHERE id = ANY (${notInserted}::text[])`;
        for (const row of committed) inserted.add(row.id);
      }
      const dispatches = events
        .filter((e) => inserted.has(e.eventId))
        .flatMap((e) => e.deliveryIds.map((deliveryId, i) => ({ deliveryId, webhookId: e.webhookIds[i], organizationId: e.item.organizationId, attempt: 1 })));
      await this.enqueue(dispatches, inserted.size);
    }

    const byItem = new Map(events.map((e) => [e.item, e]));
    return items.map((item): PublishOutcome => {
      const written = byItem.get(item);
      if (!written) return { kind: 'project_not_found' };
      if (!inserted.has(written.eventId)) return { kind: 'already_published' };
      return { kind: 'published', eventId: written.eventId, deliveryIds: written.deliveryIds };
    });
  }

  /**
   * Enqueues after commit. The rows are durable already, so the publisher is not kept waiting for
   * Redis (a fan-out to a thousand webhooks takes longer to enqueue than to write) unless jobs are
   * piling up faster than Redis takes them. A failed or unfinished enqueue (a crash) is repaired
   * by the sweeper; job ids make enqueueing twice harmless.
   */
  private async enqueue(dispatches: Dispatch[], events: number): Promise<void> {
    // On the next turn of the event loop: building a thousand jobs is synchronous work that
    // would otherwise hold up the answer.
    const sending = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.dispatcher.tryDispatch(dispatches))
      .then((failed) => {
        if (failed) this.logger.warn({ events, err: failed.message }, 'enqueue failed after commit; the sweeper will dispatch');
      });
    this.enqueuing.add(sending);
    this.jobsEnqueuing += dispatches.length;
    void sending.finally(() => {
      this.enqueuing.delete(sending);
      this.jobsEnqueuing -= dispatches.length;
    });
    if (this.jobsEnqueuing > MAX_JOBS_ENQUEUING) await sending;
  }

  /** At shutdown, before Redis closes: let the enqueues in progress (and any they make room for) finish. */
  async beforeApplicationShutdown(): Promise<void> {
    while (this.enqueuing.size > 0) await Promise.allSettled([...this.enqueuing]);
  }

  /**
   * The events already published in the project under these idempotency keys, as their replays
   * answer, in one lookup of the (project, key) index. Scoped by organization: a stranger's
   * project has none, and goes on to its 404.
   */
  private async published(tenant: Pick<TenantScope, 'organizationId'>, projectId: string, keys: string[]): Promise<Map<string, PublishResult>> {
    if (keys.length === 0) return new Map();
    const rows = await this.prisma.event.findMany({
      where: { projectId, organizationId: tenant.organizationId, idempotencyKey: { in: [...new Set(keys)] } },
      select: { id: true, type: true, createdAt: true, projectId: true, idempotencyKey: true, _count: { select: { deliveries: true } } },
    });
    return new Map(rows.map((row) => [row.idempotencyKey!, { replayed: true, event: present.event(row), deliveries: row._count.deliveries, deliveryIds: [] }]));
  }

  /** The same Idempotency-Key again: the first event, and nothing sent twice. */
  private async replay(projectId: string, idempotencyKey: string): Promise<PublishResult> {
    const first = await this.prisma.event.findFirst({
      where: { projectId, idempotencyKey },
      select: { id: true, type: true, createdAt: true, projectId: true, _count: { select: { deliveries: true } } },
    });
    if (!first) throw new AppError('conflict', 'A request with this Idempotency-Key is in progress; retry it');
    return { replayed: true, event: present.event(first), deliveries: first._count.deliveries, deliveryIds: [] };
  }

  async list(tenant: TenantScope, projectId: string, query: ListEventsQuery) {
    const args = pageArgs(query);
    const range = timeRange(query);
    const ids = idBounds('event', range);
    const rows = await this.prisma.event.findMany({
      ...args,
      where: {
        ...args.where,
        projectId,
        organizationId: tenant.organizationId,
        test: false,
        ...(query.event ? { type: query.event } : {}),
        ...(range.from || range.to ? { createdAt: { ...(range.from ? { gte: range.from } : {}), ...(range.to ? { lt: range.to } : {}) } } : {}),
        // Ids sort by time: this bound lets the (project_id, test, id) index range narrow to the window.
        ...(ids.gte || ids.lt ? { AND: [{ id: { ...(ids.gte ? { gte: ids.gte } : {}), ...(ids.lt ? { lt: ids.lt } : {}) } }] } : {}),
      },
      select: { id: true, type: true, createdAt: true, projectId: true },
    });
    const { items, nextCursor } = page(rows, query);
    return { events: items.map(present.event), nextCursor };
  }

  async get(tenant: TenantScope, eventId: string) {
    const event = await this.prisma.event.findFirst({
      where: { id: eventId, organizationId: tenant.organizationId },
      // At most 100: GET /projects/{id}/deliveries?eventId= lists them all.
      include: { deliveries: { orderBy: { id: 'asc' }, take: 100, omit: { body: true } } },
    });
    if (!event) throw AppError.notFound('Event');
    return {
      event: {
        ...present.event(event),
        payload: JSON.parse(event.body) as unknown,
        deliveries: event.deliveries.map(present.delivery),
      },
    };
  }
}
