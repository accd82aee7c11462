import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { INestApplication } from '@nestjs/common';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { createWorkerApp } from '../apps/worker/src/worker.app';
import { TEST_REDIS_URL } from './support/env';
import { documented } from './support/payloads';
import { Receiver } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { createWebhook, eventually, newTenant, type Tenant } from './support/tenant';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Accepts every request and never answers it: each attempt holds its worker slot until DELIVERY_TIMEOUT. */
class HangingReceiver {
  /** Requests being held right now, and the most ever held at once. */
  holding = 0;
  maxHolding = 0;
  arrived = 0;
  private readonly sockets = new Set<Socket>();
  private readonly server: Server = createServer((req: IncomingMessage) => {
    this.arrived += 1;
    this.holding += 1;
    this.maxHolding = Math.max(this.maxHolding, this.holding);
    req.resume();
    req.socket.once('close', () => (this.holding -= 1));
  });

  async start(): Promise<this> {
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Stops listening and drops every held request: attempts in flight fail at once, later ones are refused. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}

/**
 * One tenant cannot take every worker slot: the organization's cap (MAX_IN_FLIGHT_PER_ORGANIZATION)
 * holds across worker processes. Two workers of 10 slots each, a tenant cap of 10: half the fleet.
 * Were the cap counted per worker, the hanging tenant would get 10 slots in each worker, that is
 * all 20, and the other tenant's delivery would wait for DELIVERY_TIMEOUT.
 */
describe('tenant isolation in the worker', () => {
  let stack: Stack;
  let secondWorker: INestApplication | undefined;
  let hanging: HangingReceiver;
  let fast: Receiver;
  let noisy: Tenant;
  let calm: Tenant;

  beforeAll(async () => {
    hanging = await new HangingReceiver().start();
    fast = await new Receiver().start();
    stack = await startStack({ env: { WORKER_CONCURRENCY: '10', MAX_IN_FLIGHT_PER_ORGANIZATION: '10', DELIVERY_TIMEOUT: '30s' } });
    // A second worker on the same queue, with the same settings (startStack put them in the environment).
    secondWorker = await createWorkerApp();
    await secondWorker.listen(0, '127.0.0.1');
  });

  afterAll(async () => {
    // First the hanging requests, so that the workers' attempts end and they can shut down.
    await hanging?.stop();
    await fast?.stop();
    await secondWorker?.close();
    await stack?.stop();
  });

  async function publish(tenant: Tenant): Promise<string> {
    const res = await stack
      .http()
      .post(`/projects/${tenant.projectId}/events`)
      .set(tenant.auth)
      .send({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected') })
      .expect(202);
    return res.body.event.id as string;
  }

  /** How long the calm tenant's next event waits for its first attempt. */
  async function calmWait(): Promise<{ waitedMs: number; received: boolean }> {
    const publishedAt = Date.now();
    const eventId = await publish(calm);
    await eventually(async () => fast.requests.find((r) => r.headers['webhook-id'] === eventId), 5_000).catch(() => undefined);
    const received = fast.requests.find((r) => r.headers['webhook-id'] === eventId);
    // A delivery still missing counts with the time waited so far.
    return { waitedMs: (received?.at ?? Date.now()) - publishedAt, received: received !== undefined };
  }

  it("starts another tenant's first attempt within 1 s while a tenant's 20 endpoints hang", async () => {
    noisy = await newTenant(stack, 'Noisy');
    calm = await newTenant(stack, 'Calm');
    for (let i = 0; i < 20; i++) await createWebhook(stack, noisy, `${hanging.url}/hang-${i}`);
    await createWebhook(stack, calm, `${fast.url}/calm`);

    // One event, 20 deliveries: each attempt is accepted and never answered.
    await publish(noisy);
    await eventually(async () => (hanging.holding >= 10 ? true : undefined), 10_000);
    // Let both workers take every job of the tenant they are going to take.
    await sleep(500);

    const { waitedMs, received } = await calmWait();
    expect(waitedMs).toBeLessThan(1_000);
    expect(received).toBe(true);
    // The tenant never had more than its cap in flight, across both workers.
    expect(hanging.maxHolding).toBe(10);
  }, 30_000);

  it('keeps it within 1 s with a backlog of 2,000 deliveries of that tenant at its cap', async () => {
    // 100 events more to the 20 hanging endpoints: 2,000 deliveries that the tenant's cap keeps
    // sending back to the queue they share with every other tenant. (Sent back every second or
    // so, 1,000 already kept the calm tenant's attempts waiting for seconds on a loaded machine.)
    const events = Array.from({ length: 100 }, () => ({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected') }));
    await stack.http().post(`/projects/${noisy.projectId}/events/batch`).set(noisy.auth).send({ events }).expect(202);
    // Once the first pass over the fresh jobs queued ahead of it is over (that is not what is
    // measured: the queue is first in, first out), the calm tenant's events, one every half
    // second, each run within 1 s: the refused jobs do not fill the shared queue again and again.
    const url = new URL(TEST_REDIS_URL);
    const queue = new Queue('delivery', { prefix: stack.queuePrefix, connection: { host: url.hostname, port: Number(url.port || 6379) } });
    const waits = [];
    let comingBack: { soon: number; delayed: number; prioritized: number };
    try {
      // At most 10 s: with a backlog that keeps coming back that soon, the queue may never drain.
      await eventually(async () => ((await queue.getWaitingCount()) < 50 ? true : undefined), 10_000).catch(() => undefined);
      for (let i = 0; i < 8; i++) {
        await sleep(500);
        waits.push(await calmWait());
      }
      // How much of the backlog, refused a few times by now, is due again within the next second
      // (BullMQ scores a delayed job by its due time in ms, times 0x1000).
      const redis = new Redis(TEST_REDIS_URL);
      const delayedKey = `${stack.queuePrefix}:delivery:delayed`;
      const [soon, delayed, prioritized] = await Promise.all([
        redis.zcount(delayedKey, 0, (Date.now() + 1_000) * 0x1000),
        redis.zcard(delayedKey),
        redis.zcard(`${stack.queuePrefix}:delivery:prioritized`),
      ]).finally(() => redis.quit());
      comingBack = { soon, delayed, prioritized };
    } finally {
      await queue.close();
    }
    expect(waits.every((w) => w.received)).toBe(true);
    expect(Math.max(...waits.map((w) => w.waitedMs))).toBeLessThan(1_000);
    // Each refusal of a job sends it back for longer: a part of the backlog comes back at a time
    // (with a fixed delay of at most 1 s, all of it would, every second).
    // Those back from their delay wait behind every fresh job (prioritized), until a slot frees.
    expect(comingBack.delayed + comingBack.prioritized).toBeGreaterThan(1_500);
    expect(comingBack.soon).toBeLessThan(comingBack.delayed / 2);
    expect(hanging.maxHolding).toBe(10);
  }, 60_000);
});
