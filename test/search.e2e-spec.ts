import { createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { Client } from 'pg';
import { withStackAndReceiver } from './support/harness';
import { documented } from './support/payloads';
import { createWebhook, eventually, newTenant, Tenant } from './support/tenant';

/*
 * The project's delivery search (GET /projects/{projectId}/deliveries) and the events list's
 * filters, against the real API, worker and a real receiver. One project is filled once, with
 * deliveries of every status, a deleted webhook, a receiver that refuses connections and a test
 * send; each filter's answer (every page of it) is compared with the same filter applied to the
 * rows in Postgres.
 */

interface Row {
  id: string;
  webhookId: string;
  eventId: string;
  event: string;
  status: string;
  test: boolean;
  statusCode: number | null;
  errorCode: string | null;
  createdAt: Date;
}

type Query = Record<string, string | number>;

/** A port on 127.0.0.1 that nothing listens on: connections to it are refused. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('delivery search and event filters', () => {
  const h = withStackAndReceiver('Search');

  // The project searched by most tests: filled once, only read afterwards.
  let fx: Tenant;
  let wh: Record<'ok' | 'failing' | 'refused' | 'deleted' | 'waiting', string>;
  /** Between the first and the second batch of events. */
  let mark: Date;
  let testDeliveryId: string;
  let rows: Row[];

  function qs(query: Query): string {
    const params = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]));
    return params.size ? `?${params}` : '';
  }

  async function search(query: Query, tenant = fx, status = 200) {
    const res = await h.stack.http().get(`/projects/${tenant.projectId}/deliveries${qs(query)}`).set(tenant.auth).expect(status);
    return res.body as { deliveries: Array<Record<string, unknown> & { id: string }>; nextCursor: string | null };
  }

  /** Every page of a search, checking each page's size and that no id comes twice. */
  async function searchAll(query: Query, limit = 100): Promise<string[]> {
    const ids: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; ; pages += 1) {
      if (pages > 100) throw new Error('more pages than rows');
      const page = await search({ ...query, limit, ...(cursor ? { cursor } : {}) });
      expect(page.deliveries.length).toBeLessThanOrEqual(limit);
      ids.push(...page.deliveries.map((d) => d.id));
      cursor = page.nextCursor;
      if (!cursor) break;
      expect(page.deliveries).toHaveLength(limit);
      expect(cursor).toBe(page.deliveries[page.deliveries.length - 1].id);
    }
    expect(new Set(ids).size).toBe(ids.length);
    return ids;
  }

  /** What a filter must answer: the same filter over the project's rows, newest first. */
  function expected(query: Query): string[] {
    const match = (r: Row) =>
      (query.webhookId === undefined || r.webhookId === query.webhookId) &&
      (query.status === undefined || r.status === query.status) &&
      (query.event === undefined || r.event === query.event) &&
      (query.eventId === undefined || r.eventId === query.eventId) &&
      (query.test === undefined || String(r.test) === query.test) &&
      (query.statusCode === undefined || r.statusCode === Number(query.statusCode)) &&
      (query.errorCode === undefined || r.errorCode === query.errorCode) &&
      (query.from === undefined || r.createdAt.getTime() >= new Date(query.from).getTime()) &&
      (query.to === undefined || r.createdAt.getTime() < new Date(query.to).getTime());
    return rows
      .filter(match)
      .map((r) => r.id)
      .sort()
      .reverse();
  }

  async function publishBatch(tenant: Tenant, types: string[]) {
    const res = await h.stack
      .http()
      .post(`/projects/${tenant.projectId}/events/batch`)
      .set(tenant.auth)
      .send({ events: types.map((event, i) => ({ event, data: documented(event, { n: i }) })) })
      .expect(202);
    return res.body.events as Array<{ id: string; event: string; timestamp: string }>;
  }

  async function withDb<T>(work: (db: Client) => Promise<T>): Promise<T> {
    const db = new Client({ connectionString: h.stack.databaseUrl });
    await db.connect();
    try {
      return await work(db);
    } finally {
      await db.end();
    }
  }

  beforeAll(async () => {
    h.receiver.responder = (req) => {
      if (req.url.startsWith('/failing')) return { status: 500, body: 'boom' };
      // Retry in an hour: the delivery stays pending (and is cancelled when its webhook is deleted).
      if (req.url.startsWith('/waiting') || req.url.startsWith('/deleted')) return { status: 429, body: 'later', headers: { 'retry-after': '3600' } };
      return { status: 200, body: 'ok' };
    };
    fx = await newTenant(h.stack, 'Searcher');
    const refusedUrl = `http://127.0.0.1:${await closedPort()}/refused`;
    wh = {
      ok: (await createWebhook(h.stack, fx, `${h.receiver.url}/ok`, ['baseline.drift_detected', 'baseline.uploaded'])).webhook.id,
      failing: (await createWebhook(h.stack, fx, `${h.receiver.url}/failing`, ['baseline.uploaded'])).webhook.id,
      refused: (await createWebhook(h.stack, fx, refusedUrl, ['baseline.security_finding'])).webhook.id,
      deleted: (await createWebhook(h.stack, fx, `${h.receiver.url}/deleted`, ['baseline.drift_detected'])).webhook.id,
      waiting: (await createWebhook(h.stack, fx, `${h.receiver.url}/waiting`, ['baseline.security_finding'])).webhook.id,
    };
    const drift = 'baseline.drift_detected';
    const uploaded = 'baseline.uploaded';
    const finding = 'baseline.security_finding';

    // First batch: ok gets 10, failing 4, deleted 6 (pending, then cancelled by the deletion).
    await publishBatch(fx, [drift, drift, drift, drift, drift, drift, uploaded, uploaded, uploaded, uploaded]);
    await eventually(async () => {
      const res = await h.stack.http().get(`/webhooks/${wh.deleted}/deliveries`).set(fx.auth).expect(200);
      const list = res.body.deliveries as Array<{ attempts: number }>;
      return list.length === 6 && list.every((d) => d.attempts >= 1) ? true : undefined;
    });
    await h.stack.http().delete(`/webhooks/${wh.deleted}`).set(fx.auth).expect(204);
    // created_at is the publishing process's clock, which is this one.
    await sleep(20);
    mark = new Date();
    await sleep(20);
    // Second batch: ok gets 6, failing 3, refused 2, waiting 2; the deleted webhook nothing.
    await publishBatch(fx, [drift, drift, drift, uploaded, uploaded, uploaded, finding, finding]);
    const sent = await h.stack.http().post(`/webhooks/${wh.ok}/test?wait=true`).set(fx.auth).send({}).expect(200);
    testDeliveryId = sent.body.delivery.id;

    rows = await withDb(async (db) => {
      await eventually(async () => {
        const { rows: unsettled } = await db.query(
          `SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'pending' AND attempt_count >= 1 AND webhook_id = $2)::int AS waiting,
                  count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'cancelled'))::int AS done
             FROM deliveries WHERE project_id = $1`,
          [fx.projectId, wh.waiting],
        );
        const { n, waiting, done } = unsettled[0] as { n: number; waiting: number; done: number };
        return n === 34 && waiting === 2 && done === 32 ? true : undefined;
      }, 30_000);
      // last_error_code is written by the recording of each attempt. Where this tree's recording
      // does not write it yet, it is set here from the last attempt, as the recording would.
      await db.query(
        `UPDATE deliveries d SET last_error_code = a.error_code
           FROM attempts a
          WHERE a.delivery_id = d.id AND a.attempt = d.attempt_count AND d.project_id = $1 AND d.last_error_code IS NULL AND a.error_code IS NOT NULL`,
        [fx.projectId],
      );
      const { rows: found } = await db.query(
        `SELECT id, webhook_id, event_id, event_type, status::text AS status, test, last_status_code, last_error_code, created_at
           FROM deliveries WHERE project_id = $1`,
        [fx.projectId],
      );
      return found.map(
        (r): Row => ({
          id: r.id,
          webhookId: r.webhook_id,
          eventId: r.event_id,
          event: r.event_type,
          status: r.status,
          test: r.test,
          statusCode: r.last_status_code,
          errorCode: r.last_error_code,
          createdAt: r.created_at,
        }),
      );
    });
  }, 90_000);

  it('lists every delivery of the project, newest first, each as a webhook history lists it', async () => {
    const all = await searchAll({});
    expect(all).toHaveLength(34);
    expect(all).toEqual(expected({}));
    const first = await search({});
    expect(first.nextCursor).toBeNull();
    const history = await h.stack.http().get(`/webhooks/${wh.ok}/deliveries`).set(fx.auth).expect(200);
    expect(history.body.deliveries).toHaveLength(17);
    const fromSearch = new Map(first.deliveries.map((d) => [d.id, d]));
    for (const d of history.body.deliveries as Array<{ id: string }>) expect(fromSearch.get(d.id)).toEqual(d);
    // No bodies in lists: exactly the history's fields.
    expect(Object.keys(first.deliveries[0]).sort()).toEqual(
      ['id', 'webhookId', 'eventId', 'event', 'status', 'test', 'attempts', 'lastStatusCode', 'lastResponseTimeMs', 'createdAt', 'nextAttemptAt', 'completedAt'].sort(),
    );
  });

  const filters: Array<[string, () => Query, number]> = [
    ['webhookId', () => ({ webhookId: wh.ok }), 17],
    ['webhookId of a failing webhook', () => ({ webhookId: wh.failing }), 7],
    ['status succeeded', () => ({ status: 'succeeded' }), 17],
    ['status failed', () => ({ status: 'failed' }), 9],
    ['status pending', () => ({ status: 'pending' }), 2],
    ['status cancelled', () => ({ status: 'cancelled' }), 6],
    ['event', () => ({ event: 'baseline.uploaded' }), 14],
    ['a type with no deliveries', () => ({ event: 'baseline.never_sent' }), 0],
    ['eventId', () => ({ eventId: rows.find((r) => r.event === 'baseline.uploaded' && r.createdAt > mark)!.eventId }), 2],
    ['test=true', () => ({ test: 'true' }), 1],
    ['test=false', () => ({ test: 'false' }), 33],
    ['statusCode 500', () => ({ statusCode: 500 }), 7],
    ['statusCode 429', () => ({ statusCode: 429 }), 8],
    ['statusCode 200', () => ({ statusCode: 200 }), 17],
    ['errorCode', () => ({ errorCode: 'connection_refused' }), 2],
    ['from', () => ({ from: mark.toISOString() }), 14],
    ['to', () => ({ to: mark.toISOString() }), 20],
    ['from and to', () => ({ from: new Date(mark.getTime() - 60_000).toISOString(), to: mark.toISOString() }), 20],
    ['an empty window', () => ({ from: mark.toISOString(), to: mark.toISOString() }), 0],
    ['webhookId, status and event', () => ({ webhookId: wh.ok, status: 'succeeded', event: 'baseline.uploaded' }), 7],
    ['status, event and from', () => ({ status: 'failed', event: 'baseline.uploaded', from: mark.toISOString() }), 3],
    ['webhookId, statusCode and to', () => ({ webhookId: wh.failing, statusCode: 500, to: mark.toISOString() }), 4],
    ['errorCode and webhookId', () => ({ errorCode: 'connection_refused', webhookId: wh.refused }), 2],
    ['errorCode and another webhook', () => ({ errorCode: 'connection_refused', webhookId: wh.ok }), 0],
    ['test, event and statusCode', () => ({ test: 'false', event: 'baseline.drift_detected', statusCode: 200 }), 9],
    ['eventId and webhookId', () => ({ eventId: rows.find((r) => r.webhookId === wh.failing)!.eventId, webhookId: wh.failing }), 1],
    ['status and a time window', () => ({ status: 'succeeded', from: mark.toISOString(), to: new Date(Date.now() + 60_000).toISOString() }), 7],
  ];

  it.each(filters)('filters by %s, every page', async (_name, build, count) => {
    const query = build();
    const want = expected(query);
    expect(want).toHaveLength(count);
    expect(await searchAll(query)).toEqual(want);
    if (count > 2) expect(await searchAll(query, 2)).toEqual(want);
  });

  it('pages through the project with no duplicates and nothing missing, whatever the page size', async () => {
    const want = expected({});
    for (const limit of [1, 5, 7, 33, 34]) expect(await searchAll({}, limit)).toEqual(want);
    const first = await search({ limit: 5 });
    expect(first.deliveries.map((d) => d.id)).toEqual(want.slice(0, 5));
    const second = await search({ limit: 5, cursor: first.nextCursor! });
    expect(second.deliveries.map((d) => d.id)).toEqual(want.slice(5, 10));
    // The default page is 50, the most 100.
    expect((await search({})).deliveries).toHaveLength(34);
    expect((await search({ limit: 100 })).deliveries).toHaveLength(34);
  });

  it("keeps listing a deleted webhook's deliveries, cancelled where they were pending", async () => {
    await h.stack.http().get(`/webhooks/${wh.deleted}`).set(fx.auth).expect(404);
    const page = await search({ webhookId: wh.deleted });
    expect(page.deliveries).toHaveLength(6);
    expect(page.deliveries.every((d) => d.status === 'cancelled' && d.webhookId === wh.deleted && d.lastStatusCode === 429)).toBe(true);
    const all = await searchAll({});
    for (const d of page.deliveries) expect(all).toContain(d.id);
  });

  it('shows test deliveries with test=true, hides them with test=false, and shows both by default', async () => {
    const only = await search({ test: 'true' });
    expect(only.deliveries.map((d) => d.id)).toEqual([testDeliveryId]);
    expect(only.deliveries[0]).toMatchObject({ test: true, status: 'succeeded', webhookId: wh.ok, event: 'baseline.drift_detected' });
    const none = await searchAll({ test: 'false' });
    expect(none).not.toContain(testDeliveryId);
    expect(await searchAll({})).toContain(testDeliveryId);
  });

  it('finds deliveries by the error code of their last attempt', async () => {
    const page = await search({ errorCode: 'connection_refused' });
    expect(page.deliveries).toHaveLength(2);
    for (const d of page.deliveries) expect(d).toMatchObject({ webhookId: wh.refused, status: 'failed', lastStatusCode: null, event: 'baseline.security_finding' });
    const detail = await h.stack.http().get(`/deliveries/${page.deliveries[0].id}`).set(fx.auth).expect(200);
    const attempts = detail.body.delivery.attempts as Array<{ error: { code: string } | null }>;
    expect(attempts[attempts.length - 1].error).toMatchObject({ code: 'connection_refused' });
    expect((await search({ errorCode: 'timeout' })).deliveries).toEqual([]);
  });

  it('answers 404 for a project of another organization, and for a project that does not exist', async () => {
    const stranger = h.tenant;
    const res = await h.stack.http().get(`/projects/${fx.projectId}/deliveries`).set(stranger.auth).expect(404);
    expect(res.body).toMatchObject({ statusCode: 404, code: 'not_found', requestId: expect.stringMatching(/^req_/) });
    const filtered = await h.stack.http().get(`/projects/${fx.projectId}/deliveries?webhookId=${wh.ok}`).set(stranger.auth).expect(404);
    expect(filtered.body).toEqual({ ...res.body, requestId: filtered.body.requestId });
    await h.stack.http().get(`/projects/proj_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T/deliveries`).set(stranger.auth).expect(404);
    await h.stack.http().get(`/projects/${fx.projectId}/deliveries`).expect(401);
    // Another tenant's webhook or event named in one's own project finds nothing.
    expect((await search({ webhookId: wh.ok }, stranger)).deliveries).toEqual([]);
    expect((await search({ eventId: rows[0].eventId }, stranger)).deliveries).toEqual([]);
  });

  it('lets a member read the search', async () => {
    const created = await h.stack.http().post(`/organizations/${fx.organizationId}/api-tokens`).set(fx.auth).send({ name: 'reader', role: 'member' }).expect(201);
    const member = { ...fx, auth: { Authorization: `Bearer ${created.body.token}` } };
    expect((await search({ status: 'failed' }, member)).deliveries).toHaveLength(9);
  });

  it.each([
    ['an unknown status', 'status=done'],
    ['test other than true or false', 'test=yes'],
    ['a statusCode below 100', 'statusCode=99'],
    ['a statusCode above 599', 'statusCode=600'],
    ['a statusCode that is not a number', 'statusCode=abc'],
    ['a statusCode in exponent form', 'statusCode=1e2'],
    ['an empty statusCode', 'statusCode='],
    ['an errorCode with spaces', 'errorCode=Connection%20Refused'],
    ['an errorCode of 65 characters', `errorCode=${'a'.repeat(65)}`],
    ['a from that is not a time', 'from=yesterday'],
    ['a time without a zone', 'from=2026-01-15T10:30:00'],
    ['a day that does not exist', 'from=2026-02-30T00:00:00Z'],
    ['a to before from', 'from=2026-01-15T10:30:00Z&to=2026-01-15T10:29:59Z'],
    ['a webhookId that is not a webhook id', 'webhookId=wh_nope'],
    ['a delivery id as webhookId', 'webhookId=dlv_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T'],
    ['an eventId that is not an event id', 'eventId=wh_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T'],
    ['an event that is no type name', 'event=Not%20A%20Type'],
    ['a limit of 0', 'limit=0'],
    ['a limit of 101', 'limit=101'],
    ['a cursor that is not an id', 'cursor=abc'],
    ['a parameter the route does not know', 'webhook=wh_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T'],
    ['a status given twice', 'status=failed&status=pending'],
  ])('refuses %s with 422 validation_failed', async (_name, query) => {
    const res = await h.stack.http().get(`/projects/${fx.projectId}/deliveries?${query}`).set(fx.auth).expect(422);
    expect(res.body).toMatchObject({ statusCode: 422, code: 'validation_failed', error: expect.any(String), details: expect.any(Array), requestId: expect.stringMatching(/^req_/) });
    expect(res.body.details.length).toBeGreaterThan(0);
  });

  it('accepts a date alone and times with an offset', async () => {
    const day = mark.toISOString().slice(0, 10);
    expect(await searchAll({ from: day })).toEqual(expected({ from: day }));
    const offset = '2000-01-01T01:00:00+01:00';
    expect(await searchAll({ from: offset })).toEqual(expected({ from: offset }));
  });

  describe('events list', () => {
    async function listEvents(tenant: Tenant, query: Query) {
      const res = await h.stack.http().get(`/projects/${tenant.projectId}/events${qs(query)}`).set(tenant.auth).expect(200);
      return res.body as { events: Array<{ id: string; event: string; timestamp: string; projectId: string }>; nextCursor: string | null };
    }

    async function listAll(tenant: Tenant, query: Query, limit = 2): Promise<string[]> {
      const ids: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await listEvents(tenant, { ...query, limit, ...(cursor ? { cursor } : {}) });
        ids.push(...page.events.map((e) => e.id));
        cursor = page.nextCursor;
      } while (cursor);
      expect(new Set(ids).size).toBe(ids.length);
      return ids;
    }

    it('filters events by type, from and to, page by page', async () => {
      const t = h.tenant;
      const first = await publishBatch(t, ['baseline.drift_detected', 'baseline.uploaded', 'baseline.drift_detected']);
      await sleep(20);
      const between = new Date();
      await sleep(20);
      const second = await publishBatch(t, ['baseline.uploaded', 'baseline.drift_detected', 'baseline.security_finding']);
      const all = [...first, ...second];
      const newestFirst = (events: typeof all) =>
        events
          .map((e) => e.id)
          .sort()
          .reverse();

      expect(await listAll(t, {})).toEqual(newestFirst(all));
      expect(await listAll(t, { event: 'baseline.drift_detected' })).toEqual(newestFirst(all.filter((e) => e.event === 'baseline.drift_detected')));
      expect(await listAll(t, { from: between.toISOString() })).toEqual(newestFirst(second));
      expect(await listAll(t, { to: between.toISOString() })).toEqual(newestFirst(first));
      expect(await listAll(t, { event: 'baseline.uploaded', from: between.toISOString() })).toEqual(newestFirst(second.filter((e) => e.event === 'baseline.uploaded')));
      expect(await listAll(t, { event: 'baseline.drift_detected', to: between.toISOString() })).toEqual(newestFirst(first.filter((e) => e.event === 'baseline.drift_detected')));
      expect(await listAll(t, { from: second[0].timestamp, to: second[2].timestamp }, 1)).toEqual(
        newestFirst(second.filter((e) => e.timestamp >= second[0].timestamp && e.timestamp < second[2].timestamp)),
      );
      expect(await listAll(t, { event: 'baseline.never_sent' })).toEqual([]);
      const page = await listEvents(t, { event: 'baseline.security_finding' });
      expect(page).toEqual({ events: [{ id: second[2].id, event: 'baseline.security_finding', timestamp: second[2].timestamp, projectId: t.projectId }], nextCursor: null });
      // Another organization's project stays a 404, filters or not.
      await h.stack.http().get(`/projects/${t.projectId}/events?event=baseline.uploaded`).set(fx.auth).expect(404);
    });

    it.each([
      ['an event that is no type name', 'event=Baseline%20Uploaded'],
      ['a from that is not a time', 'from=soon'],
      ['a to before from', 'from=2026-01-15T10:30:00.000Z&to=2026-01-14T10:30:00.000Z'],
      ['a parameter the route does not know', 'status=failed'],
    ])('refuses %s with 422 validation_failed', async (_name, query) => {
      const res = await h.stack.http().get(`/projects/${h.tenant.projectId}/events?${query}`).set(h.tenant.auth).expect(422);
      expect(res.body).toMatchObject({ statusCode: 422, code: 'validation_failed', requestId: expect.stringMatching(/^req_/) });
    });
  });
});
