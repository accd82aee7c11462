import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { INestApplication } from '@nestjs/common';
import { Queue } from 'bullmq';
import request from 'supertest';
import { BellhopConfig, loadConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { DeliveryDispatcher } from '@bellhop/delivery';
import { buildEnvelope, newId } from '@bellhop/domain';
import { encryptSecret, generateWebhookSecret } from '@bellhop/signing';
import { createTestDatabase, TestDatabase } from '../../../libs/delivery/src/testing/test-database';
import { createWorkerApp } from './worker.app';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The worker booted in-process against real Postgres and Redis (its own database and queue prefix). */
describe('worker app (real Postgres and Redis)', () => {
  let db: TestDatabase;
  let config: BellhopConfig;
  let app: INestApplication;
  let prisma: PrismaService;
  let dispatcher: DeliveryDispatcher;
  let receiver: Server;
  let base = '';
  const hits: Array<{ path: string; at: number }> = [];
  let inFlight = 0;
  let maxInFlight = 0;

  beforeAll(async () => {
    db = await createTestDatabase();
    receiver = createServer((req, res) => {
      req.resume();
      req.on('end', async () => {
        hits.push({ path: req.url ?? '', at: Date.now() });
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        if (req.url?.startsWith('/slow')) await sleep(300);
        inFlight--;
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    config = loadConfig({
      NODE_ENV: 'test',
      DATABASE_URL: db.url,
      QUEUE_PREFIX: `bhunit${randomBytes(4).toString('hex')}`,
      ALLOW_PRIVATE_DESTINATIONS: 'true',
      RETRY_SCHEDULE: '100ms',
      DELIVERY_TIMEOUT: '3s',
      SWEEP_INTERVAL: '1s',
      WORKER_CONCURRENCY: '10',
      LOG_LEVEL: 'error',
    });
    app = await createWorkerApp({ config, engine: { service: { maxInFlightPerWebhook: 2 } } });
    await app.init();
    prisma = app.get(PrismaService);
    dispatcher = app.get(DeliveryDispatcher);
  });

  afterAll(async () => {
    await app?.close();
    const queue = new Queue('delivery', { prefix: config.queuePrefix, connection: { host: '127.0.0.1', port: 6379 } });
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    receiver?.closeAllConnections();
    await new Promise((resolve) => receiver?.close(resolve));
    await db?.drop();
  });

  async function webhookWithDeliveries(path: string, count: number, dueInMs = 0) {
    const organizationId = newId('organization');
    const projectId = newId('project');
    const webhookId = newId('webhook');
    await prisma.organization.create({ data: { id: organizationId, name: 'Acme', plan: 'team' } });
    await prisma.project.create({ data: { id: projectId, organizationId, name: 'p' } });
    await prisma.webhook.create({
      data: { name: 'hook',
        id: webhookId,
        organizationId,
        projectId,
        url: `${base}${path}`,
        events: ['baseline.uploaded'],
        secretCiphertext: encryptSecret(generateWebhookSecret(), config.secretsKey, webhookId),
      },
    });
    const ids: string[] = [];
    for (let i = 0; i < count; i++) {
      const eventId = newId('event');
      const body = buildEnvelope({ event: 'baseline.uploaded', timestamp: new Date(), project: { id: projectId, name: 'p' }, data: { i } });
      await prisma.event.create({ data: { id: eventId, organizationId, projectId, type: 'baseline.uploaded', body } });
      const id = newId('delivery');
      await prisma.delivery.create({
        data: { id, organizationId, projectId, eventId, webhookId, eventType: 'baseline.uploaded', nextAttemptAt: new Date(Date.now() + dueInMs) },
      });
      ids.push(id);
    }
    return ids;
  }

  async function waitUntilDone(ids: string[], timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const pending = await prisma.delivery.count({ where: { id: { in: ids }, status: 'pending' } });
      if (pending === 0) return;
      await sleep(50);
    }
    throw new Error('deliveries still pending');
  }

  it('serves liveness, readiness and metrics', async () => {
    const server = app.getHttpServer();
    await request(server).get('/health').expect(200).expect((res) => expect(res.body.status).toBe('ok'));
    await request(server).get('/health/ready').expect(200);
    await request(server).get('/metrics').expect(200).expect((res) => expect(res.text).toContain('bellhop_delivery_attempts_total'));
  });

  /** The value of one series of a scrape (`name` or `name{labels}`), or undefined when it is absent. */
  function series(text: string, name: string): number | undefined {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.slice(name.length + 1));
  }

  it('shows the queue by state and the deliveries due, read at scrape time, without webhook or tenant labels', async () => {
    const server = app.getHttpServer();
    // 12 attempts of 300 ms at 2 in flight: a backlog of about 2 seconds, in the queue and in Postgres.
    const ids = await webhookWithDeliveries('/slow-metrics', 12);
    await dispatcher.dispatch(ids.map((deliveryId) => ({ deliveryId, attempt: 1 })));
    const busy = (await request(server).get('/metrics').expect(200)).text;
    expect(busy).toContain('# TYPE bellhop_queue_jobs gauge');
    expect(busy).toContain('# TYPE bellhop_deliveries_due gauge');
    const states = ['waiting', 'delayed', 'active', 'failed'].map((state) => series(busy, `bellhop_queue_jobs{state="${state}"}`));
    expect(states.every((n) => n !== undefined && Number.isInteger(n) && n >= 0)).toBe(true);
    const [waiting, delayed, active] = states as number[];
    expect(waiting + delayed + active).toBeGreaterThanOrEqual(1);
    expect(waiting + delayed + active).toBeLessThanOrEqual(12);
    expect(active).toBeLessThanOrEqual(config.workerConcurrency);
    const due = series(busy, 'bellhop_deliveries_due');
    expect(due).toBeGreaterThanOrEqual(1);
    expect(due).toBeLessThanOrEqual(12);
    // Only the state label: no series per webhook, organization or project.
    expect(busy.split('\n').filter((l) => /^bellhop_(queue_jobs|deliveries_due)\b/.test(l)).every((l) => /^bellhop_(queue_jobs\{state="\w+"\}|deliveries_due) \d+$/.test(l))).toBe(true);

    await waitUntilDone(ids, 15_000);
    const idle = (await request(server).get('/metrics').expect(200)).text;
    expect(series(idle, 'bellhop_deliveries_due')).toBe(0);
    expect(series(idle, 'bellhop_queue_jobs{state="waiting"}')).toBe(0);
  });

  it('delivers a dispatched delivery', async () => {
    const [id] = await webhookWithDeliveries('/now', 1);
    await dispatcher.dispatch([{ deliveryId: id, attempt: 1 }]);
    await waitUntilDone([id], 5000);
    expect(await prisma.delivery.findUniqueOrThrow({ where: { id } })).toMatchObject({ status: 'succeeded', attemptCount: 1 });
  });

  it('holds back a job that arrives before its delivery is due, without an attempt', async () => {
    const [id] = await webhookWithDeliveries('/later', 1, 1200);
    const sent = Date.now();
    await dispatcher.dispatch([{ deliveryId: id, attempt: 1 }]);
    await waitUntilDone([id], 5000);
    const [hit] = hits.filter((h) => h.path === '/later');
    expect(hit.at - sent).toBeGreaterThanOrEqual(1100);
    expect(await prisma.attempt.count({ where: { deliveryId: id } })).toBe(1);
  });

  it('keeps at most the per-webhook cap of attempts in flight, and delivers them all', async () => {
    maxInFlight = 0;
    const ids = await webhookWithDeliveries('/slow', 6);
    await dispatcher.dispatch(ids.map((deliveryId) => ({ deliveryId, attempt: 1 })));
    await waitUntilDone(ids, 15_000);
    expect(maxInFlight).toBeLessThanOrEqual(2);
    expect(await prisma.delivery.count({ where: { id: { in: ids }, status: 'succeeded', attemptCount: 1 } })).toBe(6);
  });

  it('finds and delivers a committed delivery whose job was never enqueued', async () => {
    const [id] = await webhookWithDeliveries('/lost', 1, -10_000);
    await waitUntilDone([id], 5000);
    expect(await prisma.delivery.findUniqueOrThrow({ where: { id } })).toMatchObject({ status: 'succeeded' });
  });
});
