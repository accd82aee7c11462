import { Logger } from '@nestjs/common';
import { BellhopConfig, loadConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { newId } from '@bellhop/domain';
import { metrics } from '@bellhop/observability';
import { deliveryJobId, manualJobId } from '@bellhop/queue';
import { DeliveryStore } from './delivery.store';
import { DeliveryDispatcher } from './dispatcher';
import { Sweeper, SweptQueue } from './sweeper';
import { createTestDatabase, TestDatabase } from './testing/test-database';

describe('Sweeper (real Postgres, stand-in queue)', () => {
  let db: TestDatabase;
  let config: BellhopConfig;
  let prisma: PrismaService;
  let webhookId: string;
  let organizationId: string;
  let projectId: string;
  let dispatcher: { dispatch: jest.Mock };
  let states: Map<string, string>;
  /** How far in the future each delayed job is due. */
  let delays: Map<string, number>;
  /** How long ago each active job was taken by a worker. */
  let activeFor: Map<string, number>;
  let promote: jest.Mock;
  let changePriority: jest.Mock;
  let queue: { getJobState: jest.Mock; getJob: jest.Mock; remove: jest.Mock };
  let sweeper: Sweeper;

  beforeAll(async () => {
    Logger.overrideLogger(false);
    db = await createTestDatabase();
    config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: db.url, DATABASE_POOL_SIZE: '5', SWEEP_INTERVAL: '200ms' });
    prisma = new PrismaService(config);
    await prisma.onModuleInit();
    organizationId = newId('organization');
    projectId = newId('project');
    webhookId = newId('webhook');
    await prisma.organization.create({ data: { id: organizationId, name: 'Acme', plan: 'team' } });
    await prisma.project.create({ data: { id: projectId, organizationId, name: 'p' } });
    await prisma.webhook.create({
      data: { name: 'hook', id: webhookId, organizationId, projectId, url: 'https://example.com/hook', events: ['baseline.uploaded'], secretCiphertext: 'v1.x.y.z' },
    });
  });

  afterAll(async () => {
    await prisma?.onModuleDestroy();
    await db?.drop();
  });

  beforeEach(async () => {
    await prisma.$executeRaw`TRUNCATE deliveries, events CASCADE`;
    dispatcher = { dispatch: jest.fn().mockResolvedValue(undefined) };
    states = new Map();
    delays = new Map();
    activeFor = new Map();
    promote = jest.fn().mockResolvedValue(undefined);
    changePriority = jest.fn().mockResolvedValue(undefined);
    queue = {
      getJobState: jest.fn(async (id: string) => states.get(id) ?? 'unknown'),
      getJob: jest.fn(async (id: string) => (states.has(id) ? { id, promote, changePriority, timestamp: Date.now(), delay: delays.get(id) ?? 60_000, processedOn: Date.now() - (activeFor.get(id) ?? 0) } : undefined)),
      remove: jest.fn(async (id: string) => (states.delete(id) ? 1 : 0)),
    };
    sweeper = makeSweeper();
  });

  afterEach(() => sweeper.stop());

  const makeSweeper = (options: { batchSize?: number } = {}) =>
    new Sweeper(new DeliveryStore(prisma, config), config, queue as unknown as SweptQueue, dispatcher as unknown as DeliveryDispatcher, { autoStart: false, ...options });

  async function delivery(fields: {
    ageMs?: number;
    status?: 'pending' | 'succeeded' | 'failed' | 'cancelled';
    attemptCount?: number;
    leaseMs?: number | null;
    leaseTrigger?: 'scheduled' | 'manual';
    manualAgeMs?: number;
    /** The manual request was claimed (its attempt in flight, or its holder dead). */
    manualClaimed?: boolean;
  }) {
    const eventId = newId('event');
    await prisma.event.create({ data: { id: eventId, organizationId, projectId, type: 'baseline.uploaded', body: '{}' } });
    const row = await prisma.delivery.create({
      data: {
        id: newId('delivery'),
        organizationId,
        projectId,
        eventId,
        webhookId,
        eventType: 'baseline.uploaded',
        status: fields.status ?? 'pending',
        attemptCount: fields.attemptCount ?? 0,
        scheduledAttempts: fields.attemptCount ?? 0,
        nextAttemptAt: (fields.status ?? 'pending') === 'pending' ? new Date(Date.now() - (fields.ageMs ?? 60_000)) : null,
        leaseUntil: fields.leaseMs == null ? null : new Date(Date.now() + fields.leaseMs),
        leaseToken: fields.leaseMs == null ? null : 'token',
        leaseTrigger: fields.leaseMs == null ? null : (fields.leaseTrigger ?? 'scheduled'),
        ...(fields.manualAgeMs === undefined
          ? {}
          : { manualRequestedAt: new Date(Date.now() - fields.manualAgeMs), manualTrigger: fields.manualClaimed ? null : ('manual' as const) }),
      },
    });
    return row.id;
  }

  const dispatched = () => dispatcher.dispatch.mock.calls.flatMap((call) => call[0] as Array<{ deliveryId: string; attempt: number }>);

  it('re-dispatches due pending deliveries that have no job, as the next attempt number', async () => {
    const lost = await delivery({ attemptCount: 0 });
    const retried = await delivery({ attemptCount: 2 });
    // prom-client hands back its live entries, so read the number now.
    const before = (await metrics.swept.get()).values[0]?.value ?? 0;

    const result = await sweeper.sweep();

    expect(result).toEqual({ found: 2, added: 2, promoted: 0, requeued: 0 });
    expect(dispatched()).toEqual(
      expect.arrayContaining([
        { deliveryId: lost, webhookId, organizationId, attempt: 1 },
        { deliveryId: retried, webhookId, organizationId, attempt: 3 },
      ]),
    );
    expect(queue.getJobState).toHaveBeenCalledWith(deliveryJobId(retried, 3));
    expect((await metrics.swept.get()).values[0].value - before).toBe(2);
  });

  it('re-dispatches a delivery whose lease ran out (worker killed mid-attempt)', async () => {
    const orphan = await delivery({ attemptCount: 1, leaseMs: -1000 });
    await sweeper.sweep();
    expect(dispatched()).toEqual([{ deliveryId: orphan, webhookId, organizationId, attempt: 2 }]);
  });

  it('leaves alone leased, not yet due, just due, and finished deliveries', async () => {
    await delivery({ leaseMs: 60_000 });
    await delivery({ ageMs: -60_000 });
    await delivery({ ageMs: 50 });
    await delivery({ status: 'succeeded' });
    await delivery({ status: 'failed' });
    await delivery({ status: 'cancelled' });
    expect(await sweeper.sweep()).toEqual({ found: 0, added: 0, promoted: 0, requeued: 0 });
    expect(dispatcher.dispatch).not.toHaveBeenCalled();
  });

  it('does not add a job that is already waiting, promotes a long-delayed one, and replaces a finished one', async () => {
    const waiting = await delivery({});
    const delayed = await delivery({});
    const finished = await delivery({});
    // Delayed for a moment: a job that found its webhook at the cap and backs off.
    const backingOff = await delivery({});
    states.set(deliveryJobId(waiting, 1), 'waiting');
    states.set(deliveryJobId(delayed, 1), 'delayed');
    states.set(deliveryJobId(finished, 1), 'failed');
    states.set(deliveryJobId(backingOff, 1), 'delayed');
    delays.set(deliveryJobId(backingOff, 1), 800);

    expect(await sweeper.sweep()).toEqual({ found: 4, added: 1, promoted: 1, requeued: 0 });
    expect(promote).toHaveBeenCalledTimes(1);
    expect(queue.remove).toHaveBeenCalledWith(deliveryJobId(finished, 1));
    expect(dispatched()).toEqual([{ deliveryId: finished, webhookId, organizationId, attempt: 1 }]);
  });

  it('puts a job sent back at a cap at the back of the wait list once its row has waited long behind fresh jobs', async () => {
    // Sent back at a cap, then behind fresh jobs (prioritized): due long ago, and half a minute ago.
    const starved = await delivery({ ageMs: 120_000 });
    const recent = await delivery({ ageMs: 30_000 });
    states.set(deliveryJobId(starved, 1), 'prioritized');
    states.set(deliveryJobId(recent, 1), 'prioritized');

    expect(await sweeper.sweep()).toEqual({ found: 2, added: 0, promoted: 0, requeued: 1 });
    expect(changePriority).toHaveBeenCalledTimes(1);
    expect(changePriority).toHaveBeenCalledWith({ priority: 0 });
    expect(queue.getJob).toHaveBeenCalledWith(deliveryJobId(starved, 1));
    expect(dispatcher.dispatch).not.toHaveBeenCalled();
  });

  it('adds a second job when the job is stuck active on a dead worker whose lease ran out', async () => {
    const stuck = await delivery({ attemptCount: 1, leaseMs: -1000 });
    // Just taken by a live worker: active, due a few seconds ago, not leased yet.
    const starting = await delivery({ attemptCount: 1, ageMs: 6_000 });
    // Just taken by a live worker after a minute behind a backlog: due long ago, active for a moment.
    const behindBacklog = await delivery({ attemptCount: 1, ageMs: 60_000 });
    // Taken by a worker that died before it leased the row: active for long, unleased, due long ago.
    const orphaned = await delivery({ attemptCount: 1, ageMs: 60_000 });
    states.set(deliveryJobId(stuck, 2), 'active');
    states.set(deliveryJobId(starting, 2), 'active');
    states.set(deliveryJobId(behindBacklog, 2), 'active');
    activeFor.set(deliveryJobId(behindBacklog, 2), 200);
    states.set(deliveryJobId(orphaned, 2), 'active');
    activeFor.set(deliveryJobId(orphaned, 2), 40_000);
    expect(await sweeper.sweep()).toEqual({ found: 4, added: 2, promoted: 0, requeued: 0 });
    expect(dispatched()).toEqual(
      expect.arrayContaining([
        { deliveryId: stuck, webhookId, organizationId, attempt: 2, key: 'swept' },
        { deliveryId: orphaned, webhookId, organizationId, attempt: 2, key: 'swept' },
      ]),
    );
    expect(dispatched()).toHaveLength(2);
  });

  it('sweeps once at start and then every interval until stopped', async () => {
    await delivery({});
    sweeper.start();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(dispatcher.dispatch).toHaveBeenCalledTimes(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(dispatcher.dispatch.mock.calls.length).toBeGreaterThanOrEqual(2);
    await sweeper.stop();
    const calls = dispatcher.dispatch.mock.calls.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(dispatcher.dispatch.mock.calls.length).toBe(calls);
  });

  it('keeps sweeping after a failed sweep', async () => {
    await delivery({});
    dispatcher.dispatch.mockRejectedValueOnce(new Error('redis down'));
    sweeper.start();
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(dispatcher.dispatch.mock.calls.length).toBeGreaterThanOrEqual(2);
  });

  it('finds a lost delivery behind a backlog longer than one sweep, by going on where the last sweep stopped', async () => {
    const small = makeSweeper({ batchSize: 5 });
    // Twelve deliveries legitimately waiting in the queue, due before the lost one.
    for (let i = 0; i < 12; i++) states.set(deliveryJobId(await delivery({ ageMs: 120_000 - i * 1000 }), 1), 'waiting');
    const lost = await delivery({ ageMs: 60_000 });
    const found: string[] = [];
    for (let sweep = 0; sweep < 3; sweep++) {
      await small.sweep();
      found.push(...dispatched().map((d) => d.deliveryId));
    }
    expect(found).toEqual([lost]);
  });

  it('re-dispatches a waiting manual attempt that has no job, and a manual attempt whose worker died', async () => {
    const waiting = await delivery({ status: 'failed', manualAgeMs: 60_000 });
    const queued = await delivery({ status: 'succeeded', manualAgeMs: 60_000 });
    const orphan = await delivery({ status: 'failed', manualAgeMs: 90_000, manualClaimed: true, leaseMs: -60_000, leaseTrigger: 'manual' });
    // In flight: its lease still runs.
    const inFlight = await delivery({ status: 'failed', manualAgeMs: 90_000, manualClaimed: true, leaseMs: 10_000, leaseTrigger: 'manual' });
    const fresh = await delivery({ status: 'failed', manualAgeMs: 0 });
    const row = await prisma.delivery.findUniqueOrThrow({ where: { id: queued } });
    states.set(manualJobId(queued, row.manualRequestedAt!), 'waiting');

    await sweeper.sweep();
    const ids = dispatched().map((d) => d.deliveryId);
    expect(ids.sort()).toEqual([waiting, orphan].sort());
    expect(ids).not.toContain(fresh);
    expect(ids).not.toContain(inFlight);
    expect(dispatched().every((d) => (d as { kind?: string }).kind === 'manual')).toBe(true);
  });

  it('adds at most one job for a waiting manual request, however many sweeps find it while its job backs off at the cap', async () => {
    // Its API job found the delivery leased and was dropped; the holder re-dispatched it as
    // <id>-m<ms>-a1, which keeps backing off at the webhook's cap (delayed).
    const id = await delivery({ status: 'failed', manualAgeMs: 10_000 });
    const { manualRequestedAt } = await prisma.delivery.findUniqueOrThrow({ where: { id } });
    states.set(`${manualJobId(id, manualRequestedAt!)}-a1`, 'delayed');
    dispatcher.dispatch.mockImplementation(async (items: Array<{ deliveryId: string; requestedAt: Date; key?: string }>) => {
      for (const item of items) states.set(`${manualJobId(item.deliveryId, item.requestedAt)}${item.key ? `-${item.key}` : ''}`, 'delayed');
    });
    for (let i = 0; i < 3; i++) await sweeper.sweep();
    // The holder's re-dispatch, and one sweeper job whose id does not change from sweep to sweep.
    expect([...states.keys()].filter((jobId) => jobId.startsWith(id)).sort()).toEqual([`${manualJobId(id, manualRequestedAt!)}-a1`, `${manualJobId(id, manualRequestedAt!)}-swept`]);
  });
});
