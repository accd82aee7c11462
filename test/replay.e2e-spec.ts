import { randomBytes } from 'node:crypto';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import type { ServerResponse } from 'node:http';
import { Client } from 'pg';
import { withStackAndReceiver } from './support/harness';
import type { ReceivedRequest } from './support/receiver';
import { createWebhook, eventually, newTenant, type Tenant } from './support/tenant';
import { documented } from './support/payloads';

/*
 * Replay, to recover after an outage: a receiver fails, its deliveries end failed, it recovers,
 * and a replay gives each matching delivery one more attempt (trigger: replay), never more of
 * them in flight at the receiver than the webhook's cap. The real API, worker and receiver.
 */

/** Small, so that 30 deliveries take several pages. */
const CAP = 5;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const errorShape = (statusCode: number, code: string) =>
  expect.objectContaining({ statusCode, code, error: expect.any(String), details: expect.any(Array), requestId: expect.stringMatching(/^req_/) });

interface ReplayBody {
  id: string;
  webhookId: string;
  status: string;
  matched: number;
  queued: number;
  succeeded: number;
  failed: number;
  createdAt: string;
  completedAt: string | null;
}

/** How one path of the shared receiver answers: a status, after a delay; counts the requests in flight at once. */
interface Endpoint {
  status: number;
  delayMs: number;
  inFlight: number;
  maxInFlight: number;
  requests: ReceivedRequest[];
}

