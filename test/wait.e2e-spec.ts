import { Agent, request as httpRequest, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Client } from 'pg';
import { PrismaService } from '@bellhop/database';
import { Receiver } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { Tenant, createWebhook, eventually, newTenant } from './support/tenant';

/**
 * `POST /webhooks/{id}/test?wait=true`: woken by the worker's announcement of the recorded attempt
 * rather than by polling Postgres, bounded, and dropped as soon as the client goes away.
 */
describe('test deliveries with ?wait=true', () => {
  let stack: Stack;
  let db: Client;
  let base: string;
  const receivers: Receiver[] = [];

  beforeAll(async () => {
    stack = await startStack();
    // A real socket that a client can close mid-request (fetch with an AbortSignal).
    await stack.api.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(stack.api.getHttpServer().address() as AddressInfo).port}`;
    db = new Client({ connectionString: stack.databaseUrl });
    await db.connect();
  });
  afterEach(() => jest.restoreAllMocks());
  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.stop()));
    await db?.end();
    await stack?.stop();
  });

  /** The API's registry of waiting requests, whose settings a test may shrink for its own duration. */
  async function waiters() {
    const { TestAttemptWaiters } = await import('../apps/api/src/deliveries/test-attempt-waiters');
    return stack.api.get(TestAttemptWaiters);
  }

  /** A receiver that holds every request until `release()` (or answers at once when `hold` is false). */
  async function receiverFor(hold: boolean) {
    const receiver = await new Receiver().start();
    receivers.push(receiver);
    const held: ServerResponse[] = [];
    if (hold) receiver.responder = (_req, _i, res) => void held.push(res);
    const release = () => held.splice(0).forEach((res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'));
    return { receiver, release };
  }

  async function setUp(hold: boolean) {
    const tenant = await newTenant(stack);
    const { receiver, release } = await receiverFor(hold);
    const { webhook } = await createWebhook(stack, tenant, `${receiver.url}/hook`);
    return { tenant, webhook, receiver, release };
  }

  /** The API's `bellhop_test_waiters`, or null when it is not exposed. */
  async function waitersGauge(): Promise<number | null> {
    const text = (await stack.http().get('/metrics').expect(200)).text;
    const match = /^bellhop_test_waiters (\d+)$/m.exec(text);
    return match ? Number(match[1]) : null;
  }

  /** Counts the API's reads of one delivery row of the tenant (the statement any wait for it has to run). */
  function countReads(tenant: Tenant) {
    const prisma = stack.api.get(PrismaService);
    const reads = { count: 0 };
    const findFirst = prisma.delivery.findFirst.bind(prisma.delivery);
    jest.spyOn(prisma.delivery, 'findFirst').mockImplementation(((args: { where?: { organizationId?: unknown } }) => {
      if (args?.where?.organizationId === tenant.organizationId) reads.count++;
      return findFirst(args as never);
    }) as never);
    return reads;
  }

  function postTest(tenant: Tenant, webhookId: string, signal?: AbortSignal) {
    return fetch(`${base}/webhooks/${webhookId}/test?wait=true`, { method: 'POST', headers: { ...tenant.auth, 'content-type': 'application/json' }, body: '{}', signal });
  }

  async function attemptsOf(deliveryId: string): Promise<number> {
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM attempts WHERE delivery_id = $1', [deliveryId]);
    return rows[0].n;
  }

  it('answers 200 as soon as the first attempt is recorded, reading the delivery twice at most', async () => {
    const { tenant, webhook, receiver } = await setUp(false);
    const reads = countReads(tenant);
    const res = await stack.http().post(`/webhooks/${webhook.id}/test?wait=true`).set(tenant.auth).send({}).expect(200);
    const answeredAt = Date.now();
    const readsWhileWaiting = reads.count;
    const deliveryId: string = res.body.delivery.id;
    // From the receiver's answer to the client's, well within the 5 s look that stands in for a
    // lost announcement: the announcement woke it.
    expect(answeredAt - receiver.requests[0].at).toBeLessThan(1_000);
    expect(res.body.delivery).toMatchObject({ webhookId: webhook.id, test: true, status: 'succeeded', attempts: 1 });
    // Once when it started waiting (unless the attempt was already in), once when woken.
    expect(readsWhileWaiting).toBeGreaterThanOrEqual(1);
    expect(readsWhileWaiting).toBeLessThanOrEqual(2);
    expect(await attemptsOf(deliveryId)).toBe(1);
    const detail = await stack.http().get(`/deliveries/${deliveryId}`).set(tenant.auth).expect(200);
    expect(detail.body.delivery.attempts).toEqual([expect.objectContaining({ attempt: 1, trigger: 'test', response: expect.objectContaining({ statusCode: 200 }) })]);
    expect(await waitersGauge()).toBe(0);
  });

  it('stops waiting, and reading the delivery, as soon as the client goes away', async () => {
    const { tenant, webhook, receiver, release } = await setUp(true);
    const deliveryId = () => receiver.requests[0]?.headers['x-bellwether-delivery'] as string | undefined;
    const reads = countReads(tenant);
    const client = new AbortController();
    const answer = postTest(tenant, webhook.id, client.signal).catch((err: Error) => err.name);
    // The attempt is in flight (the receiver holds it) and the request is waiting for it.
    await receiver.waitFor(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const gaugeBeforeAbort = await waitersGauge();

    client.abort();
    expect(await answer).toBe('AbortError');
    const readsAtAbort = reads.count;
    // It did read while it waited: the count sees the reads there are.
    expect(readsAtAbort).toBeGreaterThanOrEqual(1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const gaugeAfterAbort = await waitersGauge();

    // The attempt goes on for a while after the client left, then finishes: nothing looks in the
    // meantime, and its announcement wakes nobody.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    release();
    await eventually(async () => ((await attemptsOf(deliveryId()!)) === 1 ? true : undefined), 5_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect({ gaugeBeforeAbort, gaugeAfterAbort, readsAfterAbort: reads.count - readsAtAbort }).toEqual({ gaugeBeforeAbort: 1, gaugeAfterAbort: 0, readsAfterAbort: 0 });
  });

  it('answers 202 with the delivery as it is once the bound has passed', async () => {
    const { tenant, webhook, receiver, release } = await setUp(true);
    jest.replaceProperty((await waiters()).options, 'boundMs', 600);
    const started = Date.now();
    const res = await stack.http().post(`/webhooks/${webhook.id}/test?wait=true`).set(tenant.auth).send({}).expect(202);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(600);
    expect(elapsed).toBeLessThan(5_000);
    expect(res.body.delivery).toMatchObject({ webhookId: webhook.id, test: true, status: 'pending', attempts: 0 });
    expect(receiver.requests).toHaveLength(1);
    expect(await waitersGauge()).toBe(0);
    release();
  });

  it('catches an attempt whose announcement was lost at its next look', async () => {
    const { tenant, webhook, receiver, release } = await setUp(true);
    jest.replaceProperty((await waiters()).options, 'recheckMs', 1_000);
    const answer = postTest(tenant, webhook.id);
    await receiver.waitFor(1);
    await eventually(async () => ((await waitersGauge()) === 1 ? true : undefined), 5_000);
    // Finished behind the worker's back: no announcement is ever made for this change.
    const deliveryId = receiver.requests[0].headers['x-bellwether-delivery'] as string;
    await db.query(`UPDATE deliveries SET status = 'succeeded', attempt_count = 1, completed_at = now() WHERE id = $1`, [deliveryId]);
    const updated = Date.now();
    const res = await answer;
    const elapsed = Date.now() - updated;
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ delivery: { id: deliveryId, status: 'succeeded', attempts: 1 } });
    expect(elapsed).toBeLessThan(3_000);
    release();
  });

  it('answers 202 at once when the process already holds as many waiting requests as it allows', async () => {
    const { tenant, webhook, receiver, release } = await setUp(true);
    jest.replaceProperty((await waiters()).options, 'maxWaiters', 0);
    const started = Date.now();
    const res = await stack.http().post(`/webhooks/${webhook.id}/test?wait=true`).set(tenant.auth).send({}).expect(202);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(res.body.delivery).toMatchObject({ webhookId: webhook.id, test: true, status: 'pending' });
    await receiver.waitFor(1);
    release();
  });
});

/**
 * Without a worker a test delivery is never attempted, so a waiting request waits until something
 * else ends it: here, its webhook's deletion, and the API shutting down.
 */
describe('?wait=true ended by the API itself', () => {
  let stack: Stack;
  let stopped = false;
  let tenant: Tenant;

  beforeAll(async () => {
    stack = await startStack({ worker: false, listen: true });
    tenant = await newTenant(stack);
  });
  afterAll(async () => {
    if (!stopped) await stack?.stop();
  });

  async function waiters() {
    const { TestAttemptWaiters } = await import('../apps/api/src/deliveries/test-attempt-waiters');
    return stack.api.get(TestAttemptWaiters);
  }

  /** Starts a `?wait=true` request and resolves once it is waiting; `answer` gives its status and body. */
  async function waitingTest(webhookId: string) {
    const answer = fetch(`${stack.url}/webhooks/${webhookId}/test?wait=true`, { method: 'POST', headers: { ...tenant.auth, 'content-type': 'application/json' }, body: '{}' }).then(
      async (res) => ({ status: res.status, body: (await res.json()) as unknown }),
      (err: Error) => ({ status: 0, body: { error: err.message } }),
    );
    const registry = await waiters();
    await eventually(async () => (registry.size === 1 ? true : undefined), 5_000);
    return { answer };
  }

  /** Opens a raw connection to the API and writes `count` `?wait=true` requests on it at once (HTTP/1.1 pipelining). */
  async function pipelineTests(webhookId: string, count: number): Promise<Socket> {
    const url = new URL(stack.url!);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    // Answers are not read: the first is held by the wait, the others queue behind it.
    socket.on('data', () => undefined);
    const one = `POST /webhooks/${webhookId}/test?wait=true HTTP/1.1\r\nHost: api\r\nAuthorization: ${tenant.auth.Authorization}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`;
    socket.write(one.repeat(count));
    return socket;
  }

  it('stops waiting for every request pipelined on a connection when the connection closes', async () => {
    // Long enough that only noticing the client leave can end the waits in time.
    Object.assign((await waiters()).options, { boundMs: 20_000, recheckMs: 5_000 });
    const { webhook } = await createWebhook(stack, tenant, 'http://127.0.0.1:9/hook');
    const registry = await waiters();
    const socket = await pipelineTests(webhook.id, 2);
    // Both are waiting: the second one's response, queued behind the first, has no socket yet.
    await eventually(async () => (registry.size === 2 ? true : undefined), 5_000);
    socket.destroy();
    const destroyed = Date.now();
    await eventually(async () => (registry.size === 0 ? true : undefined), 10_000);
    expect(Date.now() - destroyed).toBeLessThan(1_500);
  });

  it('leaves no listener behind on a keep-alive connection that carries many waits', async () => {
    // Each wait looks once and answers 202: the listeners are added and removed all the same.
    Object.assign((await waiters()).options, { boundMs: 0, recheckMs: 5_000 });
    const { webhook } = await createWebhook(stack, tenant, 'http://127.0.0.1:9/hook');
    const connections: Socket[] = [];
    const onConnection = (socket: Socket) => connections.push(socket);
    stack.api.getHttpServer().on('connection', onConnection);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const post = () =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${stack.url}/webhooks/${webhook.id}/test?wait=true`, { method: 'POST', agent, headers: { ...tenant.auth, 'content-type': 'application/json' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        });
        req.on('error', reject);
        req.end('{}');
      });
    try {
      expect(await post()).toBe(202);
      expect(connections).toHaveLength(1);
      const listeners = connections[0].listenerCount('close');
      for (let i = 0; i < 15; i++) expect(await post()).toBe(202);
      // One connection carried them all, and holds no more listeners than after the first.
      expect(connections).toHaveLength(1);
      expect(connections[0].listenerCount('close')).toBe(listeners);
    } finally {
      stack.api.getHttpServer().off('connection', onConnection);
      agent.destroy();
    }
  });

  it("answers as soon as the test delivery is cancelled by its webhook's deletion", async () => {
    // Long enough that only the API's announcement of the cancellation can answer in time.
    Object.assign((await waiters()).options, { boundMs: 20_000, recheckMs: 20_000 });
    const { webhook } = await createWebhook(stack, tenant, 'http://127.0.0.1:9/hook');
    const { answer } = await waitingTest(webhook.id);
    await stack.http().delete(`/webhooks/${webhook.id}`).set(tenant.auth).expect(204);
    const deleted = Date.now();
    const res = await answer;
    expect(Date.now() - deleted).toBeLessThan(1_500);
    expect(res).toMatchObject({ status: 200, body: { delivery: { webhookId: webhook.id, test: true, status: 'cancelled', attempts: 0 } } });
  });

  // Last: it stops the stack.
  it('answers a waiting request 202 at once when the API shuts down, so that closing does not wait for it', async () => {
    Object.assign((await waiters()).options, { boundMs: 20_000, recheckMs: 5_000 });
    const { webhook } = await createWebhook(stack, tenant, 'http://127.0.0.1:9/hook');
    const { answer } = await waitingTest(webhook.id);
    const closing = Date.now();
    stopped = true;
    await stack.stop();
    expect(Date.now() - closing).toBeLessThan(3_000);
    expect(await answer).toMatchObject({ status: 202, body: { delivery: { webhookId: webhook.id, test: true, status: 'pending', attempts: 0 } } });
  });
});
