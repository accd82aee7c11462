import { lookup } from 'node:dns/promises';
import type { ServerResponse } from 'node:http';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { Pool } from 'pg';
import { TEST_REDIS_URL } from './support/env';
import { assertWorkerBuilt, killAllWorkers, metricTotal, startWorkerProcess, workerEnvFor, type WorkerProcess } from './support/processes';
import { Receiver, type ReceivedRequest } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { createWebhook, eventually, newTenant, Tenant } from './support/tenant';
import { documented } from './support/payloads';

/*
 * The delivery engine's guarantees, proved against the built worker running as real child
 * processes (killed, restarted, doubled, shut down), the API in this process, real Postgres and
 * real Redis. Every wait is bounded. The two kill -9 tests are the slow ones: they have to wait for
 * the dead worker's leases (DELIVERY_TIMEOUT + 30 s) to run out.
 *
 * Two tests hold a table lock (ACCESS EXCLUSIVE) from a session of their own to stop a worker at
 * an exact point before killing it; that is how a one-in-a-thousand crash timing is made certain.
 */

const RETRY_SCHEDULE = '200ms,400ms,600ms,800ms';
const DELIVERY_TIMEOUT_MS = 2000;
/** How long a lease (and an in-flight slot) outlives the HTTP deadline (LEASE_MARGIN_MS in the engine). */
const LEASE_MARGIN_MS = 30_000;
/** The worker's BullMQ stalledInterval: a dead worker's active job is noticed one or two of these after its lock expires. */
const STALLED_INTERVAL_MS = 30_000;
/** A job may run this much before its row is due (DUE_SLACK_MS in the engine); anything earlier is a defect. */
const DUE_SLACK_MS = 50;
const MAX_STORED_BODY_BYTES = 64 * 1024;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function redisConnection() {
  const url = new URL(TEST_REDIS_URL);
  return { host: url.hostname, port: Number(url.port || 6379) };
}

