import type { ServerResponse } from 'node:http';
import { Client } from 'pg';
import { BELLHOP_CONFIG, type BellhopConfig } from '@bellhop/config';
import { RetentionPurger } from '@bellhop/delivery';
import { newId } from '@bellhop/domain';
import { withStackAndReceiver } from './support/harness';
import { documented } from './support/payloads';
import { createWebhook, eventually, newTenant, type Tenant } from './support/tenant';

/*
 * Retention: each project keeps its history for retentionDays (its own, else RETENTION_DAYS); the
 * worker deletes the finished deliveries older than that with their attempts, then the events left
 * without a delivery, and rollups and finished replays older than 90 days. Real deliveries to a
 * real receiver, made old by moving their timestamps back in Postgres.
 */
describe('retention', () => {
  // 45 rather than 30: a project without its own retention visibly follows the setting.
  const h = withStackAndReceiver('Retention', { env: { RETENTION_DAYS: '45', DELIVERY_TIMEOUT: '10s' } });
  let db: Client;
  /** Requests to /hold wait here while `holding` (an attempt in flight, its lease held). */
  let holding = false;
  const held: ServerResponse[] = [];

  beforeAll(async () => {
    db = new Client({ connectionString: h.stack.databaseUrl });
    db.on('error', () => undefined);
    await db.connect();
    h.receiver.responder = (req, _index, res) => {
      if (req.url.startsWith('/hold') && holding) {
        held.push(res);
        return undefined;
      }
      return { status: req.url.startsWith('/ok') ? 200 : 500 };
    };
  });
  afterAll(async () => {
    for (const res of held) if (!res.writableEnded) res.end();
    await db?.end().catch(() => undefined);
  });

  const purger = () => h.stack.worker!.get(RetentionPurger);
  const http = () => h.stack.http();

  async function publish(tenant: Tenant, event: string, projectId = tenant.projectId): Promise<string> {
    const res = await http().post(`/projects/${projectId}/events`).set(tenant.auth).send({ event, data: documented(event) }).expect(202);
    return res.body.event.id as string;
  }

  async function deliveriesOf(eventIds: string[]): Promise<Array<{ id: string; status: string; attempt_count: number; event_id: string }>> {
    const { rows } = await db.query('SELECT id, status, attempt_count, event_id FROM deliveries WHERE event_id = ANY($1) ORDER BY id', [eventIds]);
    return rows;
  }

  /** Waits until every delivery of these events is finished (or, for `pendingAfter`, has had its first attempt). */
  async function settled(eventIds: string[], pendingAfter: string[] = []): Promise<void> {
    await eventually(async () => {
      const rows = await deliveriesOf([...eventIds, ...pendingAfter]);
      const done = rows.every((d) => (pendingAfter.includes(d.event_id) ? d.attempt_count >= 1 : d.status !== 'pending'));
      return done ? true : undefined;
    }, 20_000);
  }

  /** Moves events, their deliveries and their attempts `days` back in time. */
  async function age(eventIds: string[], days: number): Promise<void> {
    await db.query(`UPDATE attempts SET created_at = created_at - make_interval(days => $2) WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ANY($1))`, [eventIds, days]);
    await db.query(`UPDATE deliveries SET created_at = created_at - make_interval(days => $2) WHERE event_id = ANY($1)`, [eventIds, days]);
    await db.query(`UPDATE events SET created_at = created_at - make_interval(days => $2) WHERE id = ANY($1)`, [eventIds, days]);
  }

  async function existing(table: 'events' | 'deliveries', ids: string[]): Promise<string[]> {
    const { rows } = await db.query(`SELECT id FROM ${table} WHERE id = ANY($1) ORDER BY id`, [ids]);
    return rows.map((r: { id: string }) => r.id);
  }

  async function attemptCount(deliveryIds: string[]): Promise<number> {
    const { rows } = await db.query('SELECT count(*)::int AS n FROM attempts WHERE delivery_id = ANY($1)', [deliveryIds]);
    return rows[0].n;
  }

  const sorted = (ids: string[]) => [...ids].sort();

  it('shows the RETENTION_DAYS setting as the retention of a project that has none of its own', async () => {
    const one = await http().get(`/projects/${h.tenant.projectId}`).set(h.tenant.auth).expect(200);
    expect(one.body.project).toEqual({ id: h.tenant.projectId, name: 'my-mcp-server', organizationId: h.tenant.organizationId, retentionDays: 45, createdAt: expect.any(String) });
    const list = await http().get('/projects').set(h.tenant.auth).expect(200);
    expect(list.body.projects).toEqual([expect.objectContaining({ id: h.tenant.projectId, retentionDays: 45 })]);
  });

  it('takes retentionDays from 1 to 90 at creation and in a PATCH, and refuses anything else with 422', async () => {
    const created = await http().post('/projects').set(h.tenant.auth).send({ name: 'short-lived', retentionDays: 7 }).expect(201);
    expect(created.body.project).toEqual({ id: expect.stringMatching(/^proj_/), name: 'short-lived', organizationId: h.tenant.organizationId, retentionDays: 7, createdAt: expect.any(String) });
    const id = created.body.project.id as string;

    for (const wrong of [0, 91, -1, 7.5, '30', null, true, [30]]) {
      const res = await http().post('/projects').set(h.tenant.auth).send({ name: 'refused', retentionDays: wrong }).expect(422);
      expect(res.body).toMatchObject({ code: 'validation_failed', details: [{ field: 'retentionDays', message: 'retentionDays must be a whole number of days from 1 to 90' }] });
      await http().patch(`/projects/${id}`).set(h.tenant.auth).send({ retentionDays: wrong }).expect(422);
    }
    expect((await http().get('/projects').set(h.tenant.auth).expect(200)).body.projects.map((p: { name: string }) => p.name).sort()).toEqual(['my-mcp-server', 'short-lived']);

    const patched = await http().patch(`/projects/${id}`).set(h.tenant.auth).send({ retentionDays: 90 }).expect(200);
    expect(patched.body.project).toMatchObject({ id, name: 'short-lived', retentionDays: 90 });
    // A rename leaves the retention as it was, and the other way round.
    expect((await http().patch(`/projects/${id}`).set(h.tenant.auth).send({ name: 'renamed' }).expect(200)).body.project).toMatchObject({ name: 'renamed', retentionDays: 90 });
    expect((await http().patch(`/projects/${id}`).set(h.tenant.auth).send({ retentionDays: 1 }).expect(200)).body.project).toMatchObject({ name: 'renamed', retentionDays: 1 });
    expect((await http().get(`/projects/${id}`).set(h.tenant.auth).expect(200)).body.project.retentionDays).toBe(1);
    // Nothing to change is refused; each change, and the project's deletion, is in the audit log.
    await http().patch(`/projects/${id}`).set(h.tenant.auth).send({}).expect(422);
    await http().delete(`/projects/${id}`).set(h.tenant.auth).expect(204);
    const audit = (await http().get(`/organizations/${h.tenant.organizationId}/audit-log`).set(h.tenant.auth).expect(200)).body.entries;
    const about = audit.filter((e: { target: { id: string } }) => e.target.id === id).map((e: { action: string }) => e.action);
    expect(about).toEqual(['project.deleted', 'project.updated', 'project.updated', 'project.updated']);
  });

  it('lets owners and admins change retentionDays, not members (403), and not another organization (404)', async () => {
    const token = async (role: 'member' | 'admin') => {
      const res = await http().post(`/organizations/${h.tenant.organizationId}/api-tokens`).set(h.tenant.auth).send({ name: `ci-${role}`, role }).expect(201);
      return { Authorization: `Bearer ${res.body.token}` };
    };
    const member = await token('member');
    const admin = await token('admin');
    const res = await http().patch(`/projects/${h.tenant.projectId}`).set(member).send({ retentionDays: 1 }).expect(403);
    expect(res.body.code).toBe('forbidden');
    // A member still reads it.
    expect((await http().get(`/projects/${h.tenant.projectId}`).set(member).expect(200)).body.project.retentionDays).toBe(45);

    expect((await http().patch(`/projects/${h.tenant.projectId}`).set(admin).send({ retentionDays: 14 }).expect(200)).body.project.retentionDays).toBe(14);
    expect((await http().patch(`/projects/${h.tenant.projectId}`).set(h.tenant.auth).send({ retentionDays: 20 }).expect(200)).body.project.retentionDays).toBe(20);

    const stranger = await newTenant(h.stack, 'Stranger');
    await http().patch(`/projects/${h.tenant.projectId}`).set(stranger.auth).send({ retentionDays: 1 }).expect(404);
    expect((await http().get(`/projects/${h.tenant.projectId}`).set(h.tenant.auth).expect(200)).body.project.retentionDays).toBe(20);
  });

  it('deletes the finished history older than each project keeps, with its attempts and orphaned events, and keeps everything else', async () => {
    const a = h.tenant;
    const r = h.receiver.url;
    // Project A: 10 days, set through the API.
    await http().patch(`/projects/${a.projectId}`).set(a.auth).send({ retentionDays: 10 }).expect(200);
    const ok = (await createWebhook(h.stack, a, `${r}/ok`, ['baseline.drift_detected'])).webhook;
    const failing = (await createWebhook(h.stack, a, `${r}/fail`, ['baseline.drift_detected'])).webhook;
    // One failed attempt, the next in an hour: a delivery still pending.
    await http().post(`/projects/${a.projectId}/webhooks`).set(a.auth).send({ url: `${r}/later`, events: ['baseline.security_finding'], retrySchedule: ['1h'] }).expect(201);

    // The old history of A, oldest first (the purge walks ids, which follow creation).
    const old1 = await publish(a, 'baseline.drift_detected');
    const old2 = await publish(a, 'baseline.drift_detected');
    const oldPending = await publish(a, 'baseline.security_finding');
    const orphan = await publish(a, 'baseline.uploaded'); // no webhook takes it: an event without deliveries
    await http().post(`/projects/${a.projectId}/webhooks`).set(a.auth).send({ url: `${r}/hold`, events: ['baseline.uploaded'], retrySchedule: [] }).expect(201);
    const oldHeld = await publish(a, 'baseline.uploaded'); // fails once, then gets a manual attempt that stays in flight
    const test = await http().post(`/webhooks/${ok.id}/test`).set(a.auth).send({}).expect(202);
    const oldTest = test.body.delivery.eventId as string;
    await settled([old1, old2, oldHeld, oldTest], [oldPending]);
    // A's recent history.
    const recent = await publish(a, 'baseline.drift_detected');
    await settled([recent]);
    await age([old1, old2, oldPending, orphan, oldHeld, oldTest], 31);

    // Project B, another organization: 60 days, set in the database.
    const b = await newTenant(h.stack, 'Keeper');
    await db.query('UPDATE projects SET retention_days = 60 WHERE id = $1', [b.projectId]);
    expect((await http().get(`/projects/${b.projectId}`).set(b.auth).expect(200)).body.project.retentionDays).toBe(60);
    await createWebhook(h.stack, b, `${r}/ok`, ['baseline.drift_detected']);
    const bOld = await publish(b, 'baseline.drift_detected');
    // Project C: the RETENTION_DAYS setting (45).
    const c = await newTenant(h.stack, 'Default');
    await createWebhook(h.stack, c, `${r}/ok`, ['baseline.drift_detected']);
    const cOlder = await publish(c, 'baseline.drift_detected');
    const cOld = await publish(c, 'baseline.drift_detected');
    await settled([bOld, cOlder, cOld]);
    await age([bOld, cOld], 31);
    await age([cOlder], 50);

    // Rollups and replays: 90 days whatever the project.
    await db.query(
      `INSERT INTO webhook_stats_hourly (webhook_id, hour, project_id, attempts) VALUES
         ($1, date_trunc('hour', now() - interval '91 days'), $2, 3), ($1, date_trunc('hour', now() - interval '89 days'), $2, 4)`,
      [ok.id, a.projectId],
    );
    await db.query(
      `INSERT INTO webhook_errors_hourly (webhook_id, hour, code, count) VALUES
         ($1, date_trunc('hour', now() - interval '91 days'), 'http_500', 3), ($1, date_trunc('hour', now() - interval '89 days'), 'http_500', 2)`,
      [failing.id],
    );
    const replay = (status: string, createdDaysAgo: number, completedDaysAgo: number | null) => {
      const id = newId('replay');
      return db
        .query(
          `INSERT INTO replays (id, organization_id, project_id, webhook_id, status, from_time, to_time, statuses, matched, created_by_type, created_by_id, created_at, completed_at)
           VALUES ($1, $2, $3, $4, $5, now() - interval '120 days', now() - interval '100 days', '{failed}', 0, 'user', $6,
                   now() - make_interval(days => $7), CASE WHEN $8::int IS NULL THEN NULL ELSE now() - make_interval(days => $8::int) END)`,
          [id, a.organizationId, a.projectId, failing.id, status, a.userId, createdDaysAgo, completedDaysAgo],
        )
        .then(() => id);
    };
    const replayDone = await replay('completed', 92, 91);
    const replayRunning = await replay('running', 100, null);
    const replayRecent = await replay('cancelled', 95, 10);

    // The old failed delivery of /hold gets a manual attempt that is in flight during the purge.
    const [heldDelivery] = await deliveriesOf([oldHeld]);
    expect(heldDelivery.status).toBe('failed');
    holding = true;
    await http().post(`/deliveries/${heldDelivery.id}/retry`).set(a.auth).expect(202);
    await eventually(async () => (held.length === 1 ? true : undefined));

    const goneEvents = [old1, old2, orphan, oldTest, cOlder];
    const keptEvents = [oldPending, oldHeld, recent, bOld, cOld];
    const goneDeliveries = (await deliveriesOf([old1, old2, oldTest, cOlder])).map((d) => d.id);
    const keptDeliveries = (await deliveriesOf(keptEvents)).map((d) => d.id);
    expect(goneDeliveries).toHaveLength(6);
    expect(keptDeliveries).toHaveLength(6); // pending, held, recent (2), B, C
    expect(await attemptCount(goneDeliveries)).toBe(4 + 2 * 5); // the failing webhook's took 5 each
    const keptAttempts = await attemptCount(keptDeliveries);
    const pendingDelivery = (await deliveriesOf([oldPending]))[0];
    expect(pendingDelivery.status).toBe('pending');

    const result = await purger().purgeOnce();
    expect(result).toMatchObject({ ran: true, deliveries: 6, events: 5, rollups: 2, replays: 1 });
    expect(result.longestStatementMs).toBeLessThan(1000);

    expect(await existing('deliveries', [...goneDeliveries, ...keptDeliveries])).toEqual(sorted(keptDeliveries));
    expect(await attemptCount(goneDeliveries)).toBe(0);
    expect(await attemptCount(keptDeliveries)).toBe(keptAttempts);
    expect(await existing('events', [...goneEvents, ...keptEvents])).toEqual(sorted(keptEvents));
    const rollups = await db.query(
      `SELECT 'stats' AS t, hour FROM webhook_stats_hourly WHERE webhook_id = $1 AND hour < now() - interval '1 day'
       UNION ALL SELECT 'errors', hour FROM webhook_errors_hourly WHERE webhook_id = $2 AND hour < now() - interval '1 day'`,
      [ok.id, failing.id],
    );
    expect(rollups.rows.map((row: { t: string; hour: Date }) => [row.t, Math.round((Date.now() - row.hour.getTime()) / 86_400_000)])).toEqual([
      ['stats', 89],
      ['errors', 89],
    ]);
    const replays = await db.query('SELECT id FROM replays WHERE id = ANY($1) ORDER BY id', [[replayDone, replayRunning, replayRecent]]);
    expect(replays.rows.map((row: { id: string }) => row.id)).toEqual(sorted([replayRunning, replayRecent]));

    // Gone means gone from the API too; what stays still answers.
    await http().get(`/deliveries/${goneDeliveries[0]}`).set(a.auth).expect(404);
    await http().get(`/deliveries/${goneDeliveries[5]}`).set(c.auth).expect(404);
    await http().get(`/events/${old1}`).set(a.auth).expect(404);
    expect((await http().get(`/deliveries/${pendingDelivery.id}`).set(a.auth).expect(200)).body.delivery.status).toBe('pending');
    await http().get(`/deliveries/${heldDelivery.id}`).set(a.auth).expect(200);
    await http().get(`/events/${bOld}`).set(b.auth).expect(200);

    // Once its manual attempt is recorded, the old delivery is finished and goes at the next run, and its event with it.
    holding = false;
    held[0].writeHead(200).end('ok');
    await eventually(async () => {
      const { rows } = await db.query('SELECT status, lease_until FROM deliveries WHERE id = $1', [heldDelivery.id]);
      return rows[0].status === 'succeeded' && rows[0].lease_until === null ? true : undefined;
    });
    const again = await purger().purgeOnce();
    expect(again).toMatchObject({ ran: true, deliveries: 1, events: 1, rollups: 0, replays: 0 });
    expect(await existing('deliveries', [heldDelivery.id, pendingDelivery.id])).toEqual([pendingDelivery.id]);
    expect(await existing('events', [oldHeld, oldPending])).toEqual([oldPending]);
  });

  it('purges in small batches past the rows it keeps, the same with several workers purging at once', async () => {
    const t = h.tenant;
    await http().patch(`/projects/${t.projectId}`).set(t.auth).send({ retentionDays: 1 }).expect(200);
    await createWebhook(h.stack, t, `${h.receiver.url}/ok`, ['baseline.drift_detected']);
    await http().post(`/projects/${t.projectId}/webhooks`).set(t.auth).send({ url: `${h.receiver.url}/later`, events: ['baseline.security_finding'], retrySchedule: ['1h'] }).expect(201);
    const events: string[] = [];
    for (let i = 0; i < 9; i++) events.push(await publish(t, i === 3 ? 'baseline.security_finding' : 'baseline.drift_detected'));
    await settled(events.filter((_, i) => i !== 3), [events[3]]);
    const old = events.slice(0, 7);
    await age(old, 2);
    const kept = (await deliveriesOf([events[3], ...events.slice(7)])).map((d) => d.id);

    // Batches of 2 rows: the walk goes on past the pending delivery in the 2nd batch and stops at the first recent row.
    const config = h.stack.worker!.get(BELLHOP_CONFIG) as BellhopConfig;
    const workers = [new RetentionPurger(config, { autoStart: false, batchSize: 2 }), new RetentionPurger(config, { autoStart: false, batchSize: 2 }), purger()];
    const results = await Promise.all(workers.map((w) => w.purgeOnce()));
    expect(results.some((res) => res.ran)).toBe(true);
    expect(results.reduce((sum, res) => sum + res.deliveries, 0)).toBe(6);
    expect(results.reduce((sum, res) => sum + res.events, 0)).toBe(6);
    expect(await existing('deliveries', (await deliveriesOf(events)).map((d) => d.id))).toEqual(sorted(kept));
    expect(await existing('events', events)).toEqual(sorted([events[3], ...events.slice(7)]));
  });
  it('drops a month of attempts once every project with deliveries in it keeps them no longer, and none of them is pending; a busy table puts the drop off', async () => {
    const r = h.receiver.url;
    const a = await newTenant(h.stack, 'Months');
    await http().patch(`/projects/${a.projectId}`).set(a.auth).send({ retentionDays: 30 }).expect(200);
    await createWebhook(h.stack, a, `${r}/ok`, ['baseline.drift_detected']);
    await http().post(`/projects/${a.projectId}/webhooks`).set(a.auth).send({ url: `${r}/later`, events: ['baseline.security_finding'], retrySchedule: ['1h'] }).expect(201);
    const b = await newTenant(h.stack, 'Longest');
    await http().patch(`/projects/${b.projectId}`).set(b.auth).send({ retentionDays: 90 }).expect(200);
    await createWebhook(h.stack, b, `${r}/ok`, ['baseline.drift_detected']);

    const expired = await publish(a, 'baseline.drift_detected'); // a month every project is past
    const shared = await publish(a, 'baseline.drift_detected'); // a month B still keeps
    const kept = await publish(b, 'baseline.drift_detected');
    const pending = await publish(a, 'baseline.security_finding'); // a month with a pending delivery
    const later = await publish(a, 'baseline.drift_detected'); // a month dropped while attempts is busy
    await settled([expired, shared, kept, later], [pending]);

    /**
     * Moves deliveries to the month `days` ago: new ids of that time (their attempts follow, ON
     * UPDATE CASCADE, into attempts_default while that month has no partition), older timestamps.
     */
    const toDaysAgo = async (eventIds: string[], days: number) => {
      await db.query(
        `UPDATE deliveries SET id = 'dlv_' || bellhop_ulid_time(now() - make_interval(days => $2)) || substr(id, 15),
                               created_at = created_at - make_interval(days => $2)
          WHERE event_id = ANY($1)`,
        [eventIds, days],
      );
      await db.query(`UPDATE events SET created_at = created_at - make_interval(days => $2) WHERE id = ANY($1)`, [eventIds, days]);
      await db.query(`UPDATE attempts SET created_at = created_at - make_interval(days => $2) WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ANY($1))`, [eventIds, days]);
    };
    const month = async (days: number) =>
      (await db.query(`SELECT 'attempts_' || to_char(now() AT TIME ZONE 'UTC' - make_interval(days => $1), 'YYYY_MM') AS name`, [days])).rows[0].name as string;
    const partitions = async () =>
      (await db.query(`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'attempts'::regclass ORDER BY 1`)).rows.map(
        (row: { relname: string }) => row.relname,
      );
    const homes = async (deliveryIds: string[]) =>
      (await db.query(`SELECT DISTINCT tableoid::regclass::text AS home FROM attempts WHERE delivery_id = ANY($1) ORDER BY 1`, [deliveryIds])).rows.map(
        (row: { home: string }) => row.home,
      );

    // The migration made this month and the next three; the purge keeps it so.
    const ahead = (await db.query(`SELECT 'attempts_' || to_char(now() AT TIME ZONE 'UTC' + make_interval(months => m), 'YYYY_MM') AS name FROM generate_series(0, 3) m`)).rows;
    expect(await partitions()).toEqual(expect.arrayContaining(ahead.map((row: { name: string }) => row.name)));

    await toDaysAgo([expired], 150);
    await toDaysAgo([shared, kept], 62);
    await toDaysAgo([pending], 250);
    const [expiredDelivery] = (await deliveriesOf([expired])).map((d) => d.id);
    const [sharedDelivery, keptDelivery, pendingDelivery] = [(await deliveriesOf([shared]))[0].id, (await deliveriesOf([kept]))[0].id, (await deliveriesOf([pending]))[0].id];
    expect((await deliveriesOf([pending]))[0].status).toBe('pending');
    expect(await homes([expiredDelivery, sharedDelivery, keptDelivery, pendingDelivery])).toEqual(['attempts_default']);

    // Adding those months moves their rows out of the default partition.
    for (const days of [150, 62, 250]) {
      const added = await db.query(`SELECT bellhop_attempts_add_month((now() AT TIME ZONE 'UTC' - make_interval(days => $1))::date) AS added`, [days]);
      expect(added.rows[0].added).toBe(true);
    }
    expect(await homes([expiredDelivery])).toEqual([await month(150)]);
    expect(await homes([sharedDelivery, keptDelivery])).toEqual([await month(62)]);
    expect(await homes([pendingDelivery])).toEqual([await month(250)]);
    expect((await db.query('SELECT count(*)::int AS n FROM attempts_default')).rows[0].n).toBe(0);
    const attemptsOf = async (id: string) => attemptCount([id]);
    const keptAttempts = await attemptsOf(keptDelivery);
    const pendingAttempts = await attemptsOf(pendingDelivery);
    expect(await attemptsOf(expiredDelivery)).toBe(1);
    expect(keptAttempts).toBe(1);
    expect(pendingAttempts).toBe(1);

    const first = await purger().purgeOnce();
    expect(first.attemptMonthsDropped).toEqual([await month(150)]);
    expect(first.attemptMonthsAdded).toEqual([]);
    expect(await partitions()).not.toContain(await month(150));
    expect(await partitions()).toEqual(expect.arrayContaining([await month(62), await month(250)]));
    // The expired delivery went with its month's attempts, the one sharing a month with B's one by one.
    expect(await existing('deliveries', [expiredDelivery, sharedDelivery, keptDelivery, pendingDelivery])).toEqual(sorted([keptDelivery, pendingDelivery]));
    expect(await attemptCount([expiredDelivery, sharedDelivery])).toBe(0);
    expect(await attemptsOf(keptDelivery)).toBe(keptAttempts);
    expect(await attemptsOf(pendingDelivery)).toBe(pendingAttempts);
    await http().get(`/deliveries/${keptDelivery}/attempts`).set(b.auth).expect(200);

    // A reader holding attempts: the drop waits at most a second for its lock, then waits for the next run.
    await toDaysAgo([later], 200);
    expect(await db.query(`SELECT bellhop_attempts_add_month((now() AT TIME ZONE 'UTC' - interval '200 days')::date) AS added`).then((res) => res.rows[0].added)).toBe(true);
    const reader = new Client({ connectionString: h.stack.databaseUrl });
    await reader.connect();
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT count(*) FROM attempts');
      const started = Date.now();
      const second = await purger().purgeOnce();
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(second.attemptMonthsDropped).toEqual([]);
      // Its delivery is past A's 30 days all the same: deleted one by one, attempts with it.
      expect(second.deliveries).toBeGreaterThanOrEqual(1);
    } finally {
      await reader.query('COMMIT').catch(() => undefined);
      await reader.end();
    }
    const third = await purger().purgeOnce();
    expect(third.attemptMonthsDropped).toEqual([await month(200)]);
    expect(await partitions()).toEqual(expect.arrayContaining([await month(62), await month(250)]));
  });
});
