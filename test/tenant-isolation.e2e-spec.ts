import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { INestApplication } from '@nestjs/common';
import { createWorkerApp } from '../apps/worker/src/worker.app';
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

  it("starts another tenant's first attempt within 1 s while a tenant's 20 endpoints hang", async () => {
    const noisy = await newTenant(stack, 'Noisy');
    const calm = await newTenant(stack, 'Calm');
    for (let i = 0; i < 20; i++) await createWebhook(stack, noisy, `${hanging.url}/hang-${i}`);
    await createWebhook(stack, calm, `${fast.url}/calm`);

    // One event, 20 deliveries: each attempt is accepted and never answered.
    await publish(noisy);
    await eventually(async () => (hanging.holding >= 10 ? true : undefined), 10_000);
    // Let both workers take every job of the tenant they are going to take.
    await sleep(500);

    const publishedAt = Date.now();
    const eventId = await publish(calm);
    await fast.waitFor(1, 5_000).catch(() => undefined);
    const received = fast.requests.find((r) => r.headers['webhook-id'] === eventId);
    const waitedMs = (received?.at ?? Date.now()) - publishedAt;

    // A delivery still missing counts with the time waited so far.
    expect(waitedMs).toBeLessThan(1_000);
    expect(received).toBeDefined();
    // The tenant never had more than its cap in flight, across both workers.
    expect(hanging.maxHolding).toBe(10);
  }, 30_000);
});
