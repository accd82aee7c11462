import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Logger } from '@nestjs/common';
import { Client } from 'pg';
import { BellhopConfig, loadConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { buildEnvelope, newId } from '@bellhop/domain';
import { encryptSecret, generateWebhookSecret } from '@bellhop/signing';
import type { DeliveryJob } from '@bellhop/queue';
import { DeliveryService } from './delivery.service';
import { type Claimed, DeliveryStore, isDuplicateAttempt } from './delivery.store';
import { DeliveryDispatcher } from './dispatcher';
import { HttpSender } from './http-sender';
import { LocalInFlightLimiter } from './in-flight-limiter';
import { Sweeper, SweptQueue } from './sweeper';
import { createTestDatabase, TestDatabase } from './testing/test-database';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('DeliveryStore: HOT claims, manual requests, recordings and lock order (real Postgres)', () => {
  let db: TestDatabase;
  let config: BellhopConfig;
  let prisma: PrismaService;
  let store: DeliveryStore;
  let sender: HttpSender;
  let server: Server;
  let url = '';
  let status = 500;
  let dispatcher: { dispatch: jest.Mock };
  let service: DeliveryService;

  beforeAll(async () => {
    Logger.overrideLogger(false);
    db = await createTestDatabase();
    config = loadConfig({
      NODE_ENV: 'test', DATABASE_URL: db.url, DATABASE_POOL_SIZE: '10', RETRY_SCHEDULE: '150ms,300ms', DELIVERY_TIMEOUT: '2s',
      ALLOW_HTTP_DESTINATIONS: 'true', ALLOW_PRIVATE_DESTINATIONS: 'true', SWEEP_INTERVAL: '200ms',
    });
    prisma = new PrismaService(config);
    await prisma.onModuleInit();
    store = new DeliveryStore(prisma, config);
    sender = new HttpSender({ timeoutMs: config.deliveryTimeoutMs, allowPrivate: true });
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => { res.writeHead(status); res.end('x'); });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  });

  afterAll(async () => {
    await sender?.close();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await prisma?.onModuleDestroy();
    await db?.drop();
  });

  beforeEach(() => {
    status = 500;
    dispatcher = { dispatch: jest.fn().mockResolvedValue(undefined) };
    service = new DeliveryService(prisma, config, store, sender, dispatcher as unknown as DeliveryDispatcher, new LocalInFlightLimiter());
  });

  async function fixture() {
    const org = await prisma.organization.create({ data: { id: newId('organization'), name: 'Acme', plan: 'team' } });
    const project = await prisma.project.create({ data: { id: newId('project'), organizationId: org.id, name: 'p' } });
    const webhookId = newId('webhook');
    await prisma.webhook.create({
      data: { name: 'hook',
        id: webhookId, organizationId: org.id, projectId: project.id, url, events: ['baseline.uploaded'],
        secretCiphertext: encryptSecret(generateWebhookSecret(), config.secretsKey, webhookId),
      },
    });
    const newDelivery = async () => {
      const body = buildEnvelope({ event: 'baseline.uploaded', timestamp: new Date(), project, data: { n: 1 } });
      const event = await prisma.event.create({ data: { id: newId('event'), organizationId: org.id, projectId: project.id, type: 'baseline.uploaded', body } });
      return prisma.delivery.create({
        data: { id: newId('delivery'), organizationId: org.id, projectId: project.id, eventId: event.id, webhookId, eventType: 'baseline.uploaded', nextAttemptAt: new Date() },
      });
    };
    const delivery = await newDelivery();
    return { org, project, webhookId, delivery, newDelivery };
  }

  const row = (id: string) => prisma.delivery.findUniqueOrThrow({ where: { id } });
  const attempts = (deliveryId: string) => prisma.attempt.findMany({ where: { deliveryId }, orderBy: { attempt: 'asc' } });
  const expire = (id: string) => prisma.$executeRaw`UPDATE deliveries SET lease_until = now() - interval '10 seconds' WHERE id = ${id}`;
  const job = (deliveryId: string, extra: Omit<DeliveryJob, 'deliveryId'> = {}): DeliveryJob => ({ deliveryId, ...extra });
  const result = (claimed: Claimed, code: number) => ({
    claimed, startedAt: new Date(), requestHeaders: {}, statusCode: code, responseHeaders: {}, responseBody: '', responseBodyTruncated: false,
    responseTimeMs: 1, error: null, verdict: { success: code < 300, gone: false, retryInMs: code < 300 ? null : 150 },
  });
  const dispatched = () => dispatcher.dispatch.mock.calls.flatMap((call) => call[0] as Array<{ kind?: string; requestedAt?: Date; attempt?: number }>);

  // ---------------------------------------------------------------- HOT

  it('HOT: no index of deliveries names (as key, expression or predicate) a column that a claim writes', async () => {
    const rows = await prisma.$queryRaw<Array<{ name: string; def: string }>>`
      SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       WHERE i.indrelid = 'deliveries'::regclass`;
    const offending = rows.filter((r) => /lease_token|lease_until|lease_trigger|manual_trigger/.test(r.def));
    expect(offending).toEqual([]);
  });

  it('HOT: a claim of a delivery whose heap page was filled by the fan-out insert is a HOT update', async () => {
    const f = await fixture();
    // A fan-out: deliveries inserted back to back fill their heap pages (fillfactor 100).
    const ids: string[] = [];
    for (let i = 0; i < 120; i++) ids.push((await f.newDelivery()).id);
    const target = ids[5];
    const counts = await prisma.$transaction(async (tx) => {
      const txStore = new DeliveryStore(tx as unknown as PrismaService, config);
      const claimed = await txStore.claim({ deliveryId: target, kind: 'scheduled', scheduledAttempt: 1 });
      expect(claimed).not.toBeNull();
      const [c] = await tx.$queryRaw<Array<{ upd: number; hot: number }>>`
        SELECT pg_stat_get_xact_tuples_updated('deliveries'::regclass)::int AS upd,
               pg_stat_get_xact_tuples_hot_updated('deliveries'::regclass)::int AS hot`;
      return c;
    });
    expect(counts.upd).toBe(1);
    expect(counts.hot).toBe(1);
  });

  // ---------------------------------------------------------------- manual requests

  it('manual: a request made while the manual attempt is in flight is accepted, and served after it (not merged, not lost)', async () => {
    const f = await fixture();
    expect(await store.requestManualAttempt(f.delivery.id, f.org.id)).toMatchObject({ kind: 'queued' });
    const m1 = await store.claim({ deliveryId: f.delivery.id, kind: 'manual' });
    expect(m1).toMatchObject({ trigger: 'manual' });
    // In flight: a second request is not "already waiting".
    const second = await store.requestManualAttempt(f.delivery.id, f.org.id);
    expect(second).toMatchObject({ kind: 'queued' });
    // A third one is.
    expect(await store.requestManualAttempt(f.delivery.id, f.org.id)).toEqual({ kind: 'already_waiting' });
    // The second request's own job finds the delivery leased.
    expect(await service.attempt(job(f.delivery.id, { kind: 'manual' }))).toEqual({ kind: 'skipped', reason: 'leased' });
    const r1 = await store.record(result(m1!, 500));
    expect(r1).toMatchObject({ fenced: true });
    expect(r1.manualRequestedAt?.getTime()).toBe((second as { delivery: { requestedAt: Date } }).delivery.requestedAt.getTime());
    expect(await service.attempt(job(f.delivery.id, { kind: 'manual' }))).toMatchObject({ kind: 'attempted', attempt: 2 });
    expect(await row(f.delivery.id)).toMatchObject({ manualRequestedAt: null, manualTrigger: null, leaseToken: null, scheduledAttempts: 0 });
    expect(await service.attempt(job(f.delivery.id, { kind: 'manual' }))).toEqual({ kind: 'skipped', reason: 'done' });
  });

  it('manual: the sweeper finds a claimed manual attempt whose holder died, its job redoes it, then the scheduled step follows', async () => {
    const f = await fixture();
    await store.requestManualAttempt(f.delivery.id, f.org.id);
    const dead = await store.claim({ deliveryId: f.delivery.id, kind: 'manual' });
    expect(dead).not.toBeNull();
    // While it holds the lease, a scheduled job is dropped (the holder dispatches the step)...
    expect(await service.attempt(job(f.delivery.id, { kind: 'scheduled', attempt: 1 }))).toEqual({ kind: 'skipped', reason: 'leased' });
    await expire(f.delivery.id);
    // ...and after its lease ran out, still (a lost manual attempt is redone first).
    expect(await service.attempt(job(f.delivery.id, { kind: 'scheduled', attempt: 1 }))).toEqual({ kind: 'skipped', reason: 'leased' });
    const queue = { getJobState: jest.fn(async () => 'unknown'), getJob: jest.fn(), remove: jest.fn() };
    const sweeperDispatch = { dispatch: jest.fn().mockResolvedValue(undefined) };
    const sweeper = new Sweeper(store, config, queue as unknown as SweptQueue, sweeperDispatch as unknown as DeliveryDispatcher, { autoStart: false, graceMs: 0 });
    const mine = () => sweeperDispatch.dispatch.mock.calls.flatMap((c) => c[0] as Array<{ deliveryId: string; kind?: string; key?: string; requestedAt?: Date }>).filter((d) => d.deliveryId === f.delivery.id);
    await sweeper.sweep();
    expect(mine()).toEqual([expect.objectContaining({ deliveryId: f.delivery.id, kind: 'manual', key: 'lease' })]);
    // A second sweep adds the same job id (a no-op in BullMQ).
    await sweeper.sweep();
    expect(mine()).toHaveLength(2);
    expect(new Set(mine().map((d) => d.requestedAt!.getTime())).size).toBe(1);
    const redo = await service.attempt(job(f.delivery.id, { kind: 'manual' }));
    expect(redo).toMatchObject({ kind: 'attempted', attempt: 1, fenced: true });
    expect(dispatched()).toEqual([expect.objectContaining({ attempt: 1 })]);
    expect(await row(f.delivery.id)).toMatchObject({ manualRequestedAt: null, leaseTrigger: null, scheduledAttempts: 0 });
    expect(await service.attempt(job(f.delivery.id, { kind: 'scheduled', attempt: 1 }))).toMatchObject({ kind: 'attempted', attempt: 2 });
    expect((await attempts(f.delivery.id)).map((a) => a.trigger)).toEqual(['manual', 'scheduled']);
    // Nothing is left for the sweeper.
    sweeperDispatch.dispatch.mockClear();
    await sweeper.sweep();
    expect(mine()).toEqual([]);
  });

  it('manual: a request while a scheduled attempt is in flight whose holder then dies is found by the sweeper and served once', async () => {
    const f = await fixture();
    const s = await store.claim({ deliveryId: f.delivery.id, kind: 'scheduled', scheduledAttempt: 1 });
    expect(s).not.toBeNull();
    const req = await store.requestManualAttempt(f.delivery.id, f.org.id);
    expect(req).toMatchObject({ kind: 'queued' });
    expect(await store.requestManualAttempt(f.delivery.id, f.org.id)).toEqual({ kind: 'already_waiting' });
    await expire(f.delivery.id);
    const queue = { getJobState: jest.fn(async () => 'unknown'), getJob: jest.fn(), remove: jest.fn() };
    const sd = { dispatch: jest.fn().mockResolvedValue(undefined) };
    const sweeper = new Sweeper(store, config, queue as unknown as SweptQueue, sd as unknown as DeliveryDispatcher, { autoStart: false, graceMs: 0 });
    await sweeper.sweep();
    const kinds = sd.dispatch.mock.calls.flatMap((c) => c[0] as Array<{ deliveryId: string; kind?: string; requestedAt?: Date; key?: string }>).filter((d) => d.deliveryId === f.delivery.id);
    expect(kinds).toHaveLength(2);
    expect(kinds).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'manual', key: 'swept' })]));
    expect(await service.attempt(job(f.delivery.id, { kind: 'manual' }))).toMatchObject({ kind: 'attempted', attempt: 1, fenced: true });
    // The stale scheduled holder comes back.
    expect(await store.record(result(s!, 500))).toMatchObject({ fenced: false, attempt: 2 });
    expect(await service.attempt(job(f.delivery.id, { kind: 'manual' }))).toEqual({ kind: 'skipped', reason: 'done' });
    expect(await row(f.delivery.id)).toMatchObject({ manualRequestedAt: null, manualTrigger: null });
  });

  // ---------------------------------------------------------------- recording

  it('record: a second row with an attempt\'s id or number is refused by its month\'s key, and taken for the recording\'s own first try', async () => {
    const f = await fixture();
    const insert = (id: string, attempt: number) => prisma.$executeRaw`
      INSERT INTO attempts (id, delivery_id, attempt, trigger, request_url, request_headers, response_time_ms)
      VALUES (${id}, ${f.delivery.id}, ${attempt}, 'scheduled', 'https://example.com', '{}'::jsonb, 1)`;
    const id = newId('attempt');
    await insert(id, 1);
    const sameId = await insert(id, 2).catch((err: unknown) => err);
    const sameNumber = await insert(newId('attempt'), 1).catch((err: unknown) => err);
    expect(String(sameId)).toMatch(/attempts_\d{4}_\d{2}_delivery_id_id_key/);
    expect(String(sameNumber)).toMatch(/attempts_\d{4}_\d{2}_pkey/);
    expect([isDuplicateAttempt(sameId), isDuplicateAttempt(sameNumber)]).toEqual([true, true]);
    expect(isDuplicateAttempt(new Error('duplicate key value violates unique constraint "attempts_pkey"'))).toBe(false);
    expect(await attempts(f.delivery.id)).toHaveLength(1);
  });

  it('record: a stale holder\'s recording retried after its commit reply was lost is recorded once', async () => {
    const f = await fixture();
    const stale = await store.claim({ deliveryId: f.delivery.id, kind: 'scheduled' });
    await expire(f.delivery.id);
    const current = await store.claim({ deliveryId: f.delivery.id, kind: 'scheduled' });
    expect(current).not.toBeNull();
    const item = { ...result(stale!, 500), attemptId: newId('attempt') };
    const recordMany = (store as unknown as { recordMany(items: unknown[]): Promise<Array<{ fenced: boolean; attempt: number }>> }).recordMany.bind(store);
    const [once] = await recordMany([item]);
    const [again] = await recordMany([item]);
    expect(once).toMatchObject({ fenced: false, attempt: 1 });
    expect(again.attempt).toBe(1);
    expect(await attempts(f.delivery.id)).toHaveLength(1);
    expect(await row(f.delivery.id)).toMatchObject({ attemptCount: 1, leaseToken: current!.leaseToken });
  });

  it('record: a holder and a committed retry in one batch, and the holder after its lease ran out unclaimed, are each recorded once and fenced', async () => {
    const f = await fixture();
    const g = await f.newDelivery();
    const a = await store.claim({ deliveryId: f.delivery.id, kind: 'scheduled' });
    const b = await store.claim({ deliveryId: g.id, kind: 'scheduled' });
    const itemA = { ...result(a!, 200), attemptId: newId('attempt') };
    const itemB = { ...result(b!, 500), attemptId: newId('attempt') };
    const recordMany = (store as unknown as { recordMany(items: unknown[]): Promise<Array<{ fenced: boolean; attempt: number; status: string }>> }).recordMany.bind(store);
    await recordMany([itemA]);
    await expire(g.id); // B's lease ran out, nobody claimed: B is still the holder
    const out = await recordMany([itemA, itemB]);
    expect(out).toEqual([expect.objectContaining({ fenced: true, attempt: 1, status: 'succeeded' }), expect.objectContaining({ fenced: true, attempt: 1, status: 'pending' })]);
    expect(await attempts(f.delivery.id)).toHaveLength(1);
    expect(await attempts(g.id)).toHaveLength(1);
    expect(await row(g.id)).toMatchObject({ scheduledAttempts: 1, leaseToken: null });
  });

  // ---------------------------------------------------------------- lock order (deadlocks)

  async function filler(f: Awaited<ReturnType<typeof fixture>>, n: number) {
    // Enough rows (and statistics) that plans reach deliveries by primary key, as in production.
    await prisma.$executeRaw`
      WITH e AS (
        INSERT INTO events (id, organization_id, project_id, type, body)
        SELECT 'evt_fill' || g || ${f.webhookId}, ${f.org.id}, ${f.project.id}, 'baseline.uploaded', '{}' FROM generate_series(1, ${n}::int) g
        RETURNING id)
      INSERT INTO deliveries (id, organization_id, project_id, event_id, webhook_id, event_type, status, next_attempt_at)
      SELECT 'dlv_fill' || e.id, ${f.org.id}, ${f.project.id}, e.id, ${f.webhookId}, 'baseline.uploaded', 'succeeded', NULL FROM e`;
    await prisma.$executeRawUnsafe('ANALYZE deliveries');
  }

  /** Holds both rows locked, starts `a` and `b` (each blocks on the lock), then lets both go at once. */
  async function releaseTogether(ids: string[], a: () => Promise<unknown>, b: () => Promise<unknown>) {
    let pa!: Promise<unknown>;
    let pb!: Promise<unknown>;
    await prisma.$transaction(async (tx) => {
      await tx.$queryRaw`SELECT id FROM deliveries WHERE id = ANY(${ids}::text[]) FOR UPDATE`;
      pa = a().then((v) => v, (e: Error) => e);
      pb = b().then((v) => v, (e: Error) => e);
      await sleep(300);
    }, { timeout: 10_000 });
    return Promise.all([pa, pb]);
  }

  function countErrors(s: DeliveryStore, method: 'claimManyOnce' | 'recordMany') {
    const errors: string[] = [];
    const target = s as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const original = target[method].bind(s);
    target[method] = async (...args: unknown[]) => {
      try {
        return await original(...args);
      } catch (err) {
        errors.push((err as Error).message);
        throw err;
      }
    };
    return errors;
  }

  it('lock order: a recording that moves the webhook\'s health does not wait for a publish inserting deliveries of that webhook', async () => {
    const f = await fixture();
    const claimed = await store.claim({ deliveryId: f.delivery.id, kind: 'scheduled' });
    // A publish in progress: its delivery insert holds the key-share lock the foreign key takes on the webhook.
    const publishing = new Client({ connectionString: db.url });
    await publishing.connect();
    try {
      await publishing.query('BEGIN');
      await publishing.query('SELECT 1 FROM webhooks WHERE id = $1 FOR KEY SHARE', [f.webhookId]);
      const started = Date.now();
      // The first success moves last_success_at (and a failure run's end): the webhook row is written.
      const recorded = await Promise.race([store.record(result(claimed!, 200)), sleep(3_000).then(() => 'waited')]);
      expect(recorded).toMatchObject({ fenced: true, attempt: 1 });
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      await publishing.query('ROLLBACK');
      await publishing.end();
    }
    const webhook = await prisma.webhook.findUniqueOrThrow({ where: { id: f.webhookId } });
    expect(webhook.lastSuccessAt).not.toBeNull();
    expect(webhook.lastDeliveryAt).toEqual(webhook.lastSuccessAt);
  });

  it('lock order: two workers claiming the same two deliveries in opposite batch order do not deadlock', async () => {
    const f = await fixture();
    const d2 = await f.newDelivery();
    await filler(f, 3000);
    const w1 = new DeliveryStore(prisma, config);
    const w2 = new DeliveryStore(prisma, config);
    const e1 = countErrors(w1, 'claimManyOnce');
    const e2 = countErrors(w2, 'claimManyOnce');
    const ids = [f.delivery.id, d2.id];
    const claimBoth = (s: DeliveryStore, order: string[]) => Promise.all(order.map((id) => s.claim({ deliveryId: id, kind: 'scheduled' })));
    const started = Date.now();
    await releaseTogether(ids, () => claimBoth(w1, ids), () => claimBoth(w2, [...ids].reverse()));
    const elapsed = Date.now() - started;
    expect([...e1, ...e2].filter((m) => /deadlock/i.test(m))).toEqual([]);
    expect(elapsed).toBeLessThan(1000);
  });

  it.each([
    ['the holders in batch order, the stale ones reversed', false],
    ['the holders reversed, the stale ones in batch order', true],
  ])('lock order: a worker recording two holders and a paused worker recording two stale holders of the same deliveries do not deadlock (%s)', async (_order, holdersReversed) => {
    const f = await fixture();
    const d2 = await f.newDelivery();
    await filler(f, 3000);
    const ids = [f.delivery.id, d2.id];
    const stale = await Promise.all(ids.map((id) => store.claim({ deliveryId: id, kind: 'scheduled' })));
    for (const id of ids) await expire(id);
    const current = await Promise.all(ids.map((id) => store.claim({ deliveryId: id, kind: 'scheduled' })));
    const w1 = new DeliveryStore(prisma, config);
    const w2 = new DeliveryStore(prisma, config);
    const e1 = countErrors(w1, 'recordMany');
    const e2 = countErrors(w2, 'recordMany');
    const holders = holdersReversed ? [...current].reverse() : current;
    const stales = holdersReversed ? stale : [...stale].reverse();
    await releaseTogether(
      ids,
      () => Promise.all(holders.map((c) => w1.record(result(c!, 200)))),
      () => Promise.all(stales.map((c) => w2.record(result(c!, 500)))),
    );
    // Every attempt is recorded in the end (a deadlock is retried, or the batch is split)...
    for (const id of ids) expect(await attempts(id)).toHaveLength(2);
    // ...but no statement should have waited deadlock_timeout and been aborted on the way.
    expect([...e1, ...e2].filter((m) => /deadlock/i.test(m))).toEqual([]);
  });
});