function report(message: string): void {
  process.stderr.write(`[faults] ${message}\n`);
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Answers after `ms` milliseconds (the receiver's responder API lets a test answer later). */
function answerAfter(res: ServerResponse, ms: number, status = 200, body = 'ok'): void {
  setTimeout(() => {
    if (res.destroyed) return;
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(body);
  }, ms);
}

/** Keeps the response open and sends one byte every 200 ms until the client goes away. */
function drip(res: ServerResponse, onClose?: () => void): void {
  res.writeHead(200, { 'content-type': 'text/plain' });
  const timer = setInterval(() => res.write('x'), 200);
  res.on('close', () => {
    clearInterval(timer);
    onClose?.();
  });
}

const TEN_MB = Buffer.alloc(10 * 1024 * 1024, 'x');

function bigBody(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': String(TEN_MB.length) });
  res.end(TEN_MB);
}

const deliveryIdOf = (req: ReceivedRequest) => String(req.headers['x-bellwether-delivery']);
const attemptOf = (req: ReceivedRequest) => String(req.headers['x-bellwether-attempt']);

interface DeliveryRow {
  id: string;
  webhook_id: string;
  event_id: string;
  status: string;
  attempt_count: number;
  next_attempt_at: Date | null;
  lease_until: Date | null;
}

interface AttemptRow {
  delivery_id: string;
  attempt: number;
  created_at: Date;
  response_status: number | null;
  error_code: string | null;
}

describe('delivery engine guarantees with the worker in real processes', () => {
  let stack: Stack;
  let db: Pool;
  let redis: Redis;
  const organizations: string[] = [];
  const receivers: Receiver[] = [];
  /** Workers started by the current test; a describe's shared worker is not in here. */
  let testWorkers: WorkerProcess[] = [];

  beforeAll(async () => {
    assertWorkerBuilt();
    // The API runs here; workers are child processes of the built app, on the same settings.
    stack = await startStack({
      worker: false,
      env: { RETRY_SCHEDULE, DELIVERY_TIMEOUT: `${DELIVERY_TIMEOUT_MS}ms`, SWEEP_INTERVAL: '1s', LOG_LEVEL: 'warn' },
    });
    db = new Pool({ connectionString: stack.databaseUrl, max: 4 });
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 2 });
  }, 60_000);

  afterEach(async () => {
    const workers = testWorkers;
    testWorkers = [];
    await Promise.all(workers.map((w) => w.signal('SIGKILL')));
    // Whatever a test left pending must not be picked up by the next test's workers.
    if (organizations.length > 0) {
      await db.query(
        `UPDATE deliveries SET status = 'cancelled', completed_at = now(), next_attempt_at = NULL, lease_until = NULL
          WHERE status = 'pending' AND organization_id = ANY($1)`,
        [organizations],
      );
    }
    await Promise.all(receivers.splice(0).map((r) => r.stop()));
  }, 30_000);

  afterAll(async () => {
    await killAllWorkers();
    await db?.end();
    await stack?.stop();
    if (redis && stack) await deleteKeys(`${stack.queuePrefix}:*`).catch(() => undefined);
    await redis?.quit();
  }, 30_000);

  function workerEnv(overrides: Record<string, string> = {}): Record<string, string> {
    return workerEnvFor(stack, { RETRY_SCHEDULE, DELIVERY_TIMEOUT: `${DELIVERY_TIMEOUT_MS}ms`, WORKER_CONCURRENCY: '20', ...overrides });
  }

  async function startWorker(name: string, overrides: Record<string, string> = {}): Promise<WorkerProcess> {
    const worker = await startWorkerProcess({ name, env: workerEnv(overrides) });
    testWorkers.push(worker);
    return worker;
  }

  async function receiver(): Promise<Receiver> {
    const r = await new Receiver().start();
    receivers.push(r);
    return r;
  }

  async function tenant(name = 'Faults'): Promise<Tenant> {
    const t = await newTenant(stack, name);
    organizations.push(t.organizationId);
    return t;
  }

  async function project(t: Tenant, name: string): Promise<string> {
    const res = await stack.http().post('/projects').set(t.auth).send({ name }).expect(201);
    return res.body.project.id as string;
  }

  async function webhookIn(t: Tenant, projectId: string, url: string, events = ['baseline.drift_detected']): Promise<string> {
    const res = await stack.http().post(`/projects/${projectId}/webhooks`).set(t.auth).send({ url, events }).expect(201);
    return res.body.webhook.id as string;
  }

  async function publish(t: Tenant, projectId: string, extra: Record<string, unknown> = {}, event = 'baseline.drift_detected'): Promise<string> {
    const res = await stack.http().post(`/projects/${projectId}/events`).set(t.auth).send({ event, data: documented(event, extra) }).expect(202);
    return res.body.event.id as string;
  }

  /** Publishes `count` events, at most `parallel` at once, round-robin over the projects. */
  async function publishMany(t: Tenant, projectIds: string[], count: number, parallel: number, pauseMs = 0): Promise<void> {
    let next = 0;
    await Promise.all(
      Array.from({ length: parallel }, async () => {
        while (next < count) {
          const n = next++;
          await publish(t, projectIds[n % projectIds.length], { n });
          if (pauseMs) await sleep(pauseMs);
        }
      }),
    );
  }

  async function deliveriesOf(webhookIds: string[]): Promise<DeliveryRow[]> {
    const { rows } = await db.query<DeliveryRow>(
      `SELECT id, webhook_id, event_id, status::text AS status, attempt_count, next_attempt_at, lease_until
         FROM deliveries WHERE webhook_id = ANY($1) ORDER BY id`,
      [webhookIds],
    );
    return rows;
  }

  async function attemptsOf(deliveryIds: string[]): Promise<AttemptRow[]> {
    const { rows } = await db.query<AttemptRow>(
      `SELECT delivery_id, attempt, created_at, response_status, error_code FROM attempts
        WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt`,
      [deliveryIds],
    );
    return rows;
  }

  /** Waits until every delivery of these webhooks has a final status, and returns them. */
  async function allFinished(webhookIds: string[], expected: number, timeoutMs: number): Promise<DeliveryRow[]> {
    return eventually(
      async () => {
        const rows = await deliveriesOf(webhookIds);
        return rows.length === expected && rows.every((r) => r.status !== 'pending') ? rows : undefined;
      },
      timeoutMs,
      250,
    ).catch(async (err: Error) => {
      const rows = await deliveriesOf(webhookIds);
      const byStatus: Record<string, number> = {};
      for (const row of rows) byStatus[row.status] = (byStatus[row.status] ?? 0) + 1;
      const pending = await Promise.all(rows.filter((r) => r.status === 'pending').slice(0, 5).map(describePending));
      throw new Error(
        `${err.message}: ${rows.length} of ${expected} deliveries exist, by status ${JSON.stringify(byStatus)}; pending: ${JSON.stringify(pending)}`,
      );
    });
  }

  /** A stuck delivery's row and the state of the queue jobs that could carry its next attempt. */
  async function describePending(row: DeliveryRow) {
    const queue = new Queue('delivery', { prefix: stack.queuePrefix, connection: redisConnection() });
    try {
      const jobId = `${row.id}-${row.attempt_count + 1}`;
      return {
        id: row.id,
        attempts: row.attempt_count,
        nextAttemptAt: row.next_attempt_at?.toISOString() ?? null,
        leaseUntil: row.lease_until?.toISOString() ?? null,
        now: new Date().toISOString(),
        jobs: { [jobId]: await queue.getJobState(jobId), [`${jobId}-swept`]: await queue.getJobState(`${jobId}-swept`) },
      };
    } finally {
      await queue.close();
    }
  }

  async function deliveryDetail(t: Tenant, deliveryId: string) {
    const res = await stack.http().get(`/deliveries/${deliveryId}`).set(t.auth).expect(200);
    return res.body.delivery as { status: string; attempts: Array<Record<string, any>>; lastStatusCode: number | null };
  }

  /** The recorded attempts of a webhook's only delivery, once there are at least `count`. */
  async function attemptsOfOnlyDelivery(t: Tenant, webhookId: string, count: number, timeoutMs = 10_000) {
    return eventually(
      async () => {
        const [row] = await deliveriesOf([webhookId]);
        if (!row || row.attempt_count < count) return undefined;
        return { row, delivery: await deliveryDetail(t, row.id) };
      },
      timeoutMs,
      50,
    );
  }

  /** Waits for a receiver's requests; on timeout, says where the deliveries are and what the worker logged. */
  async function waitForRequests(rx: Receiver, count: number, timeoutMs: number, webhookIds: string[], worker: WorkerProcess): Promise<void> {
    await rx.waitFor(count, timeoutMs).catch(async (err: Error) => {
      const rows = await deliveriesOf(webhookIds);
      const busy = await db.query(
        `SELECT pid, state, wait_event_type, left(query, 100) AS query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
      );
      throw new Error(
        `${err.message}; deliveries ${JSON.stringify(rows)}; sessions ${JSON.stringify(busy.rows)}; ${worker.name} output:\n${worker.output().slice(-3000)}`,
      );
    });
  }

  /** Runs `work` while a session of the test holds ACCESS EXCLUSIVE on `table`: worker statements that need it wait. */
  async function withTableLocked<T>(table: string, work: () => Promise<T>): Promise<T> {
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      return await work();
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
      client.release();
    }
  }

  /** Backends of other sessions waiting for a lock, once there are at least `atLeast`, with their statements. */
  async function statementsWaitingForLocks(atLeast = 1): Promise<Array<{ pid: number; query: string; waits_for: string }>> {
    const sql = `SELECT a.pid, left(a.query, 200) AS query,
                        (SELECT string_agg(l.locktype || ' ' || coalesce(l.relation::regclass::text, '') || ' ' || l.mode, ', ')
                           FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted) AS waits_for
                   FROM pg_stat_activity a
                  WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() AND a.wait_event_type = 'Lock'`;
    return eventually(async () => {
      const { rows } = await db.query<{ pid: number; query: string; waits_for: string }>(sql);
      return rows.length >= atLeast ? rows : undefined;
    }, 10_000);
  }

  /**
   * Postgres notices that a killed client is gone only when it next writes to it, so a statement the
   * client sent just before dying would still run once the lock is released. Ending those backends
   * gives the state of a kill a moment earlier, before the statement was sent.
   */
  async function terminateOrphans(blocked: Array<{ pid: number }>): Promise<void> {
    for (const { pid } of blocked) await db.query('SELECT pg_terminate_backend($1)', [pid]);
  }

  /** SCAN + DEL of one pattern (never FLUSHALL: this Redis is shared). Returns how many keys went. */
  async function deleteKeys(pattern: string): Promise<number> {
    let cursor = '0';
    let deleted = 0;
    for (let rounds = 0; rounds < 10_000; rounds++) {
      const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      if (keys.length > 0) deleted += await redis.del(...keys);
      cursor = nextCursor;
      if (cursor === '0') break;
    }
    return deleted;
  }

  it(
    'delivers every event of a stream when the worker is killed with SIGKILL mid-stream and restarted, sending only a few twice',
    async () => {
      const rx = await receiver();
      rx.responder = (_req, _i, res) => answerAfter(res, 20 + Math.floor(Math.random() * 31));
      const t = await tenant();
      // Three webhooks, so that up to 30 attempts are in flight at once (the per-webhook cap is 10).
      const projects = [t.projectId, await project(t, 'stream-b'), await project(t, 'stream-c')];
      const webhooks = await Promise.all(projects.map((p, i) => webhookIn(t, p, `${rx.url}/stream-${i}`)));
      const concurrency = 20;
      const first = await startWorker('worker-killed', { WORKER_CONCURRENCY: String(concurrency) });

      const total = 300;
      // A stream: about 100 events a second, still going on while the worker is dead and restarting.
      const publishing = publishMany(t, projects, total, 5, 40);
      await rx.waitFor(100, 20_000);
      const exit = await first.signal('SIGKILL');
      const killedAt = Date.now();
      const receivedAtKill = rx.requests.length;
      expect(exit.signal).toBe('SIGKILL');
      const second = await startWorker('worker-restarted', { WORKER_CONCURRENCY: String(concurrency) });
      await publishing;
      const publishedAfterRestart = rx.requests.length;

      // Attempts in flight at the kill hold their lease (DELIVERY_TIMEOUT + 30 s); then the sweeper takes them back.
      // A job taken but not yet leased waits for BullMQ's stall detection instead (see the next test), so
      // "eventually" here is bounded by the lock plus a stalled interval, not by the lease alone.
      const rows = await allFinished(webhooks, total, DELIVERY_TIMEOUT_MS + LEASE_MARGIN_MS + STALLED_INTERVAL_MS + 12_000);
      const recoveredAfter = Date.now() - killedAt;
      expect(rows.filter((r) => r.status !== 'succeeded')).toEqual([]);

      const received = new Map<string, number>();
      for (const req of rx.requests) received.set(deliveryIdOf(req), (received.get(deliveryIdOf(req)) ?? 0) + 1);
      const neverReceived = rows.filter((r) => !received.has(r.id)).map((r) => r.id);
      expect(neverReceived).toEqual([]);
      const sentTwice = [...received.values()].filter((n) => n > 1).length;
      report(
        `kill -9: ${total} deliveries, killed after ${receivedAtKill} received, ${publishedAfterRestart} received when publishing ended; ` +
          `${rx.requests.length} requests in all, ${sentTwice} deliveries sent more than once (worker concurrency ${concurrency}); ` +
          `all succeeded ${recoveredAfter} ms after the kill`,
      );
      expect(sentTwice).toBeLessThanOrEqual(concurrency);
      // Nothing failed, so a resent delivery is still attempt 1, recorded once.
      expect(new Set(rx.requests.map(attemptOf))).toEqual(new Set(['1']));
      const attempts = await attemptsOf(rows.map((r) => r.id));
      expect(attempts).toHaveLength(total);
      expect(attempts.every((a) => a.attempt === 1 && a.response_status === 200)).toBe(true);
      expect(second.child.exitCode).toBeNull();
    },
    120_000,
  );

  it(
    'sends a delivery again within its lease time when the worker was killed after taking its job but before leasing the row',
    async () => {
      const rx = await receiver();
      const t = await tenant();
      const webhook = await webhookIn(t, t.projectId, `${rx.url}/taken`);
      // Published with no worker running: the job waits in Redis.
      await publish(t, t.projectId);
      const [row] = await deliveriesOf([webhook]);
      const jobId = `${row.id}-1`;
      const queue = new Queue('delivery', { prefix: stack.queuePrefix, connection: redisConnection() });
      try {
        // Hold the worker between taking the job and leasing the row (its claim, or the read before
        // it, needs the webhooks table), then kill it there.
        const killedAt = await withTableLocked('webhooks', async () => {
          const worker = await startWorker('worker-killed-before-lease');
          await eventually(async () => ((await queue.getJobState(jobId)) === 'active' ? true : undefined), 10_000);
          const blocked = await statementsWaitingForLocks();
          await worker.signal('SIGKILL');
          const at = Date.now();
          await terminateOrphans(blocked);
          return at;
        });
        const [afterKill] = await deliveriesOf([webhook]);
        expect({ status: afterKill.status, attempts: afterKill.attempt_count, leased: afterKill.lease_until !== null }).toEqual({
          status: 'pending',
          attempts: 0,
          leased: false,
        });
        expect(await queue.getJobState(jobId)).toBe('active');

        await startWorker('worker-after-kill');
        // A lease would have run out DELIVERY_TIMEOUT + 30 s after the claim; the sweeper looks every
        // SWEEP_INTERVAL at rows due for longer than its grace (1 s each here). A delivery whose dead
        // worker never even leased it should not wait longer than one that was leased.
        const bound = DELIVERY_TIMEOUT_MS + LEASE_MARGIN_MS + 6_000;
        const sent = await rx.waitFor(1, bound - (Date.now() - killedAt)).then(
          () => true,
          () => false,
        );
        if (!sent) {
          throw new Error(
            `not sent again within ${bound} ms of the kill: ${JSON.stringify(await describePending((await deliveriesOf([webhook]))[0]))}. ` +
              'The sweeper leaves a due, unleased delivery alone while its job is "active", although the worker holding that job is dead, ' +
              `so it waits for BullMQ's stall detection: the job lock (${DELIVERY_TIMEOUT_MS + LEASE_MARGIN_MS} ms) plus up to two stalled intervals (${STALLED_INTERVAL_MS} ms each).`,
          );
        }
        report(`killed before lease: sent again ${rx.requests[0].at - killedAt} ms after the kill`);
        const [done] = await allFinished([webhook], 1, 5_000);
        expect(done.status).toBe('succeeded');
      } finally {
        await queue.close();
      }
    },
    60_000,
  );

  it('never leaves a delivery ended by a 410 while its webhook stays enabled, when the worker is killed just after recording the attempt', async () => {
    const rx = await receiver();
    rx.responder = (_req, _i, res) => answerAfter(res, 500, 410, 'gone');
    const t = await tenant();
    const webhook = await webhookIn(t, t.projectId, `${rx.url}/gone-then-crash`);
    const worker = await startWorker('worker-killed-after-410');
    await publish(t, t.projectId);
    await waitForRequests(rx, 1, 10_000, [webhook], worker);
    // Disabling the webhook needs the webhooks table; recording the attempt need not. With that
    // table locked, a worker that records and disables in separate statements is killed between
    // them; one that does both at once is killed before either.
    const blocked = await withTableLocked('webhooks', async () => {
      await sleep(1000);
      const waiting = await statementsWaitingForLocks(1);
      await worker.signal('SIGKILL');
      await terminateOrphans(waiting);
      return waiting;
    });
    await startWorker('worker-after-410-crash');
    // Time for a sweep or two to repair whatever a repair would be.
    await sleep(2500);
    const [row] = await deliveriesOf([webhook]);
    const res = await stack.http().get(`/webhooks/${webhook}`).set(t.auth).expect(200);
    const state = { delivery: row.status, attempts: row.attempt_count, webhookEnabled: res.body.webhook.enabled, disabledReason: res.body.webhook.disabledReason };
    report(`410 then kill -9: ${JSON.stringify(state)}; killed while waiting: ${JSON.stringify(blocked.map((b) => `${b.query.replace(/\s+/g, ' ').trim().slice(0, 50)}... (${b.waits_for})`))}`);
    // Either the 410 was not recorded yet (the delivery is retried and the webhook disabled then), or both happened.
    if (row.status === 'pending') {
      expect(state).toMatchObject({ attempts: 0, webhookEnabled: true });
    } else {
      expect(state).toEqual({ delivery: 'failed', attempts: 1, webhookEnabled: false, disabledReason: 'gone' });
    }
  }, 30_000);

  it(
    'delivers every pending and retry-scheduled delivery after the queue keys are deleted from Redis, none before its time and with attempt numbers continuing',
    async () => {
      const retrying = await receiver();
      const seen = new Set<string>();
      // First attempt of each delivery: come back in 4 s. Every later attempt succeeds.
      retrying.responder = (req) => {
        const id = deliveryIdOf(req);
        if (seen.has(id)) return { status: 200 };
        seen.add(id);
        return { status: 503, headers: { 'retry-after': '4' } };
      };
      const fresh = await receiver();
      fresh.responder = (_req, _i, res) => answerAfter(res, 300);
      const t = await tenant();
      const freshProject = await project(t, 'fresh');
      const retryHook = await webhookIn(t, t.projectId, `${retrying.url}/retry`);
      const freshHook = await webhookIn(t, freshProject, `${fresh.url}/fresh`);
      const worker = await startWorker('worker-redis-loss');

      await publishMany(t, [t.projectId], 20, 5);
      const scheduled = await eventually(
        async () => {
          const rows = await deliveriesOf([retryHook]);
          return rows.length === 20 && rows.every((r) => r.attempt_count === 1 && r.status === 'pending' && r.lease_until === null) ? rows : undefined;
        },
        10_000,
        100,
      );
      // 60 deliveries to an endpoint that takes 300 ms, 10 at a time: most are still queued below.
      await publishMany(t, [freshProject], 60, 10);
      await sleep(300);
      const notYetAttempted = (await deliveriesOf([freshHook])).filter((r) => r.status === 'pending' && r.attempt_count === 0).length;
      const dueAt = new Map(scheduled.map((r) => [r.id, r.next_attempt_at!.getTime()]));

      const deleted = await deleteKeys(`${stack.queuePrefix}:delivery:*`);
      const deletedAt = Date.now();
      report(`redis loss: deleted ${deleted} queue keys with 20 deliveries waiting for attempt 2 and ${notYetAttempted} of 60 not yet attempted`);
      expect(deleted).toBeGreaterThan(0);
      expect(notYetAttempted).toBeGreaterThan(0);
      expect(Math.min(...dueAt.values())).toBeGreaterThan(deletedAt);

      const rows = await allFinished([retryHook, freshHook], 80, 30_000);
      expect(rows.filter((r) => r.status !== 'succeeded')).toEqual([]);

      // Every retried delivery: attempt 1, then attempt 2 (not 1 again), never before its next_attempt_at.
      const lateness: number[] = [];
      for (const row of rows.filter((r) => r.webhook_id === retryHook)) {
        const requests = retrying.requests.filter((req) => deliveryIdOf(req) === row.id);
        expect({ id: row.id, attempts: requests.map(attemptOf) }).toEqual({ id: row.id, attempts: ['1', '2'] });
        const early = dueAt.get(row.id)! - requests[1].at;
        expect({ id: row.id, msEarly: Math.max(0, early - DUE_SLACK_MS) }).toEqual({ id: row.id, msEarly: 0 });
        lateness.push(-early);
      }
      report(`redis loss: attempt 2 came ${Math.min(...lateness)}..${Math.max(...lateness)} ms after it was due`);
      expect(Math.max(...lateness)).toBeLessThan(10_000);
      const retriedAttempts = await attemptsOf(rows.filter((r) => r.webhook_id === retryHook).map((r) => r.id));
      expect(retriedAttempts.map((a) => a.attempt)).toEqual(Array.from({ length: 20 }, () => [1, 2]).flat());

      // Every delivery that was only queued: received, as attempt 1, and recorded once.
      const freshRows = rows.filter((r) => r.webhook_id === freshHook);
      const freshReceived = new Set(fresh.requests.map(deliveryIdOf));
      expect(freshRows.filter((r) => !freshReceived.has(r.id)).map((r) => r.id)).toEqual([]);
      expect(new Set(fresh.requests.map(attemptOf))).toEqual(new Set(['1']));
      expect((await attemptsOf(freshRows.map((r) => r.id))).every((a) => a.attempt === 1)).toBe(true);
      expect(worker.child.exitCode).toBeNull();
    },
    60_000,
  );

  it(
    'sends each of a few hundred deliveries exactly once when two worker processes share one queue',
    async () => {
      const rx = await receiver();
      rx.responder = (_req, _i, res) => answerAfter(res, 5 + Math.floor(Math.random() * 10));
      const t = await tenant();
      const projects = [t.projectId, await project(t, 'pair-b'), await project(t, 'pair-c')];
      const webhooks = await Promise.all(projects.map((p, i) => webhookIn(t, p, `${rx.url}/pair-${i}`)));
      const workers = await Promise.all([startWorker('worker-one'), startWorker('worker-two')]);

      const total = 300;
      await publishMany(t, projects, total, 8);
      const rows = await allFinished(webhooks, total, 30_000);
      expect(rows.filter((r) => r.status !== 'succeeded')).toEqual([]);
      // Time for a second copy to show up, if one were on its way.
      await sleep(1500);

      const counts = new Map<string, number>();
      for (const req of rx.requests) counts.set(deliveryIdOf(req), (counts.get(deliveryIdOf(req)) ?? 0) + 1);
      const twice = [...counts.entries()].filter(([, n]) => n > 1);
      const perWorker = await Promise.all(workers.map(async (w) => metricTotal(await w.metrics(), 'bellhop_delivery_attempts_total')));
      report(`two workers: ${rx.requests.length} requests for ${total} deliveries; attempts per worker ${perWorker.join(' + ')}`);
      expect(twice).toEqual([]);
      expect(rows.filter((r) => !counts.has(r.id))).toEqual([]);
      expect(rx.requests).toHaveLength(total);
      expect(await attemptsOf(rows.map((r) => r.id))).toHaveLength(total);
    },
    60_000,
  );

  describe('against hostile endpoints', () => {
    let worker: WorkerProcess;
    let t: Tenant;

    beforeAll(async () => {
      // One tenant owns every hostile endpoint here: its share of the worker holds both endpoints'
      // caps (10 each) at once, so the memory test loads the worker with both kinds together.
      worker = await startWorkerProcess({ name: 'worker-hostile', env: workerEnv({ MAX_IN_FLIGHT_PER_ORGANIZATION: '20' }) });
      t = await tenant('Hostile');
    }, 60_000);

    afterAll(async () => {
      await worker?.signal('SIGKILL');
    });

    it('records an attempt to an endpoint that never answers as a timeout within the delivery timeout', async () => {
      const rx = await receiver();
      rx.responder = () => undefined; // never answers
      const { webhook } = await createWebhook(stack, t, `${rx.url}/silent`);
      const publishedAt = Date.now();
      await publish(t, t.projectId);
      const { delivery } = await attemptsOfOnlyDelivery(t, webhook.id, 1, DELIVERY_TIMEOUT_MS + 5000);
      const recordedAfter = Date.now() - publishedAt;
      const [first] = delivery.attempts;
      report(`never answers: attempt 1 took ${first.responseTimeMs} ms, recorded ${recordedAfter} ms after publishing`);
      expect(first.error).toMatchObject({ code: 'timeout' });
      expect(first.response).toBeNull();
      expect(first.responseTimeMs).toBeGreaterThanOrEqual(DELIVERY_TIMEOUT_MS - 100);
      expect(first.responseTimeMs).toBeLessThan(DELIVERY_TIMEOUT_MS + 500);
      expect(recordedAfter).toBeLessThan(DELIVERY_TIMEOUT_MS + 1500);
      expect(rx.requests.length).toBeGreaterThanOrEqual(1);
    });

    it('ends an attempt to an endpoint that drips a byte every 200 ms as a timeout at the total deadline', async () => {
      const rx = await receiver();
      const closedAfter: number[] = [];
      rx.responder = (req, _i, res) => drip(res, () => closedAfter.push(Date.now() - req.at));
      const { webhook } = await createWebhook(stack, t, `${rx.url}/drip`);
      const publishedAt = Date.now();
      await publish(t, t.projectId);
      const { delivery } = await attemptsOfOnlyDelivery(t, webhook.id, 1, DELIVERY_TIMEOUT_MS + 5000);
      const recordedAfter = Date.now() - publishedAt;
      const [first] = delivery.attempts;
      report(`drip: attempt 1 took ${first.responseTimeMs} ms, recorded ${recordedAfter} ms after publishing, connection closed after ${closedAfter[0]} ms`);
      expect(first.error).toMatchObject({ code: 'timeout' });
      expect(first.responseTimeMs).toBeGreaterThanOrEqual(DELIVERY_TIMEOUT_MS - 100);
      expect(first.responseTimeMs).toBeLessThan(DELIVERY_TIMEOUT_MS + 500);
      expect(recordedAfter).toBeLessThan(DELIVERY_TIMEOUT_MS + 1500);
      // The worker hung up on the drip at its deadline instead of reading forever.
      expect(closedAfter[0]).toBeLessThan(DELIVERY_TIMEOUT_MS + 500);
    });

    it('keeps at most 64 KiB of a 10 MB response body and marks it truncated', async () => {
      const rx = await receiver();
      rx.responder = (_req, _i, res) => bigBody(res, 200);
      const { webhook } = await createWebhook(stack, t, `${rx.url}/big`);
      await publish(t, t.projectId);
      const { delivery } = await attemptsOfOnlyDelivery(t, webhook.id, 1);
      const [first] = delivery.attempts;
      expect(first.error).toBeNull();
      expect(first.response).toMatchObject({ statusCode: 200, bodyTruncated: true });
      const stored = Buffer.byteLength(first.response.body as string, 'utf8');
      report(`10 MB body: stored ${stored} bytes, truncated ${first.response.bodyTruncated}`);
      expect(stored).toBeGreaterThan(0);
      expect(stored).toBeLessThanOrEqual(MAX_STORED_BODY_BYTES);
      expect(delivery.status).toBe('succeeded');
    });

    it('treats a 302 as a failed attempt and never follows it to the redirect target', async () => {
      const target = await receiver();
      const rx = await receiver();
      rx.responder = () => ({ status: 302, headers: { location: `${target.url}/target` } });
      const { webhook } = await createWebhook(stack, t, `${rx.url}/moved`);
      await publish(t, t.projectId);
      // Two attempts, so that the first one's failure is known to have been scheduled for a retry.
      const { delivery } = await attemptsOfOnlyDelivery(t, webhook.id, 2);
      expect(delivery.status).not.toBe('succeeded');
      expect(delivery.lastStatusCode).toBe(302);
      for (const attempt of delivery.attempts) {
        expect(attempt.response).toMatchObject({ statusCode: 302 });
        expect(attempt.response.headers.location).toBe(`${target.url}/target`);
      }
      expect(target.requests).toHaveLength(0);
    });

    it('disables the webhook with reason gone on a 410 and makes no further attempt', async () => {
      const rx = await receiver();
      rx.responder = () => ({ status: 410, body: 'gone' });
      const { webhook } = await createWebhook(stack, t, `${rx.url}/gone`);
      await publish(t, t.projectId);
      const failed = await eventually(async () => {
        const [row] = await deliveriesOf([webhook.id]);
        return row?.status === 'failed' ? row : undefined;
      }, 10_000);
      const res = await stack.http().get(`/webhooks/${webhook.id}`).set(t.auth).expect(200);
      expect(res.body.webhook).toMatchObject({ enabled: false, disabledReason: 'gone' });
      // Longer than the first two waits of the schedule together: no retry comes.
      await sleep(1000);
      expect(rx.requests).toHaveLength(1);
      const detail = await deliveryDetail(t, failed.id);
      expect(detail).toMatchObject({ status: 'failed', lastStatusCode: 410, nextAttemptAt: null });
      expect(detail.attempts).toHaveLength(1);
      // New events do not fan out to a disabled webhook.
      await publish(t, t.projectId);
      await sleep(300);
      expect(rx.requests).toHaveLength(1);
    });

    it('waits at least Retry-After before the next attempt after a 429, although the schedule says 200 ms', async () => {
      const rx = await receiver();
      rx.responder = (_req, index) => (index === 0 ? { status: 429, headers: { 'retry-after': '2' } } : { status: 200 });
      const { webhook } = await createWebhook(stack, t, `${rx.url}/limited`);
      await publish(t, t.projectId);
      const { row } = await attemptsOfOnlyDelivery(t, webhook.id, 1);
      await rx.waitFor(2, 8000);
      const gap = rx.requests[1].at - rx.requests[0].at;
      report(`429 Retry-After 2: next attempt ${gap} ms later`);
      expect(gap).toBeGreaterThanOrEqual(2000 - DUE_SLACK_MS);
      const done = await eventually(async () => {
        const [r] = await deliveriesOf([webhook.id]);
        return r.status === 'succeeded' ? r : undefined;
      });
      expect(done.attempt_count).toBe(2);
      const attempts = await attemptsOf([row.id]);
      expect(attempts.map((a) => [a.attempt, a.response_status])).toEqual([
        [1, 429],
        [2, 200],
      ]);
      expect(attempts[1].created_at.getTime() - attempts[0].created_at.getTime()).toBeGreaterThanOrEqual(2000 - DUE_SLACK_MS);
      expect(rx.requests.map(attemptOf)).toEqual(['1', '2']);
    });

    it('keeps the worker memory bounded while 10 MB answers and dripping endpoints are attempted', async () => {
      const big = await receiver();
      big.responder = (_req, _i, res) => bigBody(res, 500); // a failure, so every delivery is retried
      const dripping = await receiver();
      dripping.responder = (_req, _i, res) => drip(res);
      const project = t.projectId;
      const hooks = [
        (await createWebhook(stack, t, `${big.url}/big`, ['baseline.uploaded'])).webhook.id,
        (await createWebhook(stack, t, `${dripping.url}/drip`, ['baseline.uploaded'])).webhook.id,
      ];
      // A warm worker's resting size is the baseline.
      const samples: number[] = [];
      for (let i = 0; i < 5; i++) {
        samples.push(worker.rssBytes());
        await sleep(100);
      }
      const baseline = percentile(samples, 50);
      // 10 events fan out to both webhooks: 20 deliveries, 10 in flight per endpoint (the cap).
      for (let i = 0; i < 10; i++) await publish(t, project, { i }, 'baseline.uploaded');
      let peak = baseline;
      const until = Date.now() + 7000;
      while (Date.now() < until) {
        peak = Math.max(peak, worker.rssBytes());
        await sleep(100);
      }
      const rows = await deliveriesOf(hooks);
      const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
      report(
        `memory: baseline ${mb(baseline)} MB, peak ${mb(peak)} MB (+${mb(peak - baseline)} MB) over ${big.requests.length} 10 MB answers ` +
          `and ${dripping.requests.length} drips; ${rows.reduce((n, r) => n + r.attempt_count, 0)} attempts recorded`,
      );
      expect(big.requests.length).toBeGreaterThanOrEqual(20);
      expect(dripping.requests.length).toBeGreaterThanOrEqual(10);
      expect(peak - baseline).toBeLessThan(100 * 1024 * 1024);
      expect(worker.child.exitCode).toBeNull();
    }, 30_000);
  });

  it('refuses a host name that resolves to 127.0.0.1 when private destinations are not allowed, and never connects to it', async () => {
    expect((await lookup('localhost', { all: true })).map((a) => a.address)).toContain('127.0.0.1');
    const rx = await receiver();
    const t = await tenant();
    const port = new URL(rx.url).port;
    // The API here allows private destinations, so it accepts the URL; the worker does not.
    const { webhook } = await createWebhook(stack, t, `http://localhost:${port}/internal`);
    await startWorker('worker-public-only', { ALLOW_PRIVATE_DESTINATIONS: 'false' });
    await publish(t, t.projectId);
    const { delivery } = await attemptsOfOnlyDelivery(t, webhook.id, 2);
    for (const attempt of delivery.attempts) {
      expect(attempt.error).toMatchObject({ code: 'blocked_address' });
      expect(attempt.response).toBeNull();
      expect(attempt.error.message).not.toContain('127.0.0.1');
    }
    expect(rx.requests).toHaveLength(0);
  }, 30_000);

  /**
   * One tenant floods endpoints that never answer (each attempt holds a worker slot until
   * DELIVERY_TIMEOUT), then another tenant publishes one event every 100 ms to a healthy endpoint.
   * Returns the healthy tenant's publish-to-receipt latencies and the most attempts ever in flight
   * to one slow endpoint.
   */
  async function fairnessRun(label: string, slowEndpoints: number, slowDeliveries: number) {
    const slow = await receiver();
    const inFlight = new Map<string, number>();
    const maxInFlight = new Map<string, number>();
    slow.responder = (req, _i, res) => {
      const n = (inFlight.get(req.url) ?? 0) + 1;
      inFlight.set(req.url, n);
      maxInFlight.set(req.url, Math.max(n, maxInFlight.get(req.url) ?? 0));
      res.on('close', () => inFlight.set(req.url, (inFlight.get(req.url) ?? 1) - 1));
    };
    const healthy = await receiver();
    const noisy = await tenant('Noisy');
    const calm = await tenant('Calm');
    for (let i = 0; i < slowEndpoints; i++) await webhookIn(noisy, noisy.projectId, `${slow.url}/slow-${i}`, ['baseline.uploaded']);
    await webhookIn(calm, calm.projectId, `${healthy.url}/calm`);
    const concurrency = 50;
    await startWorker(`worker-${label}`, { WORKER_CONCURRENCY: String(concurrency) });

    // Each event fans out to every slow endpoint.
    const slowEvents = Math.ceil(slowDeliveries / slowEndpoints);
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < slowEvents) {
          const n = next++;
          await publish(noisy, noisy.projectId, { n }, 'baseline.uploaded');
        }
      }),
    );
    await slow.waitFor(Math.min(concurrency, slowEndpoints * 10), 10_000);
    await sleep(500);

    const healthyEvents = 30;
    const publishedAt = new Map<string, number>();
    for (let i = 0; i < healthyEvents; i++) {
      const before = Date.now();
      publishedAt.set(await publish(calm, calm.projectId, { i }), before);
      await sleep(100);
    }
    await healthy.waitFor(healthyEvents, 10_000).catch(() => undefined);
    const waitedUntil = Date.now();
    // A delivery still missing counts with the time waited so far: a lower bound of its latency.
    const latencies = [...publishedAt.entries()].map(([eventId, at]) => {
      const req = healthy.requests.find((r) => r.headers['webhook-id'] === eventId);
      return (req ? req.at : waitedUntil) - at;
    });
    const perEndpointMax = Math.max(...maxInFlight.values());
    report(
      `${label}: ${slowEndpoints} slow endpoint(s), ${slowEvents * slowEndpoints} slow deliveries, worker concurrency ${concurrency}; ` +
        `healthy latency p50 ${percentile(latencies, 50)} ms, p95 ${percentile(latencies, 95)} ms, max ${Math.max(...latencies)} ms (at least, for any not received) ` +
        `(${healthy.requests.length}/${healthyEvents} received); ${slow.requests.length} slow attempts, at most ${perEndpointMax} in flight to one endpoint`,
    );
    return { latencies, perEndpointMax, received: healthy.requests.length, healthyEvents };
  }

  it(
    "keeps a healthy tenant's deliveries fast while one flooded endpoint of another tenant times out",
    async () => {
      const run = await fairnessRun('fairness-one-endpoint', 1, 200);
      // The cap engaged: the flooded endpoint had exactly its 10 slots, the other 40 stayed free.
      expect(run.perEndpointMax).toBe(10);
      expect(percentile(run.latencies, 95)).toBeLessThan(DELIVERY_TIMEOUT_MS / 2);
      expect(run.received).toBe(run.healthyEvents);
    },
    60_000,
  );

  it(
    "keeps a healthy tenant's deliveries fast while another tenant's 20 endpoints time out under load",
    async () => {
      const run = await fairnessRun('fairness-20-endpoints', 20, 300);
      expect(run.perEndpointMax).toBeLessThanOrEqual(10);
      // Well under one DELIVERY_TIMEOUT: a healthy delivery must not queue behind the slow tenant's attempts.
      expect(percentile(run.latencies, 95)).toBeLessThan(DELIVERY_TIMEOUT_MS / 2);
      expect(run.received).toBe(run.healthyEvents);
    },
    60_000,
  );

  it(
    'records an attempt in flight at SIGTERM exactly once, exits, and loses nothing',
    async () => {
      const rx = await receiver();
      rx.responder = (_req, _i, res) => answerAfter(res, 1000);
      const t = await tenant();
      const webhook = await webhookIn(t, t.projectId, `${rx.url}/slow`);
      const worker = await startWorker('worker-terminated');
      await publishMany(t, [t.projectId], 5, 5);
      await waitForRequests(rx, 5, 10_000, [webhook], worker);
      const inFlight = new Set(rx.requests.map(deliveryIdOf));
      // Published while the worker shuts down: these must wait for the next worker, not be lost.
      const terminatedAt = Date.now();
      const exiting = worker.signal('SIGTERM', DELIVERY_TIMEOUT_MS + 10_000);
      await publishMany(t, [t.projectId], 5, 5);
      const exit = await exiting;
      const tookMs = Date.now() - terminatedAt;
      report(`SIGTERM: exited after ${tookMs} ms with ${JSON.stringify(exit)}; ${rx.requests.length} requests received by then`);
      expect(exit.code === 0 || exit.signal === 'SIGTERM').toBe(true);

      // Before any other worker runs: each attempt that was in flight is recorded, whole, once.
      const afterExit = (await deliveriesOf([webhook])).filter((r) => inFlight.has(r.id));
      const recorded = await attemptsOf([...inFlight]);
      expect(afterExit.map((r) => ({ id: r.id, status: r.status, attempts: r.attempt_count, leased: r.lease_until !== null }))).toEqual(
        [...inFlight].sort().map((id) => ({ id, status: 'succeeded', attempts: 1, leased: false })),
      );
      expect(recorded.map((a) => [a.delivery_id, a.attempt, a.response_status, a.error_code])).toEqual(
        [...inFlight].sort().map((id) => [id, 1, 200, null]),
      );

      // A new worker delivers what was left; nothing is sent twice.
      await startWorker('worker-after-sigterm');
      const rows = await allFinished([webhook], 10, 20_000);
      expect(rows.filter((r) => r.status !== 'succeeded')).toEqual([]);
      await sleep(500);
      const ids = rx.requests.map(deliveryIdOf);
      expect(ids.length).toBe(new Set(ids).size);
      expect(new Set(ids)).toEqual(new Set(rows.map((r) => r.id)));
      expect(await attemptsOf(rows.map((r) => r.id))).toHaveLength(10);
    },
    60_000,
  );
});
