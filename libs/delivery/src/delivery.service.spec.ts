import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Logger } from '@nestjs/common';
import { BellhopConfig, loadConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { buildEnvelope, newId } from '@bellhop/domain';
import { bellwetherSignature, encryptSecret, generateWebhookSecret, standardWebhooksSignature } from '@bellhop/signing';
import type { DeliveryJob } from '@bellhop/queue';
import { DeliveryService, DeliveryServiceOptions } from './delivery.service';
import { DeliveryStore } from './delivery.store';
import { DeliveryDispatcher } from './dispatcher';
import { HttpSender } from './http-sender';
import { LocalInFlightLimiter } from './in-flight-limiter';
import type { TestAttemptAnnouncer } from './test-attempts';
import { createTestDatabase, TestDatabase } from './testing/test-database';

interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A receiver whose answer is chosen per path by the test. */
class Receiver {
  readonly received: Received[] = [];
  private readonly answers = new Map<string, (req: Received) => Answer | Promise<Answer>>();
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', async () => {
        const entry = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(parts).toString('utf8') };
        this.received.push(entry);
        const answer: Answer = await (this.answers.get(entry.path) ?? (() => ({ status: 200, body: 'ok' })))(entry);
        res.writeHead(answer.status, answer.headers ?? {});
        res.end(answer.body ?? '');
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  answer(path: string, fn: (req: Received) => Answer | Promise<Answer>): void {
    this.answers.set(path, fn);
  }

  to(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

describe('DeliveryService (real Postgres)', () => {
  let db: TestDatabase;
  let config: BellhopConfig;
  let prisma: PrismaService;
  let sender: HttpSender;
  let receiver: Receiver;
  let dispatcher: { dispatch: jest.Mock };
  let limiter: LocalInFlightLimiter;
  let service: DeliveryService;
  let pathCounter = 0;

  let store: DeliveryStore;
  const makeService = (options?: DeliveryServiceOptions) =>
    new DeliveryService(prisma, config, store, sender, dispatcher as unknown as DeliveryDispatcher, limiter, options);
  /** The job the queue would hand the worker. */
  const job = (deliveryId: string, extra: Omit<DeliveryJob, 'deliveryId'> = {}): DeliveryJob => ({ deliveryId, ...extra });

  beforeAll(async () => {
    Logger.overrideLogger(false);
    db = await createTestDatabase();
    config = loadConfig({
      NODE_ENV: 'test',
      DATABASE_URL: db.url,
      DATABASE_POOL_SIZE: '10',
      RETRY_SCHEDULE: '150ms,300ms',
      DELIVERY_TIMEOUT: '2s',
      ALLOW_HTTP_DESTINATIONS: 'true',
      ALLOW_PRIVATE_DESTINATIONS: 'true',
    });
    prisma = new PrismaService(config);
    await prisma.onModuleInit();
    store = new DeliveryStore(prisma, config);
    sender = new HttpSender({ timeoutMs: config.deliveryTimeoutMs, allowPrivate: true });
    receiver = new Receiver();
    await receiver.start();
  });

  afterAll(async () => {
    await sender?.close();
    await receiver?.stop();
    await prisma?.onModuleDestroy();
    await db?.drop();
  });

  beforeEach(() => {
    dispatcher = { dispatch: jest.fn().mockResolvedValue(undefined) };
    limiter = new LocalInFlightLimiter();
    service = makeService();
  });

  /** A fresh tenant with one webhook (own receiver path) and one pending delivery due now. */
  async function fixture(options: { test?: boolean; manual?: boolean; url?: string; previousSecret?: boolean } = {}) {
    const path = `/hook-${++pathCounter}`;
    const org = await prisma.organization.create({ data: { id: newId('organization'), name: 'Acme', plan: 'team' } });
    const project = await prisma.project.create({ data: { id: newId('project'), organizationId: org.id, name: 'my-mcp-server' } });
    const webhookId = newId('webhook');
    const secret = generateWebhookSecret();
    const previous = options.previousSecret ? generateWebhookSecret() : null;
    await prisma.webhook.create({
      data: { name: 'hook',
        id: webhookId,
        organizationId: org.id,
        projectId: project.id,
        url: options.url ?? `${receiver.url}${path}`,
        events: ['baseline.uploaded'],
        secretCiphertext: encryptSecret(secret, config.secretsKey, webhookId),
        previousSecrets: previous ? [{ ciphertext: encryptSecret(previous, config.secretsKey, webhookId), expiresAt: new Date(Date.now() + 3600_000).toISOString() }] : [],
      },
    });
    const event = await newEvent(org.id, project, options.test);
    const delivery = await newDelivery(org.id, event.id, webhookId, options);
    return { path, org, project, webhookId, secret, previous, event, delivery };
  }

  async function newEvent(organizationId: string, project: { id: string; name: string }, test = false) {
    const id = newId('event');
    const body = buildEnvelope({ event: 'baseline.uploaded', timestamp: new Date(), project, data: { baselineId: 'b1', tools: 3, note: 'héllo ✓' } });
    return prisma.event.create({ data: { id, organizationId, projectId: project.id, type: 'baseline.uploaded', body, test } });
  }

  async function newDelivery(organizationId: string, eventId: string, webhookId: string, options: { test?: boolean; manual?: boolean } = {}) {
    const { projectId } = await prisma.webhook.findUniqueOrThrow({ where: { id: webhookId } });
    return prisma.delivery.create({
      data: {
        id: newId('delivery'),
        organizationId,
        projectId,
        eventId,
        webhookId,
        eventType: 'baseline.uploaded',
        test: options.test ?? false,
        nextAttemptAt: new Date(),
        ...(options.manual ? { manualRequestedAt: new Date(), manualTrigger: 'manual' as const } : {}),
      },
    });
  }

  /** An answer of 200 that takes `ms` to come. */
  const answerOkAfter = (ms: number) => async (): Promise<Answer> => {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return { status: 200, body: 'ok' };
  };
  const deliveryRow = (id: string) => prisma.delivery.findUniqueOrThrow({ where: { id } });
  const attemptRows = (deliveryId: string) => prisma.attempt.findMany({ where: { deliveryId }, orderBy: { attempt: 'asc' } });
  const webhookRow = (id: string) => prisma.webhook.findUniqueOrThrow({ where: { id } });

  it('delivers a due delivery, signs it, and records the success', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 200, headers: { 'content-type': 'text/plain' }, body: 'received' }));

    const outcome = await service.attempt(job(f.delivery.id));

    expect(outcome).toMatchObject({ kind: 'attempted', attempt: 1, status: 'succeeded', statusCode: 200, error: null, fenced: true });
    const [got] = receiver.to(f.path);
    expect(got.body).toBe(f.event.body);
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers['user-agent']).toMatch(/^Bellhop-Webhooks\//);
    expect(got.headers['x-bellwether-event']).toBe('baseline.uploaded');
    expect(got.headers['x-bellwether-delivery']).toBe(f.delivery.id);
    expect(got.headers['x-bellwether-attempt']).toBe('1');
    expect(got.headers['x-bellwether-signature']).toBe(bellwetherSignature(f.secret, f.event.body));
    expect(got.headers['x-bellwether-signature-previous']).toBeUndefined();
    expect(got.headers['webhook-id']).toBe(f.event.id);
    const ts = Number(got.headers['webhook-timestamp']);
    expect(Math.abs(ts - Date.now() / 1000)).toBeLessThan(5);
    expect(got.headers['webhook-signature']).toBe(standardWebhooksSignature(f.secret, f.event.id, ts, f.event.body));

    const delivery = await deliveryRow(f.delivery.id);
    expect(delivery).toMatchObject({ status: 'succeeded', attemptCount: 1, lastStatusCode: 200, leaseUntil: null, nextAttemptAt: null });
    expect(delivery.completedAt).toBeInstanceOf(Date);
    expect(delivery.lastResponseTimeMs).toEqual(expect.any(Number));
    const attempts = await attemptRows(f.delivery.id);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]).toMatchObject({
      attempt: 1,
      trigger: 'scheduled',
      requestUrl: `${receiver.url}${f.path}`,
      responseStatus: 200,
      responseBody: 'received',
      responseBodyTruncated: false,
      errorCode: null,
    });
    expect(attempts[0].id).toMatch(/^att_/);
    expect((attempts[0].requestHeaders as Record<string, string>)['x-bellwether-attempt']).toBe('1');
    expect((attempts[0].responseHeaders as Record<string, string>)['content-type']).toBe('text/plain');
    expect(dispatcher.dispatch).not.toHaveBeenCalled();
  });

  it('claims and records concurrent attempts that name their webhook together, each exactly once', async () => {
    const fixtures = await Promise.all(Array.from({ length: 8 }, () => fixture()));
    for (const f of fixtures) receiver.answer(f.path, () => ({ status: 200, body: 'ok' }));
    // Two jobs for the first delivery arrive in the same batch: only one of them may send.
    const outcomes = await Promise.all([
      ...fixtures.map((f) => service.attempt(job(f.delivery.id, { webhookId: f.webhookId, organizationId: f.org.id, attempt: 1 }))),
      service.attempt(job(fixtures[0].delivery.id, { webhookId: fixtures[0].webhookId, organizationId: fixtures[0].org.id, attempt: 1 })),
    ]);
    expect(outcomes.filter((o) => o.kind === 'attempted')).toHaveLength(8);
    expect(outcomes[8]).toMatchObject({ kind: 'skipped' });
    for (const f of fixtures) {
      expect(receiver.to(f.path)).toHaveLength(1);
      expect(await deliveryRow(f.delivery.id)).toMatchObject({ status: 'succeeded', attemptCount: 1, leaseUntil: null });
      expect(await attemptRows(f.delivery.id)).toHaveLength(1);
    }
  });

  it('tells an early job naming its webhook when to come back, without an attempt', async () => {
    const f = await fixture();
    await prisma.delivery.update({ where: { id: f.delivery.id }, data: { nextAttemptAt: new Date(Date.now() + 5_000) } });
    const outcome = await service.attempt(job(f.delivery.id, { webhookId: f.webhookId, organizationId: f.org.id, attempt: 1 }));
    expect(outcome.kind).toBe('not_due');
    expect(receiver.to(f.path)).toHaveLength(0);
    expect(await attemptRows(f.delivery.id)).toHaveLength(0);
  });

  it('follows the retry schedule and fails the delivery after the last attempt', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 500, body: 'boom' }));

    const first = await service.attempt(job(f.delivery.id));
    expect(first).toMatchObject({ kind: 'attempted', attempt: 1, status: 'pending', statusCode: 500 });
    let row = await deliveryRow(f.delivery.id);
    expect(row.status).toBe('pending');
    expect(row.nextAttemptAt!.getTime() - Date.now()).toBeGreaterThan(50);
    expect(row.nextAttemptAt!.getTime() - Date.now()).toBeLessThanOrEqual(150);
    expect(dispatcher.dispatch).toHaveBeenLastCalledWith([{ deliveryId: f.delivery.id, webhookId: f.webhookId, organizationId: f.org.id, attempt: 2, at: expect.any(Date) }]);

    // A job that runs early is told when to come back, and no attempt is made.
    const early = await service.attempt(job(f.delivery.id));
    expect(early.kind).toBe('not_due');
    expect(receiver.to(f.path)).toHaveLength(1);

    await sleep(160);
    const second = await service.attempt(job(f.delivery.id));
    expect(second).toMatchObject({ kind: 'attempted', attempt: 2, status: 'pending' });
    expect(receiver.to(f.path)[1].headers['x-bellwether-attempt']).toBe('2');
    row = await deliveryRow(f.delivery.id);
    expect(row.nextAttemptAt!.getTime() - Date.now()).toBeGreaterThan(200);
    expect(dispatcher.dispatch).toHaveBeenLastCalledWith([{ deliveryId: f.delivery.id, webhookId: f.webhookId, organizationId: f.org.id, attempt: 3, at: expect.any(Date) }]);

    await sleep(310);
    const third = await service.attempt(job(f.delivery.id));
    expect(third).toMatchObject({ kind: 'attempted', attempt: 3, status: 'failed' });
    row = await deliveryRow(f.delivery.id);
    expect(row).toMatchObject({ status: 'failed', attemptCount: 3, lastStatusCode: 500, nextAttemptAt: null, leaseUntil: null });
    expect(row.completedAt).toBeInstanceOf(Date);
    expect(dispatcher.dispatch).toHaveBeenCalledTimes(2);

    const attempts = await attemptRows(f.delivery.id);
    expect(attempts.map((a) => [a.attempt, a.responseStatus, a.responseBody])).toEqual([
      [1, 500, 'boom'],
      [2, 500, 'boom'],
      [3, 500, 'boom'],
    ]);
    expect((await webhookRow(f.webhookId)).failingSince).toBeInstanceOf(Date);
  });

  it('treats a redirect as a failure and does not follow it', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 301, headers: { location: '/elsewhere' } }));
    const outcome = await service.attempt(job(f.delivery.id));
    expect(outcome).toMatchObject({ kind: 'attempted', status: 'pending', statusCode: 301, error: null });
    expect(receiver.to('/elsewhere')).toHaveLength(0);
  });

  it('disables the webhook on 410 Gone and ends the delivery; later deliveries are cancelled unattempted', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 410 }));

    const outcome = await service.attempt(job(f.delivery.id));
    expect(outcome).toMatchObject({ kind: 'attempted', status: 'failed', statusCode: 410 });
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ status: 'failed', attemptCount: 1, nextAttemptAt: null });
    expect(await webhookRow(f.webhookId)).toMatchObject({ enabled: false, disabledReason: 'gone' });
    expect(dispatcher.dispatch).not.toHaveBeenCalled();

    const event = await newEvent(f.org.id, f.project);
    const later = await newDelivery(f.org.id, event.id, f.webhookId);
    expect(await service.attempt(job(later.id))).toEqual({ kind: 'cancelled', reason: 'webhook_disabled' });
    expect(await deliveryRow(later.id)).toMatchObject({ status: 'cancelled', attemptCount: 0 });
    expect(await attemptRows(later.id)).toHaveLength(0);
    expect(receiver.to(f.path)).toHaveLength(1);
  });

  it('cancels deliveries of a deleted webhook without attempting them', async () => {
    const f = await fixture();
    await prisma.webhook.update({ where: { id: f.webhookId }, data: { deletedAt: new Date() } });
    expect(await service.attempt(job(f.delivery.id))).toEqual({ kind: 'cancelled', reason: 'webhook_deleted' });
    const row = await deliveryRow(f.delivery.id);
    expect(row.status).toBe('cancelled');
    expect(row.completedAt).toBeInstanceOf(Date);
    expect(receiver.to(f.path)).toHaveLength(0);
  });

  it('announces a test delivery it cancels (webhook deleted), for a request waiting on it, and no other', async () => {
    const announced: string[] = [];
    const announcer = { recorded: async (deliveryId: string) => void announced.push(deliveryId) } as unknown as TestAttemptAnnouncer;
    service = new DeliveryService(prisma, config, store, sender, dispatcher as unknown as DeliveryDispatcher, limiter, undefined, undefined, announcer);
    const test = await fixture({ test: true });
    const ordinary = await fixture();
    await prisma.webhook.updateMany({ where: { id: { in: [test.webhookId, ordinary.webhookId] } }, data: { deletedAt: new Date() } });
    expect(await service.attempt(job(test.delivery.id))).toEqual({ kind: 'cancelled', reason: 'webhook_deleted' });
    expect(await service.attempt(job(ordinary.delivery.id))).toEqual({ kind: 'cancelled', reason: 'webhook_deleted' });
    expect(await deliveryRow(test.delivery.id)).toMatchObject({ status: 'cancelled', test: true });
    expect(announced).toEqual([test.delivery.id]);
  });

  it('waits at least as long as Retry-After asks on 429 and 503', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 429, headers: { 'retry-after': '3' } }));
    const outcome = await service.attempt(job(f.delivery.id));
    expect(outcome).toMatchObject({ kind: 'attempted', status: 'pending', statusCode: 429 });
    const row = await deliveryRow(f.delivery.id);
    const wait = row.nextAttemptAt!.getTime() - Date.now();
    expect(wait).toBeGreaterThan(2500);
    expect(wait).toBeLessThanOrEqual(3100);
    const at = (dispatcher.dispatch.mock.calls[0][0] as Array<{ at: Date }>)[0].at;
    expect(at.getTime() - Date.now()).toBeGreaterThan(2500);

    const g = await fixture();
    receiver.answer(g.path, () => ({ status: 503, headers: { 'retry-after': '999999' } }));
    await service.attempt(job(g.delivery.id));
    const capped = (await deliveryRow(g.delivery.id)).nextAttemptAt!.getTime() - Date.now();
    expect(capped).toBeGreaterThan(24 * 3600_000 - 10_000);
    expect(capped).toBeLessThanOrEqual(24 * 3600_000);
  });

  it('ignores Retry-After on other statuses', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 500, headers: { 'retry-after': '30' } }));
    await service.attempt(job(f.delivery.id));
    expect((await deliveryRow(f.delivery.id)).nextAttemptAt!.getTime() - Date.now()).toBeLessThanOrEqual(150);
  });

  it('does nothing for a stale job: a finished delivery, or an attempt already recorded', async () => {
    const f = await fixture();
    await service.attempt(job(f.delivery.id));
    expect(await service.attempt(job(f.delivery.id))).toEqual({ kind: 'skipped', reason: 'done' });

    const g = await fixture();
    receiver.answer(g.path, () => ({ status: 500 }));
    await service.attempt(job(g.delivery.id, { attempt: 1 }));
    await sleep(160);
    // A duplicate of the job for attempt 1 must not turn into attempt 2 nor come back later.
    expect(await service.attempt(job(g.delivery.id, { attempt: 1 }))).toEqual({ kind: 'skipped', reason: 'stale' });
    expect(await attemptRows(g.delivery.id)).toHaveLength(1);
    expect(await service.attempt(job(g.delivery.id, { attempt: 2 }))).toMatchObject({ kind: 'attempted', attempt: 2 });

    expect(await service.attempt(job('dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV'))).toEqual({ kind: 'skipped', reason: 'missing' });
  });

  it('makes one attempt when two workers race for the same delivery', async () => {
    const f = await fixture();
    receiver.answer(f.path, (_req) => ({ status: 200 }));
    const outcomes = await Promise.all([service.attempt(job(f.delivery.id)), makeService().attempt(job(f.delivery.id))]);
    expect(outcomes.filter((o) => o.kind === 'attempted')).toHaveLength(1);
    expect(receiver.to(f.path)).toHaveLength(1);
    expect(await attemptRows(f.delivery.id)).toHaveLength(1);
  });

  it('leaves a leased delivery alone', async () => {
    const f = await fixture();
    await prisma.delivery.update({ where: { id: f.delivery.id }, data: { leaseUntil: new Date(Date.now() + 60_000) } });
    expect(await service.attempt(job(f.delivery.id))).toEqual({ kind: 'skipped', reason: 'leased' });
    expect(receiver.to(f.path)).toHaveLength(0);
  });

  it('delays the job without an attempt when the webhook is at its in-flight cap', async () => {
    const f = await fixture();
    const capped = makeService({ maxInFlightPerWebhook: 2 });
    const others = ['dlv_other1', 'dlv_other2'].map((member) => ({ webhookId: f.webhookId, organizationId: f.org.id, member }));
    for (const other of others) await limiter.acquire(other, { perWebhook: 2, perOrganization: 10, ttlMs: 60_000 });
    const before = Date.now();
    const outcome = await capped.attempt(job(f.delivery.id));
    expect(outcome.kind).toBe('over_cap');
    if (outcome.kind !== 'over_cap') return;
    expect(outcome.at.getTime() - before).toBeGreaterThanOrEqual(250);
    expect(outcome.at.getTime() - before).toBeLessThanOrEqual(1100);
    expect(await attemptRows(f.delivery.id)).toHaveLength(0);
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ leaseUntil: null, attemptCount: 0 });

    await limiter.release(others[0]);
    expect(await capped.attempt(job(f.delivery.id))).toMatchObject({ kind: 'attempted', status: 'succeeded' });
    // The slot is given back once the attempt is over.
    expect(limiter.held(f.webhookId)).toBe(1);
  });

  it('keeps jobs of a fast endpoint at its cap waiting their turn instead of sending them back to the queue', async () => {
    const f = await fixture();
    receiver.answer(f.path, answerOkAfter(150));
    // Two in flight and four waiting (the most that may keep their place: twice the cap). An
    // attempt holds its slot for the answer's 150 ms and its own claim and signing: under
    // slotWaitMs (so the release is turnover) by a margin that a busy machine does not eat.
    const capped = makeService({ maxInFlightPerWebhook: 2, slotWaitMs: 250, slotWaitMaxMs: 5_000 });
    const [warmUp, ...others] = await Promise.all(Array.from({ length: 6 }, () => newEvent(f.org.id, f.project).then((e) => newDelivery(f.org.id, e.id, f.webhookId))));
    // One attempt first, alone: the first of a cold process (connections, compiled code) takes
    // longer than slotWaitMs, and a slot held that long is not turnover.
    expect((await capped.attempt(job(warmUp.id, { webhookId: f.webhookId, organizationId: f.org.id }))).kind).toBe('attempted');
    const ids = [f.delivery.id, ...others.map((d) => d.id)];
    const started = Date.now();
    const outcomes = await Promise.all(ids.map((id) => capped.attempt(job(id, { webhookId: f.webhookId, organizationId: f.org.id }))));
    // Three rounds of about 150 ms: the last waited beyond slotWaitMs, but slots kept turning over.
    expect(Date.now() - started).toBeGreaterThan(400);
    expect(outcomes.map((o) => o.kind)).toEqual(ids.map(() => 'attempted'));
    expect(receiver.to(f.path)).toHaveLength(ids.length + 1);
  });

  it('sends a job back to the queue after slotWaitMs when its endpoint is slow, and at once when its tenant is', async () => {
    const f = await fixture();
    receiver.answer(f.path, answerOkAfter(1500));
    const capped = makeService({ maxInFlightPerWebhook: 1, maxInFlightPerOrganization: 2, slotWaitMs: 100 });
    const second = await newEvent(f.org.id, f.project).then((e) => newDelivery(f.org.id, e.id, f.webhookId));
    const slow = capped.attempt(job(f.delivery.id, { webhookId: f.webhookId, organizationId: f.org.id }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const waitedFrom = Date.now();
    expect((await capped.attempt(job(second.id, { webhookId: f.webhookId, organizationId: f.org.id }))).kind).toBe('over_cap');
    const waited = Date.now() - waitedFrom;
    expect(waited).toBeGreaterThanOrEqual(90);
    expect(waited).toBeLessThan(300);

    // The tenant's two slots held by slow attempts: a third job of the tenant does not wait at all.
    const otherPath = `/hook-${++pathCounter}`;
    receiver.answer(otherPath, answerOkAfter(1500));
    const sameTenantWebhook = newId('webhook');
    await prisma.webhook.create({
      data: { name: 'hook',
        id: sameTenantWebhook,
        organizationId: f.org.id,
        projectId: f.project.id,
        url: `${receiver.url}${otherPath}`,
        events: ['baseline.uploaded'],
        secretCiphertext: encryptSecret(generateWebhookSecret(), config.secretsKey, sameTenantWebhook),
      },
    });
    const onOther = await newEvent(f.org.id, f.project).then((e) => newDelivery(f.org.id, e.id, sameTenantWebhook));
    const third = await newEvent(f.org.id, f.project).then((e) => newDelivery(f.org.id, e.id, sameTenantWebhook));
    const slowOther = capped.attempt(job(onOther.id, { webhookId: sameTenantWebhook, organizationId: f.org.id }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const at = Date.now();
    expect((await capped.attempt(job(third.id, { webhookId: sameTenantWebhook, organizationId: f.org.id }))).kind).toBe('over_cap');
    expect(Date.now() - at).toBeLessThan(50);
    await Promise.all([slow, slowOther]);
  });

  it('records network errors as attempts and retries them', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const f = await fixture({ url: `http://127.0.0.1:${port}/gone-away` });
    const outcome = await service.attempt(job(f.delivery.id));
    expect(outcome).toMatchObject({ kind: 'attempted', status: 'pending', statusCode: null, error: { code: 'connection_refused' } });
    const [attempt] = await attemptRows(f.delivery.id);
    expect(attempt).toMatchObject({ responseStatus: null, responseHeaders: null, responseBody: null, errorCode: 'connection_refused' });
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ status: 'pending', attemptCount: 1, lastStatusCode: null });
  });

  it('makes a manual attempt outside the schedule: a pending delivery keeps its step and its next scheduled time', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 500 }));
    await service.attempt(job(f.delivery.id, { kind: 'scheduled', attempt: 1 }));
    const before = await deliveryRow(f.delivery.id);
    expect(before).toMatchObject({ status: 'pending', attemptCount: 1, scheduledAttempts: 1 });

    expect(await store.requestManualAttempt(f.delivery.id, f.org.id)).toMatchObject({ kind: 'queued' });
    const manual = await service.attempt(job(f.delivery.id, { kind: 'manual' }));
    expect(manual).toMatchObject({ kind: 'attempted', attempt: 2, status: 'pending', fenced: true });
    const after = await deliveryRow(f.delivery.id);
    expect(after).toMatchObject({ status: 'pending', attemptCount: 2, scheduledAttempts: 1, manualRequestedAt: null, leaseToken: null });
    expect(after.nextAttemptAt).toEqual(before.nextAttemptAt);
    expect((await attemptRows(f.delivery.id)).map((a) => [a.attempt, a.trigger])).toEqual([
      [1, 'scheduled'],
      [2, 'manual'],
    ]);
    // The step that was due after attempt 1 is still attempt 2 of the schedule.
    await sleep(160);
    expect(await service.attempt(job(f.delivery.id, { kind: 'scheduled', attempt: 2 }))).toMatchObject({ kind: 'attempted', attempt: 3, status: 'pending' });
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ scheduledAttempts: 2 });
  });

  it('keeps a failed delivery failed when its manual attempt fails, with no automatic attempt after it', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 500 }));
    for (let step = 1; step <= 3; step++) {
      await service.attempt(job(f.delivery.id, { kind: 'scheduled', attempt: step }));
      await sleep(310);
    }
    const failed = await deliveryRow(f.delivery.id);
    expect(failed).toMatchObject({ status: 'failed', scheduledAttempts: 3 });
    dispatcher.dispatch.mockClear();

    await store.requestManualAttempt(f.delivery.id, f.org.id);
    expect(await service.attempt(job(f.delivery.id, { kind: 'manual' }))).toMatchObject({ kind: 'attempted', attempt: 4, status: 'failed' });
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ status: 'failed', scheduledAttempts: 3, nextAttemptAt: null, completedAt: failed.completedAt });
    expect(dispatcher.dispatch).not.toHaveBeenCalled();

    // A manual attempt that succeeds makes it succeeded.
    receiver.answer(f.path, () => ({ status: 200 }));
    await store.requestManualAttempt(f.delivery.id, f.org.id);
    expect(await service.attempt(job(f.delivery.id, { kind: 'manual' }))).toMatchObject({ kind: 'attempted', attempt: 5, status: 'succeeded' });
  });

  it('refuses a second manual request while one waits, and any on a disabled webhook', async () => {
    const f = await fixture();
    const requests = await Promise.all(Array.from({ length: 5 }, () => store.requestManualAttempt(f.delivery.id, f.org.id)));
    expect(requests.filter((r) => r.kind === 'queued')).toHaveLength(1);
    expect(requests.filter((r) => r.kind === 'already_waiting')).toHaveLength(4);
    expect(await store.requestManualAttempt(f.delivery.id, 'org_someone_else')).toEqual({ kind: 'not_found' });

    const g = await fixture();
    await service.attempt(job(g.delivery.id));
    await prisma.webhook.update({ where: { id: g.webhookId }, data: { enabled: false, disabledReason: 'gone' } });
    expect(await store.requestManualAttempt(g.delivery.id, g.org.id)).toEqual({ kind: 'webhook_disabled' });
    expect(await deliveryRow(g.delivery.id)).toMatchObject({ status: 'succeeded', manualRequestedAt: null });
  });

  it('makes a manual attempt asked for while an attempt is in flight after it, and records both', async () => {
    const f = await fixture();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    receiver.answer(f.path, async () => {
      calls += 1;
      if (calls === 1) await held;
      return { status: 500 };
    });
    const inFlight = service.attempt(job(f.delivery.id, { kind: 'scheduled', attempt: 1 }));
    await until(() => calls === 1);
    expect(await store.requestManualAttempt(f.delivery.id, f.org.id)).toMatchObject({ kind: 'queued' });
    // Its own job finds the delivery leased and is dropped...
    expect(await service.attempt(job(f.delivery.id, { kind: 'manual' }))).toEqual({ kind: 'skipped', reason: 'leased' });
    release();
    expect(await inFlight).toMatchObject({ kind: 'attempted', attempt: 1, status: 'pending' });
    // ...and the attempt in flight, when it records, dispatches the manual one.
    const dispatched = dispatcher.dispatch.mock.calls.flatMap((call) => call[0] as Array<{ kind?: string }>);
    expect(dispatched.filter((d) => d.kind === 'manual')).toHaveLength(1);
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ scheduledAttempts: 1, manualRequestedAt: expect.any(Date) });
    expect(await service.attempt(job(f.delivery.id, { kind: 'manual' }))).toMatchObject({ kind: 'attempted', attempt: 2 });
    expect((await attemptRows(f.delivery.id)).map((a) => a.trigger)).toEqual(['scheduled', 'manual']);
  });

  it('records a stale holder\'s attempt in the history without moving the delivery over the current holder', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 500 }));
    const first = await store.claim({ deliveryId: f.delivery.id, kind: 'scheduled', scheduledAttempt: 1 });
    expect(first).not.toBeNull();
    // The first holder is paused past its lease; a second worker claims and succeeds.
    await prisma.$executeRaw`UPDATE deliveries SET lease_until = now() - interval '1 second' WHERE id = ${f.delivery.id}`;
    receiver.answer(f.path, () => ({ status: 200 }));
    expect(await service.attempt(job(f.delivery.id, { kind: 'scheduled', attempt: 1 }))).toMatchObject({ kind: 'attempted', attempt: 1, status: 'succeeded', fenced: true });

    // The first holder comes back with its failure.
    const stale = await store.record({
      claimed: first!,
      startedAt: new Date(),
      requestHeaders: { 'x-bellwether-attempt': '1' },
      statusCode: 500,
      responseHeaders: {},
      responseBody: 'late',
      responseBodyTruncated: false,
      responseTimeMs: 5,
      error: null,
      verdict: { success: false, gone: false, retryInMs: 150 },
    });
    expect(stale).toMatchObject({ fenced: false, attempt: 2, status: 'succeeded' });
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ status: 'succeeded', attemptCount: 2, scheduledAttempts: 1, lastStatusCode: 200, nextAttemptAt: null });
    expect((await attemptRows(f.delivery.id)).map((a) => [a.attempt, a.responseStatus])).toEqual([
      [1, 200],
      [2, 500],
    ]);
  });

  it('records an attempt exactly once when its recording is retried after a lost reply', async () => {
    const f = await fixture();
    const claimed = await store.claim({ deliveryId: f.delivery.id, kind: 'scheduled' });
    const attempt = {
      claimed: claimed!,
      startedAt: new Date(),
      requestHeaders: {},
      statusCode: 200,
      responseHeaders: {},
      responseBody: 'ok',
      responseBodyTruncated: false,
      responseTimeMs: 3,
      error: null,
      verdict: { success: true, gone: false, retryInMs: null },
      attemptId: newId('attempt'),
    };
    const recordMany = (store as unknown as { recordMany(items: unknown[]): Promise<Array<{ fenced: boolean; status: string }>> }).recordMany.bind(store);
    const [once] = await recordMany([attempt]);
    const [again] = await recordMany([attempt]);
    expect(once).toMatchObject({ fenced: true, status: 'succeeded' });
    expect(again).toMatchObject({ status: 'succeeded' });
    expect(await attemptRows(f.delivery.id)).toHaveLength(1);
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ attemptCount: 1 });
  });

  it('ends a delivery whose secret cannot be decrypted with recorded secret_unavailable attempts on the schedule', async () => {
    const f = await fixture();
    await prisma.webhook.update({ where: { id: f.webhookId }, data: { secretCiphertext: 'v1.broken.broken.broken' } });
    for (let step = 1; step <= 3; step++) {
      expect(await service.attempt(job(f.delivery.id, { kind: 'scheduled', attempt: step }))).toMatchObject({ kind: 'attempted', error: { code: 'secret_unavailable' } });
      await sleep(310);
    }
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ status: 'failed', attemptCount: 3, leaseToken: null });
    expect((await attemptRows(f.delivery.id)).map((a) => a.errorCode)).toEqual(['secret_unavailable', 'secret_unavailable', 'secret_unavailable']);
    expect(receiver.to(f.path)).toHaveLength(0);
  });

  it('never lets a test delivery touch the webhook: a 410 neither disables it nor ends its run of failures', async () => {
    const f = await fixture({ test: true });
    receiver.answer(f.path, () => ({ status: 410 }));
    expect(await service.attempt(job(f.delivery.id))).toMatchObject({ kind: 'attempted', status: 'failed', statusCode: 410 });
    expect(await webhookRow(f.webhookId)).toMatchObject({ enabled: true, disabledReason: null, failingSince: null });
    expect((await attemptRows(f.delivery.id))[0].trigger).toBe('test');
  });

  it('sends a test delivery to a disabled webhook, once', async () => {
    const f = await fixture({ test: true });
    await prisma.webhook.update({ where: { id: f.webhookId }, data: { enabled: false, disabledReason: 'failing' } });
    receiver.answer(f.path, () => ({ status: 500 }));
    expect(await service.attempt(job(f.delivery.id))).toMatchObject({ kind: 'attempted', attempt: 1, status: 'failed' });
    expect(dispatcher.dispatch).not.toHaveBeenCalled();
    expect(await webhookRow(f.webhookId)).toMatchObject({ enabled: false, disabledReason: 'failing' });
  });

  it('follows the webhook\'s own retry schedule over the server\'s', async () => {
    const f = await fixture();
    await prisma.webhook.update({ where: { id: f.webhookId }, data: { retryScheduleMs: [1000] } });
    receiver.answer(f.path, () => ({ status: 500 }));
    await service.attempt(job(f.delivery.id));
    const wait = (await deliveryRow(f.delivery.id)).nextAttemptAt!.getTime() - Date.now();
    expect(wait).toBeGreaterThan(800);
    expect(wait).toBeLessThanOrEqual(1000);
    await sleep(1000);
    expect(await service.attempt(job(f.delivery.id, { attempt: 2 }))).toMatchObject({ kind: 'attempted', status: 'failed' });
  });

  it('still dispatches the next attempt when the auto-disable check fails after the recording', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 500 }));
    const broken = makeService();
    (broken as unknown as { health: { checkAutoDisable: () => Promise<boolean> } }).health.checkAutoDisable = () => Promise.reject(new Error('connection lost'));
    expect(await broken.attempt(job(f.delivery.id))).toMatchObject({ kind: 'attempted', status: 'pending' });
    expect(dispatcher.dispatch).toHaveBeenCalledWith([expect.objectContaining({ deliveryId: f.delivery.id, attempt: 2 })]);
  });

  it('also signs with the previous secret during a rotation', async () => {
    const f = await fixture({ previousSecret: true });
    await service.attempt(job(f.delivery.id));
    const [got] = receiver.to(f.path);
    expect(got.headers['x-bellwether-signature']).toBe(bellwetherSignature(f.secret, f.event.body));
    expect(got.headers['x-bellwether-signature-previous']).toBe(bellwetherSignature(f.previous!, f.event.body));
    expect(String(got.headers['webhook-signature']).split(' ')).toHaveLength(2);
  });

  it('stores a response body with NUL characters and cuts long ones at 64 KiB', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 200, body: 'a\u0000b' + 'x'.repeat(100_000) }));
    await service.attempt(job(f.delivery.id));
    const [attempt] = await attemptRows(f.delivery.id);
    expect(attempt.responseBodyTruncated).toBe(true);
    expect(attempt.responseBody!.startsWith('a\uFFFDb')).toBe(true);
    expect(Buffer.byteLength(attempt.responseBody!)).toBeLessThanOrEqual(64 * 1024 + 2);
  });

  it('keeps test deliveries out of the failure streak', async () => {
    const f = await fixture({ test: true });
    receiver.answer(f.path, () => ({ status: 500 }));
    await service.attempt(job(f.delivery.id));
    expect((await attemptRows(f.delivery.id))[0].trigger).toBe('test');
    expect((await webhookRow(f.webhookId)).failingSince).toBeNull();
  });

  it('clears the failure streak on a success', async () => {
    const f = await fixture();
    await prisma.webhook.update({ where: { id: f.webhookId }, data: { failingSince: new Date(Date.now() - 3600_000) } });
    await service.attempt(job(f.delivery.id));
    expect((await webhookRow(f.webhookId)).failingSince).toBeNull();
  });

  it('disables a webhook that has failed for too long with enough failed attempts, test attempts not counted', async () => {
    const strict = makeService({ autoDisableAfterMs: 1000, autoDisableMinFailures: 3 });
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 500 }));
    const another = async (test = false) => {
      const event = await newEvent(f.org.id, f.project, test);
      return newDelivery(f.org.id, event.id, f.webhookId, test ? { test } : {});
    };
    await strict.attempt(job(f.delivery.id));
    const testDelivery = await another(true);
    await strict.attempt(job(testDelivery.id));
    // Make the run of failures older than the limit, its attempts still inside it.
    await prisma.$executeRaw`UPDATE webhooks SET failing_since = failing_since - interval '2 seconds' WHERE id = ${f.webhookId}`;
    await prisma.$executeRaw`UPDATE attempts SET created_at = created_at - interval '1 second' WHERE delivery_id IN (${f.delivery.id}, ${testDelivery.id})`;

    // Two real failures plus one test failure: not enough.
    await strict.attempt(job((await another()).id));
    expect(await webhookRow(f.webhookId)).toMatchObject({ enabled: true, disabledReason: null });

    await strict.attempt(job((await another()).id));
    expect(await webhookRow(f.webhookId)).toMatchObject({ enabled: false, disabledReason: 'failing' });
  });

  it('does not disable a webhook whose failures are recent, however many', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 500 }));
    for (let i = 0; i < 6; i++) {
      const e = await newEvent(f.org.id, f.project);
      const d = await newDelivery(f.org.id, e.id, f.webhookId);
      await service.attempt(job(d.id));
    }
    expect(await webhookRow(f.webhookId)).toMatchObject({ enabled: true, disabledReason: null });
  });

  it('keeps the outcome when enqueueing the next attempt fails (the sweeper repairs it)', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 500 }));
    dispatcher.dispatch.mockRejectedValueOnce(new Error('redis down'));
    const outcome = await service.attempt(job(f.delivery.id));
    expect(outcome).toMatchObject({ kind: 'attempted', status: 'pending' });
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ status: 'pending', attemptCount: 1, leaseUntil: null });
  });

  it('keeps a delivery cancelled while its attempt was in flight cancelled, but records the attempt', async () => {
    const f = await fixture();
    receiver.answer(f.path, async () => {
      // The API cancels pending deliveries when the webhook is deleted; here it happens mid-attempt.
      await prisma.$executeRaw`UPDATE deliveries SET status = 'cancelled'::"DeliveryStatus", completed_at = now() WHERE id = ${f.delivery.id}`;
      return { status: 500 };
    });
    await service.attempt(job(f.delivery.id));
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ status: 'cancelled', attemptCount: 1 });
    expect(await attemptRows(f.delivery.id)).toHaveLength(1);
    expect(dispatcher.dispatch).not.toHaveBeenCalled();
  });

  it('keeps a manual request accepted while a manual attempt was in flight when that attempt\'s holder dies: both are made', async () => {
    const f = await fixture();
    receiver.answer(f.path, () => ({ status: 500 }));
    // Request 1, claimed by a worker that then dies before sending or recording.
    expect(await store.requestManualAttempt(f.delivery.id, f.org.id)).toMatchObject({ kind: 'queued' });
    const dead = await store.claim({ deliveryId: f.delivery.id, kind: 'manual' });
    expect(dead).not.toBeNull();
    // Request 2 arrives while request 1 is "in flight": accepted (202), to be made after it.
    expect(await store.requestManualAttempt(f.delivery.id, f.org.id)).toMatchObject({ kind: 'queued' });
    // The dead holder's lease runs out; the sweeper dispatches a manual job.
    await prisma.$executeRaw`UPDATE deliveries SET lease_until = now() - interval '1 second' WHERE id = ${f.delivery.id}`;
    expect(await service.attempt(job(f.delivery.id, { kind: 'manual' }))).toMatchObject({ kind: 'attempted', attempt: 1 });
    // The redo of request 1 leaves request 2 waiting: it is made next.
    const second = await service.attempt(job(f.delivery.id, { kind: 'manual' }));
    expect(second).toMatchObject({ kind: 'attempted', attempt: 2 });
    expect((await attemptRows(f.delivery.id)).filter((a) => a.trigger === 'manual')).toHaveLength(2);
  });

  it('keeps a delivery cancelled (webhook deleted) while its attempt was in flight cancelled, even when the attempt gets a 2xx', async () => {
    const f = await fixture();
    receiver.answer(f.path, async () => {
      // DELETE /webhooks/{id} mid-attempt, exactly as WebhooksService.remove does it.
      await prisma.$transaction([
        prisma.webhook.update({ where: { id: f.webhookId }, data: { deletedAt: new Date(), enabled: false } }),
        store.cancelForWebhook(f.webhookId),
      ]);
      return { status: 200 };
    });
    await service.attempt(job(f.delivery.id));
    expect(await attemptRows(f.delivery.id)).toHaveLength(1);
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ status: 'cancelled' });
  });
  it('finds its own row when a recording is retried while its first try is still committing on the server', async () => {
    const f = await fixture();
    const claimed = await store.claim({ deliveryId: f.delivery.id, kind: 'scheduled' });
    const item = {
      claimed: claimed!, startedAt: new Date(), requestHeaders: {}, statusCode: 200, responseHeaders: {}, responseBody: 'ok',
      responseBodyTruncated: false, responseTimeMs: 3, error: null, verdict: { success: true, gone: false, retryInMs: null }, attemptId: newId('attempt'),
    };
    type RecordMany = (items: unknown[]) => Promise<Array<{ fenced: boolean; status: string }>>;
    let retry: Promise<unknown> | undefined;
    // The first try runs and is about to commit when the client loses the connection (a network
    // drop, not a killed backend): the server commits it anyway. The retry starts meanwhile.
    await prisma.$transaction(async (tx) => {
      const first = new DeliveryStore(tx as unknown as PrismaService, config);
      await (first as unknown as { recordMany: RecordMany }).recordMany([item]);
      retry = (store as unknown as { recordManyRetrying: RecordMany }).recordManyRetrying([item]).then((r) => r, (e: Error) => e);
      await sleep(300);
    });
    const outcome = await retry;
    expect(outcome).not.toBeInstanceOf(Error);
    expect(await attemptRows(f.delivery.id)).toHaveLength(1);
  });

  it('records both when a stale holder and the current one record the same delivery in one batch', async () => {
    const f = await fixture();
    const stale = await store.claim({ deliveryId: f.delivery.id, kind: 'scheduled' });
    await prisma.$executeRaw`UPDATE deliveries SET lease_until = now() - interval '1 second' WHERE id = ${f.delivery.id}`;
    const current = await store.claim({ deliveryId: f.delivery.id, kind: 'scheduled' });
    const result = (claimed: NonNullable<typeof stale>, statusCode: number) => ({
      claimed,
      startedAt: new Date(),
      requestHeaders: {},
      statusCode,
      responseHeaders: {},
      responseBody: '',
      responseBodyTruncated: false,
      responseTimeMs: 1,
      error: null,
      verdict: { success: statusCode === 200, gone: false, retryInMs: statusCode === 200 ? null : 150 },
    });
    const [a, b] = await Promise.all([store.record(result(stale!, 500)), store.record(result(current!, 200))]);
    expect([a.fenced, b.fenced]).toEqual([false, true]);
    expect(await deliveryRow(f.delivery.id)).toMatchObject({ status: 'succeeded', attemptCount: 2, scheduledAttempts: 1, lastStatusCode: 200 });
    expect(await attemptRows(f.delivery.id)).toHaveLength(2);
  });
});
