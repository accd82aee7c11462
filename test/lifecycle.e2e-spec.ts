import type { ServerResponse } from 'node:http';
import { Pool } from 'pg';
import { bellwetherSignature, standardWebhooksSignature } from '@bellhop/signing';
import { assertWorkerBuilt, killAllWorkers, startWorkerProcess, workerEnvFor, type WorkerProcess } from './support/processes';
import { Receiver } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { createWebhook, eventually, newTenant, Tenant } from './support/tenant';
import { documented } from './support/payloads';

/*
 * The delivery lifecycle's races, made to happen against the built worker in real processes:
 * Postgres connections killed while attempts are being recorded, a worker paused past its lease
 * while another delivers, a manual retry while an attempt is in flight, concurrent rotations.
 */

const RETRY_SCHEDULE = '300ms,600ms,900ms,1200ms';
const DELIVERY_TIMEOUT_MS = 2000;
const WORKER_APP = 'bellhop-lifecycle-worker';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface AttemptRow {
  delivery_id: string;
  attempt: number;
  trigger: string;
  response_status: number | null;
  error_code: string | null;
}

describe('delivery lifecycle races, with the worker in real processes', () => {
  let stack: Stack;
  let db: Pool;
  const receivers: Receiver[] = [];
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    assertWorkerBuilt();
    stack = await startStack({ worker: false, env: { RETRY_SCHEDULE, DELIVERY_TIMEOUT: `${DELIVERY_TIMEOUT_MS}ms`, SWEEP_INTERVAL: '1s', LOG_LEVEL: 'warn' } });
    db = new Pool({ connectionString: stack.databaseUrl, max: 4 });
  }, 60_000);

  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.signal('SIGKILL')));
    await Promise.all(receivers.splice(0).map((r) => r.stop()));
  }, 30_000);

  afterAll(async () => {
    await killAllWorkers();
    await db?.end();
    await stack?.stop();
  }, 30_000);

  async function startWorker(name: string, overrides: Record<string, string> = {}): Promise<WorkerProcess> {
    const url = new URL(stack.databaseUrl);
    // Named, so that a test can find this worker's own Postgres connections.
    url.searchParams.set('application_name', WORKER_APP);
    const worker = await startWorkerProcess({
      name,
      env: workerEnvFor({ databaseUrl: url.toString(), queuePrefix: stack.queuePrefix }, { RETRY_SCHEDULE, DELIVERY_TIMEOUT: `${DELIVERY_TIMEOUT_MS}ms`, WORKER_CONCURRENCY: '60', ...overrides }),
    });
    workers.push(worker);
    return worker;
  }

  async function receiver(): Promise<Receiver> {
    const r = await new Receiver().start();
    receivers.push(r);
    return r;
  }

  /** A receiver that keeps its first request waiting (answered by the test) and answers the rest with `then`. */
  async function receiverHoldingFirst(then: { status: number } = { status: 200 }) {
    const r = await receiver();
    const held: { res?: ServerResponse } = {};
    r.responder = (_req, index, res) => {
      if (index === 0) {
        held.res = res;
        return;
      }
      return then;
    };
    const answerFirst = (status: number, body: string) => {
      held.res!.writeHead(status, { 'content-type': 'text/plain' });
      held.res!.end(body);
    };
    return { r, answerFirst };
  }

  async function publish(t: Tenant, extra: Record<string, unknown> = {}): Promise<string> {
    const res = await stack.http().post(`/projects/${t.projectId}/events`).set(t.auth).send({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected', extra) }).expect(202);
    return res.body.event.id as string;
  }

  async function deliveryOf(eventId: string) {
    const { rows } = await db.query<{ id: string; status: string; attempt_count: number; scheduled_attempts: number; lease_token: string | null; manual_requested_at: Date | null }>(
      'SELECT id, status::text AS status, attempt_count, scheduled_attempts, lease_token, manual_requested_at FROM deliveries WHERE event_id = $1',
      [eventId],
    );
    return rows[0];
  }

  async function attemptsOf(deliveryIds: string[]): Promise<AttemptRow[]> {
    const { rows } = await db.query<AttemptRow>(
      'SELECT delivery_id, attempt, trigger::text AS trigger, response_status, error_code FROM attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt',
      [deliveryIds],
    );
    return rows;
  }

  it('records every attempt exactly once, and sends none twice, when the worker\'s Postgres connections are killed with 50 attempts in flight', async () => {
    const t = await newTenant(stack, 'Killed connections');
    const r = await receiver();
    const held: ServerResponse[] = [];
    r.responder = (_req, _i, res) => void held.push(res);
    await createWebhook(stack, t, `${r.url}/hook`);
    const worker = await startWorker('terminated', { MAX_IN_FLIGHT_PER_WEBHOOK: '100', MAX_IN_FLIGHT_PER_ORGANIZATION: '60' });

    const events = await Promise.all(Array.from({ length: 50 }, (_, n) => publish(t, { n })));
    await r.waitFor(50, 20_000);

    // Kill the worker's connections over and over while the 50 answers come back and are recorded.
    let killed = 0;
    let killing = true;
    const killer = (async () => {
      while (killing) {
        const { rowCount } = await db.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [WORKER_APP]);
        killed += rowCount ?? 0;
        await sleep(15);
      }
    })();
    for (const res of held.splice(0)) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
      await sleep(10);
    }
    await sleep(500);
    killing = false;
    await killer;

    // Within the lease (DELIVERY_TIMEOUT + 30 s): past it an unrecorded attempt would be sent again,
    // which the checks below catch. On a timeout, say which rows were left and what the worker logged.
    const deliveries = await eventually(async () => {
      const rows = await Promise.all(events.map(deliveryOf));
      return rows.every((row) => row?.status === 'succeeded') ? rows : undefined;
    }, 30_000).catch(async (err: Error) => {
      const rows = await Promise.all(events.map(deliveryOf));
      const left = rows.filter((row) => row?.status !== 'succeeded');
      throw new Error(`${err.message}: ${left.length} not succeeded, e.g. ${JSON.stringify(left.slice(0, 3))}; worker log tail: ${worker.output().slice(-3000)}`);
    });
    const attempts = await attemptsOf(deliveries.map((d) => d.id));
    expect(killed).toBeGreaterThan(0);
    // The kills did hit recordings: the worker retried them.
    expect(worker.output()).toMatch(/recording attempts failed; retrying/);
    expect(deliveries.map((d) => d.attempt_count)).toEqual(events.map(() => 1));
    expect(attempts).toHaveLength(50);
    expect(new Set(attempts.map((a) => a.delivery_id)).size).toBe(50);
    // Nothing was sent again: no lease ran out with its attempt unrecorded.
    await sleep(1500);
    expect(r.requests).toHaveLength(50);
    expect(new Set(r.requests.map((req) => req.headers['x-bellwether-delivery'])).size).toBe(50);
  }, 90_000);

  it('keeps the second worker\'s state when a worker paused past its lease comes back, and has both requests in the history', async () => {
    const t = await newTenant(stack, 'Paused worker');
    const { r, answerFirst } = await receiverHoldingFirst();
    const { webhook } = await createWebhook(stack, t, `${r.url}/hook`);
    const paused = await startWorker('paused');
    const eventId = await publish(t);
    await r.waitFor(1);
    const { id: deliveryId } = await deliveryOf(eventId);

    paused.child.kill('SIGSTOP');
    try {
      // Its lease runs out while it is stopped (the clock moved on, as after a long GC pause or SIGSTOP).
      await db.query(`UPDATE deliveries SET lease_until = now() - interval '1 second' WHERE id = $1`, [deliveryId]);
      await startWorker('second');
      await r.waitFor(2, 15_000);
      const afterSecond = await eventually(async () => {
        const row = await deliveryOf(eventId);
        return row.status === 'succeeded' ? row : undefined;
      });
      expect(afterSecond).toMatchObject({ attempt_count: 1, scheduled_attempts: 1, lease_token: null });
      // The first worker's request gets its (failed) answer while it is still stopped.
      answerFirst(500, 'first worker');
    } finally {
      paused.child.kill('SIGCONT');
    }

    const attempts = await eventually(async () => {
      const rows = await attemptsOf([deliveryId]);
      return rows.length === 2 ? rows : undefined;
    });
    expect(attempts.map((a) => [a.attempt, a.response_status ?? a.error_code])).toEqual([
      [1, 200],
      [2, expect.anything()],
    ]);
    expect(await deliveryOf(eventId)).toMatchObject({ status: 'succeeded', attempt_count: 2, scheduled_attempts: 1 });
    // The stale failure did not start a run of failures on the webhook either.
    const res = await stack.http().get(`/webhooks/${webhook.id}`).set(t.auth).expect(200);
    expect(res.body.webhook).toMatchObject({ enabled: true, disabledReason: null });
    const { rows } = await db.query('SELECT failing_since FROM webhooks WHERE id = $1', [webhook.id]);
    expect(rows[0].failing_since).toBeNull();
    await sleep(800);
    expect(r.requests).toHaveLength(2);
  }, 60_000);

  it('makes a manual retry asked for during an attempt in flight after it, and records both', async () => {
    const t = await newTenant(stack, 'Retry in flight');
    const { r, answerFirst } = await receiverHoldingFirst();
    await createWebhook(stack, t, `${r.url}/hook`);
    await startWorker('retry');
    const eventId = await publish(t);
    await r.waitFor(1);
    const { id: deliveryId } = await deliveryOf(eventId);

    await stack.http().post(`/deliveries/${deliveryId}/retry`).set(t.auth).expect(202);
    // A second manual request while the first still waits is refused.
    const again = await stack.http().post(`/deliveries/${deliveryId}/retry`).set(t.auth).expect(409);
    expect(again.body).toMatchObject({ statusCode: 409, code: 'conflict' });
    await sleep(300);
    expect(r.requests).toHaveLength(1);
    answerFirst(500, 'boom');

    await r.waitFor(2);
    const detail = await eventually(async () => {
      const res = await stack.http().get(`/deliveries/${deliveryId}`).set(t.auth).expect(200);
      return res.body.delivery.status === 'succeeded' ? res.body.delivery : undefined;
    });
    expect(detail.attempts.map((a: { attempt: number; trigger: string; response: { statusCode: number } }) => [a.attempt, a.trigger, a.response.statusCode])).toEqual([
      [1, 'scheduled', 500],
      [2, 'manual', 200],
    ]);
    expect(r.requests.map((req) => req.headers['x-bellwether-attempt'])).toEqual(['1', '2']);
    // Succeeded: the step that was due after attempt 1 is not made.
    await sleep(800);
    expect(r.requests).toHaveLength(2);
  }, 60_000);

  it('gives a failed delivery one manual attempt that leaves it failed, with no automatic attempt after it', async () => {
    const t = await newTenant(stack, 'Retry failed');
    const r = await receiver();
    r.responder = () => ({ status: 503 });
    await createWebhook(stack, t, `${r.url}/hook`);
    await startWorker('failed');
    const eventId = await publish(t);
    const failed = await eventually(async () => {
      const row = await deliveryOf(eventId);
      return row.status === 'failed' ? row : undefined;
    }, 20_000);
    expect(failed.attempt_count).toBe(5);

    const retried = await stack.http().post(`/deliveries/${failed.id}/retry`).set(t.auth).expect(202);
    expect(retried.body.delivery).toMatchObject({ id: failed.id, status: 'failed' });
    await r.waitFor(6);
    await eventually(async () => ((await deliveryOf(eventId)).attempt_count === 6 ? true : undefined));
    await sleep(1500);
    expect(r.requests).toHaveLength(6);
    expect(await deliveryOf(eventId)).toMatchObject({ status: 'failed', attempt_count: 6, scheduled_attempts: 5 });
    expect((await attemptsOf([failed.id])).map((a) => a.trigger)).toEqual(['scheduled', 'scheduled', 'scheduled', 'scheduled', 'scheduled', 'manual']);
  }, 60_000);

  it('refuses a retry on a disabled or deleted webhook with 409 webhook_disabled, and leaves the delivery as it was', async () => {
    const t = await newTenant(stack, 'Retry disabled');
    const r = await receiver();
    const { webhook } = await createWebhook(stack, t, `${r.url}/hook`);
    await startWorker('disabled');
    const eventId = await publish(t);
    await eventually(async () => ((await deliveryOf(eventId)).status === 'succeeded' ? true : undefined));
    const { id: deliveryId } = await deliveryOf(eventId);

    await stack.http().patch(`/webhooks/${webhook.id}`).set(t.auth).send({ enabled: false }).expect(200);
    const refused = await stack.http().post(`/deliveries/${deliveryId}/retry`).set(t.auth).expect(409);
    expect(refused.body).toMatchObject({ statusCode: 409, code: 'webhook_disabled' });
    await stack.http().delete(`/webhooks/${webhook.id}`).set(t.auth).expect(204);
    expect((await stack.http().post(`/deliveries/${deliveryId}/retry`).set(t.auth).expect(409)).body.code).toBe('webhook_disabled');
    expect(await deliveryOf(eventId)).toMatchObject({ status: 'succeeded', manual_requested_at: null });
    // Another tenant's delivery is simply not found.
    const other = await newTenant(stack, 'Other');
    await stack.http().post(`/deliveries/${deliveryId}/retry`).set(other.auth).expect(404);
  }, 30_000);

  it('signs with every secret that concurrent rotations hand out, so each one verifies the delivered request', async () => {
    const t = await newTenant(stack, 'Rotations');
    const r = await receiver();
    const { webhook, secret: original } = await createWebhook(stack, t, `${r.url}/hook`);
    const rotations = await Promise.all(
      Array.from({ length: 6 }, () => stack.http().post(`/webhooks/${webhook.id}/secret/rotate`).set(t.auth).expect(200)),
    );
    const handedOut = [original, ...rotations.map((res) => res.body.secret as string)];
    await startWorker('rotations');
    await publish(t);
    await r.waitFor(1);
    const [req] = r.requests;
    const bellwether = [String(req.headers['x-bellwether-signature']), ...String(req.headers['x-bellwether-signature-previous'] ?? '').split(', ')];
    const standard = String(req.headers['webhook-signature']).split(' ');
    const id = String(req.headers['webhook-id']);
    const ts = Number(req.headers['webhook-timestamp']);
    for (const secret of handedOut) {
      expect(bellwether).toContain(bellwetherSignature(secret, req.body));
      expect(standard).toContain(standardWebhooksSignature(secret, id, ts, req.body));
    }
    expect(standard).toHaveLength(handedOut.length);
  }, 30_000);

  it('never lets a test delivery answered 410 disable the webhook, and sends test deliveries to a disabled webhook', async () => {
    const t = await newTenant(stack, 'Test 410');
    const r = await receiver();
    r.responder = () => ({ status: 410 });
    const { webhook } = await createWebhook(stack, t, `${r.url}/hook`);
    await startWorker('test410');
    const tested = await stack.http().post(`/webhooks/${webhook.id}/test?wait=true`).set(t.auth).send({}).expect(200);
    expect(tested.body.delivery).toMatchObject({ test: true, status: 'failed', lastStatusCode: 410, attempts: 1 });
    const after = await stack.http().get(`/webhooks/${webhook.id}`).set(t.auth).expect(200);
    expect(after.body.webhook).toMatchObject({ enabled: true, disabledReason: null });

    await stack.http().patch(`/webhooks/${webhook.id}`).set(t.auth).send({ enabled: false }).expect(200);
    r.responder = () => ({ status: 200 });
    const onDisabled = await stack.http().post(`/webhooks/${webhook.id}/test?wait=true`).set(t.auth).send({}).expect(200);
    expect(onDisabled.body.delivery).toMatchObject({ test: true, status: 'succeeded', attempts: 1 });
    expect(r.requests).toHaveLength(2);
    const detail = await stack.http().get(`/deliveries/${onDisabled.body.delivery.id}`).set(t.auth).expect(200);
    expect(detail.body.delivery.attempts[0].trigger).toBe('test');
  }, 30_000);

  it('shows and applies a webhook\'s own retry schedule', async () => {
    const t = await newTenant(stack, 'Own schedule');
    const r = await receiver();
    r.responder = () => ({ status: 500 });
    const created = await stack
      .http()
      .post(`/projects/${t.projectId}/webhooks`)
      .set(t.auth)
      .send({ url: `${r.url}/hook`, events: ['baseline.drift_detected'], retrySchedule: ['1s'] })
      .expect(201);
    expect(created.body.webhook.retrySchedule).toEqual(['1s']);
    for (const bad of [['500ms'], ['25h'], Array.from({ length: 11 }, () => '1s'), ['5 minutes'], '1m']) {
      const res = await stack.http().patch(`/webhooks/${created.body.webhook.id}`).set(t.auth).send({ retrySchedule: bad }).expect(422);
      expect(res.body.code).toBe('validation_failed');
    }
    await startWorker('schedule');
    const eventId = await publish(t);
    const failed = await eventually(async () => {
      const row = await deliveryOf(eventId);
      return row.status === 'failed' ? row : undefined;
    }, 10_000);
    expect(failed.attempt_count).toBe(2);
    const gap = r.requests[1].at - r.requests[0].at;
    expect(gap).toBeGreaterThanOrEqual(950);

    const reset = await stack.http().patch(`/webhooks/${created.body.webhook.id}`).set(t.auth).send({ retrySchedule: null }).expect(200);
    expect(reset.body.webhook.retrySchedule).toEqual(['300ms', '600ms', '900ms', '1200ms']);
  }, 30_000);
});