describe('replay (recover after an outage)', () => {
  const h = withStackAndReceiver('Replay', { env: { MAX_IN_FLIGHT_PER_WEBHOOK: String(CAP) } });
  const endpoints = new Map<string, Endpoint>();
  let db: Client;

  // One connection per test, closed before the harness drops the database.
  beforeEach(async () => {
    db = new Client({ connectionString: h.stack.databaseUrl });
    await db.connect();
  });
  afterEach(async () => {
    await db?.end();
  });

  beforeAll(() => {
    h.receiver.responder = (req, _index, res: ServerResponse) => {
      const endpoint = endpoints.get(req.url);
      if (!endpoint) return { status: 404 };
      endpoint.requests.push(req);
      endpoint.inFlight += 1;
      endpoint.maxInFlight = Math.max(endpoint.maxInFlight, endpoint.inFlight);
      const { status } = endpoint;
      setTimeout(() => {
        endpoint.inFlight -= 1;
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(status < 300 ? 'ok' : 'down');
      }, endpoint.delayMs);
    };
  });

  /** A webhook on its own path of the receiver, failing (500) until told otherwise. */
  async function webhookOn(t: Tenant, events = ['baseline.drift_detected']) {
    const path = `/replay-${randomBytes(4).toString('hex')}`;
    const endpoint: Endpoint = { status: 500, delayMs: 0, inFlight: 0, maxInFlight: 0, requests: [] };
    endpoints.set(path, endpoint);
    const { webhook } = await createWebhook(h.stack, t, `${h.receiver.url}${path}`, events);
    return { webhookId: webhook.id, endpoint };
  }

  async function publish(t: Tenant, count: number, event = 'baseline.drift_detected') {
    const events = Array.from({ length: count }, (_, n) => ({ event, data: documented(event, { n }) }));
    await h.stack.http().post(`/projects/${t.projectId}/events/batch`).set(t.auth).send({ events }).expect(202);
  }

  async function deliveriesOf(webhookId: string) {
    const { rows } = await db.query<{ id: string; status: string; event_type: string; test: boolean; attempt_count: number }>(
      'SELECT id, status::text AS status, event_type, test, attempt_count FROM deliveries WHERE webhook_id = $1 ORDER BY id',
      [webhookId],
    );
    return rows;
  }

  /** Waits until none of the webhook's deliveries is pending, and `count` of them have `status`. */
  async function settled(webhookId: string, status: string, count: number) {
    await eventually(
      async () => {
        const rows = await deliveriesOf(webhookId);
        return rows.every((d) => d.status !== 'pending') && rows.filter((d) => d.status === status && !d.test).length === count ? true : undefined;
      },
      30_000,
      100,
    );
  }

  async function replayAttempts(webhookId: string) {
    const { rows } = await db.query<{ delivery_id: string; attempt: number; response_status: number | null }>(
      `SELECT a.delivery_id, a.attempt, a.response_status FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
        WHERE d.webhook_id = $1 AND a.trigger = 'replay' ORDER BY a.delivery_id`,
      [webhookId],
    );
    return rows;
  }

  async function getReplay(t: Tenant, id: string): Promise<ReplayBody> {
    const res = await h.stack.http().get(`/replays/${id}`).set(t.auth).expect(200);
    return res.body.replay as ReplayBody;
  }

  async function finished(t: Tenant, id: string, timeoutMs = 30_000): Promise<ReplayBody> {
    return eventually(async () => {
      const replay = await getReplay(t, id);
      return replay.status !== 'running' ? replay : undefined;
    }, timeoutMs, 100);
  }

  async function auditActions(t: Tenant, replayId: string): Promise<string[]> {
    const res = await h.stack.http().get(`/organizations/${t.organizationId}/audit-log`).set(t.auth).expect(200);
    return (res.body.entries as Array<{ action: string; target: { id: string } }>).filter((e) => e.target.id === replayId).map((e) => e.action);
  }

  it('replays the failed deliveries of an outage once each, within the in-flight cap, after a dry run that writes nothing', async () => {
    const t = h.tenant;
    const from = new Date(Date.now() - 1000).toISOString();
    const { webhookId, endpoint } = await webhookOn(t);
    await publish(t, 30);
    // A test delivery during the outage: never replayed.
    await h.stack.http().post(`/webhooks/${webhookId}/test`).set(t.auth).send({}).expect(202);
    await settled(webhookId, 'failed', 30);
    const before = await deliveriesOf(webhookId);
    expect(before.filter((d) => !d.test).every((d) => d.status === 'failed' && d.attempt_count === 5)).toBe(true);

    // The receiver recovers, a little slowly, so that attempts overlap.
    endpoint.status = 200;
    endpoint.delayMs = 40;
    endpoint.requests.length = 0;
    endpoint.maxInFlight = 0;

    const dry = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from, dryRun: true }).expect(200);
    expect(dry.body).toEqual({ replay: { matched: 30 } });
    const written = await db.query(
      'SELECT (SELECT count(*) FROM replays WHERE webhook_id = $1)::int AS replays, (SELECT count(*) FROM deliveries WHERE webhook_id = $1 AND manual_requested_at IS NOT NULL)::int AS waiting',
      [webhookId],
    );
    expect(written.rows[0]).toEqual({ replays: 0, waiting: 0 });
    await sleep(300);
    expect(endpoint.requests).toHaveLength(0);

    // While it runs, never more than the cap of its attempts waiting or in flight.
    let maxOutstanding = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM deliveries WHERE webhook_id = $1 AND manual_requested_at IS NOT NULL', [webhookId]);
        maxOutstanding = Math.max(maxOutstanding, rows[0].n);
        await sleep(10);
      }
    })();
    const created = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from }).expect(202);
    const accepted = created.body.replay as ReplayBody;
    expect(Object.keys(accepted).sort()).toEqual(['completedAt', 'createdAt', 'failed', 'id', 'matched', 'queued', 'status', 'succeeded', 'webhookId']);
    expect(accepted).toMatchObject({ id: expect.stringMatching(/^rpl_[0-9A-Z]{26}$/), webhookId, status: 'running', matched: 30, completedAt: null });
    expect(accepted.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    const done = await finished(t, accepted.id);
    sampling = false;
    await sampler;
    expect(done).toMatchObject({ status: 'completed', matched: 30, queued: 30 });
    expect(done.completedAt).not.toBeNull();

    // Each delivery: exactly one new attempt, trigger replay, and now succeeded.
    const attempts = await replayAttempts(webhookId);
    expect(attempts).toHaveLength(30);
    expect(new Set(attempts.map((a) => a.delivery_id)).size).toBe(30);
    expect(attempts.every((a) => a.attempt === 6 && a.response_status === 200)).toBe(true);
    const after = await deliveriesOf(webhookId);
    expect(after.filter((d) => !d.test).map((d) => [d.status, d.attempt_count])).toEqual(Array.from({ length: 30 }, () => ['succeeded', 6]));
    expect(after.find((d) => d.test)).toEqual(before.find((d) => d.test));
    const sample = await h.stack.http().get(`/deliveries/${attempts[0].delivery_id}`).set(t.auth).expect(200);
    expect(sample.body.delivery.status).toBe('succeeded');
    expect(sample.body.delivery.attempts.map((a: { trigger: string }) => a.trigger)).toEqual(['scheduled', 'scheduled', 'scheduled', 'scheduled', 'scheduled', 'replay']);

    // Paced: the receiver never had more than the cap at once, nor did the queue hold more.
    expect(endpoint.requests).toHaveLength(30);
    expect(endpoint.requests.every((r) => r.headers['x-bellwether-attempt'] === '6')).toBe(true);
    expect(endpoint.maxInFlight).toBeGreaterThan(1);
    expect(endpoint.maxInFlight).toBeLessThanOrEqual(CAP);
    expect(maxOutstanding).toBeLessThanOrEqual(CAP);

    expect(await auditActions(t, accepted.id)).toEqual(['replay.created']);
    // The outcome counters are written by the recording of each replay attempt.
    expect(done).toMatchObject({ succeeded: 30, failed: 0 });
  });

  it('stops queueing when cancelled, and lets the attempts already asked for finish and count', async () => {
    const t = h.tenant;
    const from = new Date(Date.now() - 1000).toISOString();
    const { webhookId, endpoint } = await webhookOn(t);
    await publish(t, 30);
    await settled(webhookId, 'failed', 30);
    endpoint.status = 200;
    endpoint.delayMs = 600;
    endpoint.requests.length = 0;

    const created = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from }).expect(202);
    const id = created.body.replay.id as string;
    await eventually(async () => (endpoint.requests.length > 0 ? true : undefined), 10_000, 20);
    const cancelled = await h.stack.http().post(`/replays/${id}/cancel`).set(t.auth).expect(200);
    const atCancel = cancelled.body.replay as ReplayBody;
    expect(atCancel).toMatchObject({ id, status: 'cancelled', matched: 30 });
    expect(atCancel.completedAt).not.toBeNull();
    expect(atCancel.queued).toBeGreaterThan(0);
    expect(atCancel.queued).toBeLessThanOrEqual(2 * CAP);

    // Nothing more is queued; what was queued is attempted and counted.
    await sleep(2000);
    const later = await getReplay(t, id);
    expect(later).toMatchObject({ status: 'cancelled', queued: atCancel.queued, completedAt: atCancel.completedAt });
    await eventually(async () => ((await replayAttempts(webhookId)).length === atCancel.queued ? true : undefined), 10_000, 100);
    await sleep(1000);
    expect(await replayAttempts(webhookId)).toHaveLength(atCancel.queued);
    expect(endpoint.requests).toHaveLength(atCancel.queued);
    const waiting = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM deliveries WHERE replay_id = $1 AND manual_requested_at IS NOT NULL', [id]);
    expect(waiting.rows[0].n).toBe(0);

    // Cancelling a finished replay answers it as it is; only the first cancel is audited.
    const again = await h.stack.http().post(`/replays/${id}/cancel`).set(t.auth).expect(200);
    expect(again.body.replay).toMatchObject({ status: 'cancelled', queued: atCancel.queued, completedAt: atCancel.completedAt });
    expect((await auditActions(t, id)).sort()).toEqual(['replay.cancelled', 'replay.created']);
    expect(await getReplay(t, id)).toMatchObject({ succeeded: atCancel.queued, failed: 0 });
  });

  it('ends a replay cancelled when its webhook is disabled meanwhile', async () => {
    const t = h.tenant;
    const from = new Date(Date.now() - 1000).toISOString();
    const { webhookId, endpoint } = await webhookOn(t);
    await publish(t, 20);
    await settled(webhookId, 'failed', 20);
    endpoint.status = 200;
    endpoint.delayMs = 600;
    endpoint.requests.length = 0;

    const created = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from }).expect(202);
    const id = created.body.replay.id as string;
    await eventually(async () => (endpoint.requests.length > 0 ? true : undefined), 10_000, 20);
    await h.stack.http().patch(`/webhooks/${webhookId}`).set(t.auth).send({ enabled: false }).expect(200);
    const ended = await finished(t, id, 10_000);
    expect(ended.status).toBe('cancelled');
    expect(ended.queued).toBeLessThan(20);
    await sleep(1500);
    expect((await getReplay(t, id)).queued).toBe(ended.queued);
  });

  it('honours the status, event and time filters', async () => {
    const t = h.tenant;
    const start = new Date(Date.now() - 1000).toISOString();
    const { webhookId, endpoint } = await webhookOn(t, ['baseline.drift_detected', 'baseline.uploaded']);
    await publish(t, 4, 'baseline.uploaded');
    await publish(t, 3, 'baseline.drift_detected');
    await settled(webhookId, 'failed', 7);
    await sleep(50);
    const between = new Date().toISOString();
    await sleep(50);
    endpoint.status = 200;
    await publish(t, 2, 'baseline.uploaded');
    await publish(t, 5, 'baseline.drift_detected');
    await settled(webhookId, 'succeeded', 7);

    const count = async (body: Record<string, unknown>) => {
      const res = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from: start, dryRun: true, ...body }).expect(200);
      return res.body.replay.matched as number;
    };
    expect(await count({})).toBe(7);
    expect(await count({ status: ['failed'] })).toBe(7);
    expect(await count({ status: ['succeeded'] })).toBe(7);
    expect(await count({ status: ['failed', 'succeeded'] })).toBe(14);
    expect(await count({ status: ['cancelled'] })).toBe(0);
    expect(await count({ event: 'baseline.uploaded' })).toBe(4);
    expect(await count({ status: ['succeeded'], event: 'baseline.uploaded' })).toBe(2);
    expect(await count({ status: ['failed', 'succeeded'], to: between })).toBe(7);
    expect(await count({ status: ['failed', 'succeeded'], from: between })).toBe(7);
    expect(await count({ event: 'deploy.finished' })).toBe(0);

    endpoint.requests.length = 0;
    const created = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from: start, status: ['succeeded'], event: 'baseline.uploaded' }).expect(202);
    const done = await finished(t, created.body.replay.id);
    expect(done).toMatchObject({ status: 'completed', matched: 2, queued: 2 });
    const replayed = new Set((await replayAttempts(webhookId)).map((a) => a.delivery_id));
    const expected = (await deliveriesOf(webhookId)).filter((d) => d.event_type === 'baseline.uploaded' && d.status === 'succeeded' && d.attempt_count === 2).map((d) => d.id);
    expect(expected).toHaveLength(2);
    expect([...replayed].sort()).toEqual(expected.sort());
    expect(endpoint.requests.map((r) => r.headers['x-bellwether-event'])).toEqual(['baseline.uploaded', 'baseline.uploaded']);
    expect(done).toMatchObject({ succeeded: 2, failed: 0 });
  });

  it('completes at once a replay that matches nothing', async () => {
    const t = h.tenant;
    const { webhookId } = await webhookOn(t);
    const created = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from: new Date(Date.now() - 60_000).toISOString() }).expect(202);
    expect(created.body.replay).toMatchObject({ status: 'running', matched: 0, queued: 0 });
    const done = await finished(t, created.body.replay.id, 10_000);
    expect(done).toMatchObject({ status: 'completed', matched: 0, queued: 0, succeeded: 0, failed: 0 });
  });

  it('refuses bad input with 422 validation_failed', async () => {
    const t = h.tenant;
    const { webhookId } = await webhookOn(t);
    const now = Date.now();
    const iso = (ms: number) => new Date(ms).toISOString();
    const day = 24 * 60 * 60 * 1000;
    const bad: Array<[string, Record<string, unknown>]> = [
      ['a window longer than 30 days', { from: iso(now - 31 * day), to: iso(now) }],
      ['a window longer than 30 days, to left out', { from: iso(now - 30 * day - 60_000) }],
      ['from after to', { from: iso(now - 1000), to: iso(now - 2000) }],
      ['from equal to to', { from: iso(now - 1000), to: iso(now - 1000) }],
      ['from in the future, to left out', { from: iso(now + 60_000) }],
      ['no from', { to: iso(now) }],
      ['from not a time', { from: 'yesterday' }],
      ['from an impossible date', { from: '2026-02-30T10:00:00.000Z' }],
      ['a status a replay cannot take', { from: iso(now - day), status: ['pending'] }],
      ['an unknown status', { from: iso(now - day), status: ['nope'] }],
      ['status not a list', { from: iso(now - day), status: 'failed' }],
      ['an empty status list', { from: iso(now - day), status: [] }],
      ['a malformed event type', { from: iso(now - day), event: 'Not An Event' }],
      ['dryRun not a boolean', { from: iso(now - day), dryRun: 'yes' }],
      ['an unknown field', { from: iso(now - day), webhookId }],
    ];
    for (const [label, body] of bad) {
      const res = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send(body);
      expect(`${label}: ${res.status}`).toBe(`${label}: 422`);
      expect(res.body).toEqual(errorShape(422, 'validation_failed'));
    }
    // Exactly 30 days is allowed.
    await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from: iso(now - 30 * day), to: iso(now), dryRun: true }).expect(200);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM replays WHERE webhook_id = $1', [webhookId]);
    expect(rows[0].n).toBe(0);
  });

  it('lets a member read a replay but not start or cancel one (403), and answers 404 to another organization', async () => {
    const t = h.tenant;
    const { webhookId } = await webhookOn(t);
    const from = new Date(Date.now() - 60_000).toISOString();
    const created = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from }).expect(202);
    const id = created.body.replay.id as string;

    await h.stack.http().patch(`/organizations/${t.organizationId}`).set(t.auth).send({ plan: 'team' }).expect(200);
    const member = await newTenant(h.stack, 'Member');
    await h.stack.http().post(`/organizations/${t.organizationId}/members`).set(t.auth).send({ email: member.email, role: 'member' }).expect(201);
    for (const res of [
      await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(member.auth).send({ from }),
      await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(member.auth).send({ from, dryRun: true }),
      await h.stack.http().post(`/replays/${id}/cancel`).set(member.auth),
    ]) {
      expect(res.body).toEqual(errorShape(403, 'forbidden'));
    }
    const seen = await h.stack.http().get(`/replays/${id}`).set(member.auth).expect(200);
    expect(seen.body.replay.id).toBe(id);
    const token = await h.stack.http().post(`/organizations/${t.organizationId}/api-tokens`).set(t.auth).send({ name: 'ci', role: 'admin' }).expect(201);
    await h.stack.http().post(`/webhooks/${webhookId}/replay`).set({ Authorization: `Bearer ${token.body.token}` }).send({ from, dryRun: true }).expect(200);

    const other = await newTenant(h.stack, 'Other');
    const otherToken = await h.stack.http().post(`/organizations/${other.organizationId}/api-tokens`).set(other.auth).send({ name: 'ci', role: 'owner' }).expect(201);
    for (const auth of [other.auth, { Authorization: `Bearer ${otherToken.body.token}` }]) {
      for (const res of [
        await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(auth).send({ from }),
        await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(auth).send({ from, dryRun: true }),
        await h.stack.http().get(`/replays/${id}`).set(auth),
        await h.stack.http().post(`/replays/${id}/cancel`).set(auth),
        await h.stack.http().get('/replays/rpl_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T').set(auth),
        await h.stack.http().get('/replays/not-an-id').set(auth),
      ]) {
        expect(res.body).toEqual(errorShape(404, 'not_found'));
      }
    }
    expect((await getReplay(t, id)).status).not.toBe('cancelled');
  });

  it('describes its answers in OpenAPI as they really are', async () => {
    const t = h.tenant;
    const { webhookId } = await webhookOn(t);
    const doc = (await h.stack.http().get('/docs-json').expect(200)).body;
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema({ $id: 'doc', components: doc.components });
    const check = (path: string, method: string, status: number, body: Record<string, unknown>) => {
      const schema = doc.paths[path]?.[method]?.responses?.[String(status)]?.content?.['application/json']?.schema;
      expect({ route: `${method} ${path} ${status}`, described: Boolean(schema?.$ref) }).toEqual({ route: `${method} ${path} ${status}`, described: true });
      const validate = ajv.compile({ $ref: `doc${schema.$ref}` });
      expect({ route: `${method} ${path}`, errors: validate(body) ? null : validate.errors }).toEqual({ route: `${method} ${path}`, errors: null });
      // Every field of the answer is named by the schema.
      const envelope = doc.components.schemas[schema.$ref.replace('#/components/schemas/', '')];
      const inner = doc.components.schemas[envelope.properties.replay.$ref.replace('#/components/schemas/', '')];
      expect(Object.keys(body.replay as object).filter((key) => !(key in inner.properties))).toEqual([]);
    };
    const from = new Date(Date.now() - 60_000).toISOString();
    check('/webhooks/{webhookId}/replay', 'post', 200, (await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from, dryRun: true }).expect(200)).body);
    const created = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from }).expect(202);
    check('/webhooks/{webhookId}/replay', 'post', 202, created.body);
    check('/replays/{replayId}', 'get', 200, (await h.stack.http().get(`/replays/${created.body.replay.id}`).set(t.auth).expect(200)).body);
    check('/replays/{replayId}/cancel', 'post', 200, (await h.stack.http().post(`/replays/${created.body.replay.id}/cancel`).set(t.auth).expect(200)).body);
  });

  it('refuses a replay of a disabled or deleted webhook with 409 webhook_disabled', async () => {
    const t = h.tenant;
    const { webhookId } = await webhookOn(t);
    const from = new Date(Date.now() - 60_000).toISOString();
    const earlier = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from }).expect(202);

    await h.stack.http().patch(`/webhooks/${webhookId}`).set(t.auth).send({ enabled: false }).expect(200);
    const disabled = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from });
    expect(disabled.body).toEqual(errorShape(409, 'webhook_disabled'));
    // A dry run writes nothing: it may size the recovery before the webhook is re-enabled.
    await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send({ from, dryRun: true }).expect(200);

    await h.stack.http().delete(`/webhooks/${webhookId}`).set(t.auth).expect(204);
    for (const body of [{ from }, { from, dryRun: true }]) {
      const deleted = await h.stack.http().post(`/webhooks/${webhookId}/replay`).set(t.auth).send(body);
      expect(deleted.body).toEqual(errorShape(409, 'webhook_disabled'));
    }
    // Its replays stay readable.
    await h.stack.http().get(`/replays/${earlier.body.replay.id}`).set(t.auth).expect(200);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM replays WHERE webhook_id = $1', [webhookId]);
    expect(rows[0].n).toBe(1);
  });
});
