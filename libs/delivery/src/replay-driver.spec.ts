import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Logger } from '@nestjs/common';
import { BellhopConfig, loadConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { buildEnvelope, newId } from '@bellhop/domain';
import { encryptSecret, generateWebhookSecret } from '@bellhop/signing';
import { DeliveryService } from './delivery.service';
import { DeliveryStore } from './delivery.store';
import { DeliveryDispatcher, type Dispatch } from './dispatcher';
import { HttpSender } from './http-sender';
import { LocalInFlightLimiter } from './in-flight-limiter';
import { ReplayDriver, type ReplayFilter, replayMatch } from './replay-driver';
import { createTestDatabase, TestDatabase } from './testing/test-database';

/** Replay attempts to one webhook at once: half the webhook's in-flight cap (set to twice this below). */
const CAP = 3;

describe('ReplayDriver (real Postgres, stand-in queue)', () => {
  let db: TestDatabase;
  let config: BellhopConfig;
  let prisma: PrismaService;
  let store: DeliveryStore;
  let sender: HttpSender;
  let server: Server;
  let url = '';
  let dispatcher: { dispatch: jest.Mock; tryDispatch: jest.Mock };
  let service: DeliveryService;

  beforeAll(async () => {
    Logger.overrideLogger(false);
    db = await createTestDatabase();
    config = loadConfig({
      NODE_ENV: 'test', DATABASE_URL: db.url, DATABASE_POOL_SIZE: '10', DELIVERY_TIMEOUT: '2s', MAX_IN_FLIGHT_PER_WEBHOOK: String(CAP * 2),
      ALLOW_HTTP_DESTINATIONS: 'true', ALLOW_PRIVATE_DESTINATIONS: 'true',
    });
    prisma = new PrismaService(config);
    await prisma.onModuleInit();
    store = new DeliveryStore(prisma, config);
    sender = new HttpSender({ timeoutMs: config.deliveryTimeoutMs, allowPrivate: true });
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200);
        res.end('ok');
      });
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

  beforeEach(async () => {
    // Each test drives its own replays only.
    await prisma.$executeRaw`UPDATE replays SET status = 'completed' WHERE status = 'running'`;
    dispatcher = { dispatch: jest.fn().mockResolvedValue(undefined), tryDispatch: jest.fn().mockResolvedValue(null) };
    service = new DeliveryService(prisma, config, store, sender, dispatcher as unknown as DeliveryDispatcher, new LocalInFlightLimiter());
  });

  const driver = () => new ReplayDriver(prisma, config, store, dispatcher as unknown as DeliveryDispatcher, { autoStart: false });
  const dispatched = (): Dispatch[] => dispatcher.tryDispatch.mock.calls.flatMap((call) => call[0] as Dispatch[]);

  async function fixture() {
    const org = await prisma.organization.create({ data: { id: newId('organization'), name: 'Acme', plan: 'team' } });
    const project = await prisma.project.create({ data: { id: newId('project'), organizationId: org.id, name: 'p' } });
    const webhookId = newId('webhook');
    await prisma.webhook.create({
      data: {
        name: 'hook', id: webhookId, organizationId: org.id, projectId: project.id, url, events: ['*'],
        secretCiphertext: encryptSecret(generateWebhookSecret(), config.secretsKey, webhookId),
      },
    });
    /** Finished deliveries (one event each), in creation order. */
    const deliveries = async (n: number, options: { status?: string; eventType?: string; test?: boolean; webhookId?: string } = {}) => {
      const type = options.eventType ?? 'baseline.uploaded';
      const body = buildEnvelope({ event: type, timestamp: new Date(), project, data: {} });
      const ids = Array.from({ length: n }, () => [newId('event'), newId('delivery')]);
      await prisma.$executeRaw`
        WITH e AS (
          INSERT INTO events (id, organization_id, project_id, type, body, test)
          SELECT i.event_id, ${org.id}, ${project.id}, ${type}, ${body}, ${options.test ?? false}
            FROM unnest(${ids.map((x) => x[0])}::text[]) AS i(event_id)
          RETURNING id)
        INSERT INTO deliveries (id, organization_id, project_id, event_id, webhook_id, event_type, test, status, attempt_count, scheduled_attempts, next_attempt_at, completed_at)
        SELECT i.id, ${org.id}, ${project.id}, i.event_id, ${options.webhookId ?? webhookId}, ${type}, ${options.test ?? false},
               ${options.status ?? 'failed'}::text::"DeliveryStatus", 5, 5, NULL, now()
          FROM unnest(${ids.map((x) => x[0])}::text[], ${ids.map((x) => x[1])}::text[]) AS i(event_id, id)`;
      return ids.map((x) => x[1]);
    };
    /** A replay row as the API writes it: the match counted, and its newest id, in one statement. */
    const replay = async (filter: Partial<ReplayFilter> = {}) => {
      const full: ReplayFilter = { webhookId, from: new Date(Date.now() - 3_600_000), to: new Date(Date.now() + 1000), statuses: ['failed'], eventType: null, ...filter };
      const [match] = await prisma.$queryRaw<Array<{ matched: number; last_id: string | null }>>`
        SELECT count(*)::int AS matched, max(d.id) AS last_id FROM deliveries d WHERE ${replayMatch(full)}`;
      return prisma.replay.create({
        data: {
          id: newId('replay'), organizationId: org.id, projectId: project.id, webhookId: full.webhookId, fromTime: full.from, toTime: full.to,
          statuses: [...full.statuses], eventType: full.eventType, matched: match.matched, lastId: match.last_id, createdByType: 'user', createdById: 'usr_x',
        },
      });
    };
    return { org, project, webhookId, deliveries, replay };
  }

  const outstanding = (replayId: string) => store.outstandingReplayAttempts(replayId);
  const replayRow = (id: string) => prisma.replay.findUniqueOrThrow({ where: { id } });
  /** Makes the attempts of these jobs through the real claim, send and record. */
  const attemptAll = (jobs: Dispatch[]) =>
    Promise.all(jobs.map((job) => service.attempt({ deliveryId: job.deliveryId, webhookId: job.webhookId, organizationId: job.organizationId, kind: 'manual' })));

  it("shares one webhook's room between its replays, and does not count a user's manual retry as a replay's", async () => {
    const f = await fixture();
    await f.deliveries(4, { eventType: 'baseline.uploaded' });
    await f.deliveries(4, { eventType: 'baseline.drift_detected' });
    const first = await f.replay({ eventType: 'baseline.uploaded' });
    const second = await f.replay({ eventType: 'baseline.drift_detected' });
    const d = driver();
    await d.runOnce();
    await d.runOnce();
    const both = async () => (await outstanding(first.id)) + (await outstanding(second.id));
    expect(dispatched()).toHaveLength(CAP);
    expect(await both()).toBe(CAP);
    // Drained: the two go on, never more than the cap together, until both complete.
    for (let round = 0; round < 20 && (await replayRow(second.id)).status === 'running'; round += 1) {
      const before = dispatched().length;
      await attemptAll(dispatched().slice(before - Math.min(before, CAP)));
      await d.runOnce();
      expect(await both()).toBeLessThanOrEqual(CAP);
    }
    await attemptAll(dispatched());
    await d.runOnce();
    await d.runOnce();
    expect(await replayRow(first.id)).toMatchObject({ status: 'completed', queued: 4, succeeded: 4 });
    expect(await replayRow(second.id)).toMatchObject({ status: 'completed', queued: 4, succeeded: 4 });
    // A manual retry asked for later by a user is not outstanding for the replay.
    const replayed = dispatched()[0].deliveryId;
    expect(await store.requestManualAttempt(replayed, f.org.id)).toMatchObject({ kind: 'queued' });
    expect(await outstanding(first.id) + (await outstanding(second.id))).toBe(0);
  });

  it("keeps at most the cap of a replay's attempts waiting or in flight, queues each matching delivery once, and completes after the last is recorded", async () => {
    const f = await fixture();
    const matching = await f.deliveries(8);
    // Beside them, what must not match: a test delivery, another status, another webhook's.
    await f.deliveries(1, { test: true });
    await f.deliveries(2, { status: 'succeeded' });
    const other = await fixture();
    await other.deliveries(2);
    const r = await f.replay();
    expect(r.matched).toBe(8);
    const d = driver();

    const seen: string[] = [];
    for (let round = 0; round < 10; round += 1) {
      await d.runOnce();
      expect(await outstanding(r.id)).toBeLessThanOrEqual(CAP);
      // A second pass with nothing recorded meanwhile finds no room.
      const before = dispatched().length;
      await d.runOnce();
      expect(dispatched().length).toBe(before);
      const jobs = dispatched().slice(seen.length);
      expect(jobs.every((job) => job.kind === 'manual' && job.webhookId === f.webhookId && job.organizationId === f.org.id)).toBe(true);
      seen.push(...jobs.map((job) => job.deliveryId));
      if ((await replayRow(r.id)).status !== 'running') break;
      await attemptAll(jobs);
    }
    expect(seen).toEqual(matching);
    const done = await replayRow(r.id);
    expect(done).toMatchObject({ status: 'completed', matched: 8, queued: 8, succeeded: 8, failed: 0, cursor: matching[7], lastId: matching[7] });
    expect(done.completedAt).not.toBeNull();
    const attempts = await prisma.attempt.findMany({ where: { deliveryId: { in: matching } } });
    expect(attempts.map((a) => a.trigger)).toEqual(Array.from({ length: 8 }, () => 'replay'));
    const rows = await prisma.delivery.findMany({ where: { id: { in: matching } } });
    expect(rows.every((row) => row.status === 'succeeded' && row.replayId === r.id && row.manualRequestedAt === null && row.manualTrigger === null)).toBe(true);
    // Finished: later passes leave it alone.
    await d.runOnce();
    expect(dispatched()).toHaveLength(8);
  });

  it('skips a delivery whose manual attempt is already waiting, and goes on past it', async () => {
    const f = await fixture();
    const ids = await f.deliveries(4);
    expect((await store.requestManualAttempt(ids[1], f.org.id, 'manual')).kind).toBe('queued');
    const r = await f.replay();
    const d = driver();
    // The first page is the cap's worth of candidates, the skipped one among them.
    await d.runOnce();
    expect(dispatched().map((job) => job.deliveryId)).toEqual([ids[0], ids[2]]);
    expect(await replayRow(r.id)).toMatchObject({ matched: 4, queued: 2, cursor: ids[2], status: 'running' });
    await d.runOnce();
    expect(dispatched().map((job) => job.deliveryId)).toEqual([ids[0], ids[2], ids[3]]);
    expect(await replayRow(r.id)).toMatchObject({ queued: 3, cursor: ids[3], status: 'running' });
    const skipped = await prisma.delivery.findUniqueOrThrow({ where: { id: ids[1] } });
    expect(skipped).toMatchObject({ manualTrigger: 'manual', replayId: null });
  });

  it('takes only the statuses, event type and window asked for, and none made after the replay', async () => {
    const f = await fixture();
    const uploaded = await f.deliveries(2, { status: 'cancelled' });
    await f.deliveries(2, { status: 'cancelled', eventType: 'baseline.drift_detected' });
    await f.deliveries(2, { status: 'failed' });
    const r = await f.replay({ statuses: ['cancelled'], eventType: 'baseline.uploaded' });
    expect(r.matched).toBe(2);
    const later = await f.deliveries(1, { status: 'cancelled' });
    await driver().runOnce();
    expect(dispatched().map((job) => job.deliveryId)).toEqual(uploaded);
    expect(later[0] > r.lastId!).toBe(true);
    const past = await f.replay({ from: new Date(Date.now() - 7_200_000), to: new Date(Date.now() - 3_600_000) });
    expect(past).toMatchObject({ matched: 0, lastId: null });
  });

  it('lets one driver at a time step a replay: drivers racing never pass the cap nor queue a delivery twice', async () => {
    const f = await fixture();
    const ids = await f.deliveries(30);
    const r = await f.replay();
    const drivers = [driver(), driver(), driver(), driver()];
    for (let round = 0; round < 40; round += 1) {
      await Promise.all(drivers.map((d) => d.runOnce()));
      expect(await outstanding(r.id)).toBeLessThanOrEqual(CAP);
      // The steps that did run saw each other: the requests never outnumber the room.
      const waiting = await prisma.delivery.findMany({ where: { replayId: r.id, manualRequestedAt: { not: null } }, select: { id: true } });
      await prisma.$executeRaw`UPDATE deliveries SET manual_requested_at = NULL, manual_trigger = NULL WHERE id = ANY(${waiting.map((w) => w.id)}::text[])`;
      if ((await replayRow(r.id)).status !== 'running') break;
    }
    const jobs = dispatched().map((job) => job.deliveryId);
    expect(jobs).toHaveLength(30);
    expect([...jobs].sort()).toEqual(ids);
    expect(await replayRow(r.id)).toMatchObject({ status: 'completed', queued: 30 });
  });

  it('ends a replay cancelled when its webhook is disabled or deleted, and queues nothing for a cancelled replay', async () => {
    const f = await fixture();
    await f.deliveries(5);
    const first = await f.replay();
    const second = await f.replay();
    await prisma.replay.update({ where: { id: second.id }, data: { status: 'cancelled', completedAt: new Date() } });
    const d = driver();
    await d.runOnce();
    expect(dispatched()).toHaveLength(CAP);
    expect(await replayRow(second.id)).toMatchObject({ status: 'cancelled', queued: 0 });
    expect(await replayRow(first.id)).toMatchObject({ status: 'running', queued: CAP });

    await prisma.webhook.update({ where: { id: f.webhookId }, data: { enabled: false } });
    await prisma.$executeRaw`UPDATE deliveries SET manual_requested_at = NULL, manual_trigger = NULL WHERE replay_id = ${first.id}`;
    expect(await d.advance(first.id)).toEqual({ kind: 'cancelled' });
    expect(await replayRow(first.id)).toMatchObject({ status: 'cancelled', queued: CAP });
    expect(dispatched()).toHaveLength(CAP);
    // And the transition itself refuses a disabled webhook's deliveries.
    const more = await f.deliveries(1);
    expect(await store.requestReplayAttempts({ id: first.id, webhookId: f.webhookId }, more)).toEqual([]);

    // A webhook gone with its project: the replay ends too, rather than being looked at forever.
    const g = await fixture();
    await g.deliveries(2);
    const orphan = await g.replay();
    await prisma.project.delete({ where: { id: g.project.id } });
    await d.runOnce();
    expect(await replayRow(orphan.id)).toMatchObject({ status: 'cancelled', queued: 0 });
    expect(await d.runOnce()).toEqual({ running: 0, queued: 0 });
  });

  it('finds nothing to do, and dispatches nothing, when no replay runs', async () => {
    const pass = await driver().runOnce();
    expect(pass).toEqual({ running: 0, queued: 0 });
    expect(dispatcher.tryDispatch).not.toHaveBeenCalled();
  });

  it('steps a replay of 100,000 deliveries in milliseconds, at its start and near its end', async () => {
    const f = await fixture();
    const n = 100_000;
    await prisma.$executeRaw`
      WITH e AS (
        INSERT INTO events (id, organization_id, project_id, type, body)
        SELECT 'evt_big' || lpad(g::text, 8, '0'), ${f.org.id}, ${f.project.id}, 'baseline.uploaded', '{}' FROM generate_series(1, ${n}::int) g
        RETURNING id)
      INSERT INTO deliveries (id, organization_id, project_id, event_id, webhook_id, event_type, status, attempt_count, scheduled_attempts, next_attempt_at, completed_at)
      SELECT 'dlv_big' || substr(e.id, 8), ${f.org.id}, ${f.project.id}, e.id, ${f.webhookId}, 'baseline.uploaded',
             -- one in ten succeeded: the match skips them
             CASE WHEN substr(e.id, 8)::int % 10 = 0 THEN 'succeeded' ELSE 'failed' END::"DeliveryStatus", 5, 5, NULL, now()
        FROM e`;
    await prisma.$executeRawUnsafe('ANALYZE deliveries');
    const created = Date.now();
    const r = await f.replay();
    const countMs = Date.now() - created;
    expect(r.matched).toBe(90_000);
    const d = new ReplayDriver(prisma, config, store, dispatcher as unknown as DeliveryDispatcher, { autoStart: false, maxInFlightPerWebhook: 10 });

    const timeSteps = async (steps: number) => {
      const times: number[] = [];
      for (let i = 0; i < steps; i += 1) {
        const started = process.hrtime.bigint();
        const step = await d.advance(r.id);
        times.push(Number(process.hrtime.bigint() - started) / 1e6);
        expect(step).toEqual({ kind: 'queued', queued: 10 });
        // The attempts are made at once (as by a fast receiver).
        await prisma.$executeRaw`UPDATE deliveries SET manual_requested_at = NULL, manual_trigger = NULL WHERE replay_id = ${r.id} AND manual_requested_at IS NOT NULL`;
      }
      return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
    };
    const atStart = await timeSteps(50);
    // Near the end: the cursor moved on (as 89,000 deliveries later).
    await prisma.$executeRaw`UPDATE replays SET cursor = 'dlv_big' || lpad(${n - 1000}::text, 8, '0') WHERE id = ${r.id}`;
    const nearEnd = await timeSteps(50);
    console.log(`replay of ${n} deliveries: counted in ${countMs} ms; median step ${atStart.toFixed(1)} ms at the start, ${nearEnd.toFixed(1)} ms near the end`);
    // Bounds loose enough for a busy machine: a step reads a page by index from the cursor, so its
    // cost does not grow with the replay's size nor with how far it has come.
    expect(atStart).toBeLessThan(100);
    expect(nearEnd).toBeLessThan(Math.max(100, 3 * atStart));
    expect(await replayRow(r.id)).toMatchObject({ queued: 1000, status: 'running' });
  }, 120_000);
});