describe('the test button when its webhook is deleted under it', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ worker: false });
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
  }, 30_000);

  it('answers 404 instead of another delivery of the organization', async () => {
    const t = await newTenant(stack, 'Deleted under test');
    const { webhook } = await createWebhook(stack, t, 'http://127.0.0.1:9/hook');
    // Another delivery of the same organization exists: the one the old code answered with.
    await stack.http().post(`/projects/${t.projectId}/events`).set(t.auth).send({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected') }).expect(202);
    const { WebhooksService } = await import('../apps/api/src/webhooks/webhooks.service');
    const service = stack.api.get(WebhooksService);
    const find = service.find.bind(service);
    let first = true;
    const spy = jest.spyOn(service, 'find').mockImplementation(async (tenant, id) => {
      const found = await find(tenant, id);
      if (first) {
        first = false;
        // Deleted between the look-up and the publish (the delete's own look-up passes through).
        await stack.http().delete(`/webhooks/${id}`).set(t.auth).expect(204);
      }
      return found;
    });
    try {
      const res = await stack.http().post(`/webhooks/${webhook.id}/test`).set(t.auth).send({}).expect(404);
      expect(res.body).toMatchObject({ statusCode: 404, code: 'not_found' });
    } finally {
      spy.mockRestore();
    }
  });
});

