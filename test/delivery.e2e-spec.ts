import { createHmac, timingSafeEqual } from 'node:crypto';
import { Queue } from 'bullmq';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { Receiver } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { TEST_REDIS_URL } from './support/env';
import { createWebhook, eventually, newTenant, Tenant } from './support/tenant';
import { documented } from './support/payloads';

/** Verification exactly as the Bellwether documentation shows it: HMAC-SHA256 of the raw body, hex. */
function bellwetherVerify(rawBody: Buffer, header: string, secret: string): boolean {
  const expected = 'sha256=' + createHmac('sha256', secret).update(rawBody).digest('hex');
  return expected.length === header.length && timingSafeEqual(Buffer.from(expected), Buffer.from(header));
}

describe('delivery end to end', () => {
  let stack: Stack;
  let receiver: Receiver;
  let tenant: Tenant;

  beforeAll(async () => {
    stack = await startStack();
    receiver = await new Receiver().start();
  });

  afterAll(async () => {
    await stack?.stop();
    await receiver?.stop();
  });

  beforeEach(async () => {
    tenant = await newTenant(stack);
    receiver.requests.length = 0;
    receiver.responder = () => ({ status: 200, body: 'ok' });
  });

  async function publish(extra: Record<string, unknown> = {}, event = 'baseline.drift_detected') {
    const res = await stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send({ event, data: documented(event, extra) }).expect(202);
    return res.body as { event: { id: string; event: string; timestamp: string; projectId: string }; deliveries: number };
  }

  async function deliveriesOf(webhookId: string, query = '') {
    const res = await stack.http().get(`/webhooks/${webhookId}/deliveries${query}`).set(tenant.auth).expect(200);
    return res.body as { deliveries: Array<Record<string, any>>; nextCursor: string | null };
  }

  it('delivers the signed envelope, verifiable by both public verification methods', async () => {
    const { webhook, secret } = await createWebhook(stack, tenant, `${receiver.url}/hook`);
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const published = await publish({ note: 'héllo ✓' });
    expect(published.deliveries).toBe(1);
    expect(published.event.id).toMatch(/^evt_/);
    expect(published.event.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    await receiver.waitFor(1);
    const [req] = receiver.requests;
    expect(req.method).toBe('POST');
    expect(req.url).toBe('/hook');
    expect(JSON.parse(req.body.toString('utf8'))).toEqual({
      event: 'baseline.drift_detected',
      timestamp: published.event.timestamp,
      project: { id: tenant.projectId, name: 'my-mcp-server' },
      data: documented('baseline.drift_detected', { note: 'héllo ✓' }),
    });
    expect(req.body.toString('utf8').startsWith('{"event":"baseline.drift_detected","timestamp":')).toBe(true);
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers['user-agent']).toMatch(/^Bellhop-Webhooks\/\d+\.\d+\.\d+/);
    expect(req.headers['x-bellwether-event']).toBe('baseline.drift_detected');
    expect(req.headers['x-bellwether-delivery']).toMatch(/^dlv_/);
    expect(req.headers['x-bellwether-attempt']).toBe('1');
    expect(req.headers['x-bellwether-signature-previous']).toBeUndefined();
    expect(bellwetherVerify(req.body, String(req.headers['x-bellwether-signature']), secret)).toBe(true);
    expect(bellwetherVerify(req.body, String(req.headers['x-bellwether-signature']), secret.replace(/.$/, 'A') === secret ? secret + 'x' : secret.replace(/.$/, 'A'))).toBe(false);

    expect(req.headers['webhook-id']).toBe(published.event.id);
    const timestamp = Number(req.headers['webhook-timestamp']);
    expect(Math.abs(timestamp - Date.now() / 1000)).toBeLessThan(30);
    const verified = new StandardWebhook(secret).verify(req.body.toString('utf8'), {
      'webhook-id': String(req.headers['webhook-id']),
      'webhook-timestamp': String(req.headers['webhook-timestamp']),
      'webhook-signature': String(req.headers['webhook-signature']),
    });
    expect(verified).toEqual(JSON.parse(req.body.toString('utf8')));

    const history = await eventually(async () => {
      const list = await deliveriesOf(webhook.id);
      return list.deliveries[0]?.status === 'succeeded' ? list : undefined;
    });
    expect(history.deliveries).toHaveLength(1);
    expect(history.deliveries[0]).toMatchObject({
      id: req.headers['x-bellwether-delivery'],
      webhookId: webhook.id,
      eventId: published.event.id,
      event: 'baseline.drift_detected',
      status: 'succeeded',
      test: false,
      attempts: 1,
      lastStatusCode: 200,
      nextAttemptAt: null,
    });
    expect(typeof history.deliveries[0].lastResponseTimeMs).toBe('number');
    expect(history.deliveries[0].completedAt).not.toBeNull();
    expect(JSON.stringify(history)).not.toContain(secret);
  });

  it('makes exactly five attempts on the schedule against an endpoint that always fails, then marks the delivery failed', async () => {
    receiver.responder = () => ({ status: 500, body: 'boom' });
    const { webhook } = await createWebhook(stack, tenant, `${receiver.url}/always-fails`);
    await publish();
    await receiver.waitFor(5);
    const delivery = await eventually(async () => {
      const list = await deliveriesOf(webhook.id);
      return list.deliveries[0]?.status === 'failed' ? list.deliveries[0] : undefined;
    });
    expect(delivery.attempts).toBe(5);
    expect(delivery.lastStatusCode).toBe(500);
    expect(delivery.nextAttemptAt).toBeNull();
    // No sixth attempt, even after the longest wait of the schedule has passed again.
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(receiver.requests).toHaveLength(5);

    const bodies = receiver.requests.map((r) => r.body.toString('hex'));
    expect(new Set(bodies).size).toBe(1);
    expect(receiver.requests.map((r) => r.headers['x-bellwether-attempt'])).toEqual(['1', '2', '3', '4', '5']);
    expect(new Set(receiver.requests.map((r) => r.headers['x-bellwether-delivery'])).size).toBe(1);
    // The schedule is 100ms, 200ms, 300ms, 400ms: each gap is at least its step.
    const gaps = receiver.requests.slice(1).map((r, i) => r.at - receiver.requests[i].at);
    [100, 200, 300, 400].forEach((step, i) => expect(gaps[i]).toBeGreaterThanOrEqual(step - 15));

    const detail = await stack.http().get(`/deliveries/${delivery.id}`).set(tenant.auth).expect(200);
    const attempts = detail.body.delivery.attempts as Array<Record<string, any>>;
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3, 4, 5]);
    for (const attempt of attempts) {
      expect(attempt.id).toMatch(/^att_/);
      expect(attempt.trigger).toBe('scheduled');
      expect(attempt.request.url).toBe(`${receiver.url}/always-fails`);
      expect(attempt.request.body).toBe(receiver.requests[0].body.toString('utf8'));
      expect(attempt.request.headers['x-bellwether-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
      expect(attempt.response).toMatchObject({ statusCode: 500, body: 'boom', bodyTruncated: false });
      expect(attempt.error).toBeNull();
    }
  });

  it('succeeds on a later attempt against a flaky endpoint', async () => {
    receiver.responder = (_req, index) => (index < 2 ? { status: 503, body: 'later' } : { status: 204 });
    const { webhook } = await createWebhook(stack, tenant, `${receiver.url}/flaky`);
    await publish();
    const delivery = await eventually(async () => {
      const list = await deliveriesOf(webhook.id);
      return list.deliveries[0]?.status === 'succeeded' ? list.deliveries[0] : undefined;
    });
    expect(delivery.attempts).toBe(3);
    expect(delivery.lastStatusCode).toBe(204);
    const detail = await stack.http().get(`/deliveries/${delivery.id}`).set(tenant.auth).expect(200);
    expect(detail.body.delivery.attempts.map((a: any) => a.response.statusCode)).toEqual([503, 503, 204]);
  });

  it('records a refused connection as an attempt with an error code', async () => {
    const closed = await new Receiver().start();
    const url = `${closed.url}/gone`;
    await closed.stop();
    const { webhook } = await createWebhook(stack, tenant, url);
    await publish();
    const delivery = await eventually(async () => {
      const list = await deliveriesOf(webhook.id);
      return list.deliveries[0]?.attempts >= 1 ? list.deliveries[0] : undefined;
    });
    const detail = await stack.http().get(`/deliveries/${delivery.id}`).set(tenant.auth).expect(200);
    expect(detail.body.delivery.attempts[0].response).toBeNull();
    expect(detail.body.delivery.attempts[0].error).toMatchObject({ code: 'connection_refused' });
  });

  it('filters and pages the delivery history, newest first', async () => {
    const { webhook } = await createWebhook(stack, tenant, `${receiver.url}/history`, ['baseline.drift_detected', 'baseline.uploaded']);
    await publish({ n: 1 }, 'baseline.uploaded');
    await publish({ n: 2 });
    await publish({ n: 3 });
    await receiver.waitFor(3);
    await eventually(async () => ((await deliveriesOf(webhook.id, '?status=succeeded')).deliveries.length === 3 ? true : undefined));

    const first = await deliveriesOf(webhook.id, '?limit=2');
    expect(first.deliveries).toHaveLength(2);
    expect(first.nextCursor).toBe(first.deliveries[1].id);
    const second = await deliveriesOf(webhook.id, `?limit=2&cursor=${first.nextCursor}`);
    expect(second.deliveries).toHaveLength(1);
    expect(second.nextCursor).toBeNull();
    const ids = [...first.deliveries, ...second.deliveries].map((d) => d.id);
    expect([...ids].sort().reverse()).toEqual(ids);

    expect((await deliveriesOf(webhook.id, '?event=baseline.uploaded')).deliveries).toHaveLength(1);
    expect((await deliveriesOf(webhook.id, '?status=failed')).deliveries).toHaveLength(0);
    const bad = await stack.http().get(`/webhooks/${webhook.id}/deliveries?status=lost`).set(tenant.auth).expect(422);
    expect(bad.body).toMatchObject({ code: 'validation_failed', details: [expect.objectContaining({ field: 'status' })] });

    const events = await stack.http().get(`/projects/${tenant.projectId}/events?limit=2`).set(tenant.auth).expect(200);
    expect(events.body.events).toHaveLength(2);
    expect(events.body.nextCursor).toBe(events.body.events[1].id);
    const event = await stack.http().get(`/events/${events.body.events[0].id}`).set(tenant.auth).expect(200);
    expect(event.body.event).toMatchObject({ event: 'baseline.drift_detected', projectId: tenant.projectId, payload: { data: { n: 3 } } });
    expect(event.body.event.deliveries).toHaveLength(1);
  });

  it('sends a signed test event with ?wait=true and keeps it apart from the event list', async () => {
    const { webhook, secret } = await createWebhook(stack, tenant, `${receiver.url}/test`, ['baseline.security_finding']);
    const res = await stack.http().post(`/webhooks/${webhook.id}/test?wait=true`).set(tenant.auth).send({}).expect(200);
    expect(res.body.delivery).toMatchObject({ webhookId: webhook.id, event: 'baseline.security_finding', test: true, status: 'succeeded', attempts: 1 });
    expect(res.body.delivery.attempts).toEqual(1);
    const [req] = receiver.requests;
    expect(bellwetherVerify(req.body, String(req.headers['x-bellwether-signature']), secret)).toBe(true);
    // The Bellwether documentation's own example, as written there.
    expect(JSON.parse(req.body.toString()).data).toEqual({
      version: 12,
      findings: [{ severity: 'high', category: 'injection', tool: 'execute_command', description: 'Potential command injection vulnerability' }],
    });

    const detail = await stack.http().get(`/deliveries/${res.body.delivery.id}`).set(tenant.auth).expect(200);
    expect(detail.body.delivery.attempts[0].trigger).toBe('test');

    const queued = await stack.http().post(`/webhooks/${webhook.id}/test`).set(tenant.auth).send({ event: 'baseline.uploaded' }).expect(202);
    expect(queued.body.delivery).toMatchObject({ test: true, event: 'baseline.uploaded' });
    const events = await stack.http().get(`/projects/${tenant.projectId}/events`).set(tenant.auth).expect(200);
    expect(events.body.events).toHaveLength(0);
  });

  it('retries a failed delivery by hand, recorded with trigger manual', async () => {
    receiver.responder = (_req, index) => (index < 5 ? { status: 500 } : { status: 200 });
    const { webhook } = await createWebhook(stack, tenant, `${receiver.url}/manual`);
    await publish();
    const failed = await eventually(async () => {
      const list = await deliveriesOf(webhook.id);
      return list.deliveries[0]?.status === 'failed' ? list.deliveries[0] : undefined;
    });
    const retried = await stack.http().post(`/deliveries/${failed.id}/retry`).set(tenant.auth).expect(202);
    // Asked for, not made yet: the delivery stays failed until the manual attempt succeeds.
    expect(retried.body.delivery).toMatchObject({ id: failed.id, status: 'failed' });
    const done = await eventually(async () => {
      const res = await stack.http().get(`/deliveries/${failed.id}`).set(tenant.auth).expect(200);
      return res.body.delivery.status === 'succeeded' ? res.body.delivery : undefined;
    });
    expect(done.attempts).toHaveLength(6);
    expect(done.attempts[5]).toMatchObject({ attempt: 6, trigger: 'manual', response: expect.objectContaining({ statusCode: 200 }) });
    expect(receiver.requests[5].headers['x-bellwether-attempt']).toBe('6');
  });

  it('answers a replayed Idempotency-Key with the first event and sends nothing twice', async () => {
    await createWebhook(stack, tenant, `${receiver.url}/idem`);
    const send = () =>
      stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).set('Idempotency-Key', 'order-42').send({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected', { a: 1 }) });
    const first = await send().expect(202);
    const again = await send().expect(200);
    expect(again.body).toEqual(first.body);
    await receiver.waitFor(1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.requests).toHaveLength(1);
  });

  it('turns concurrent requests with one Idempotency-Key into one event and one set of deliveries', async () => {
    const { webhook } = await createWebhook(stack, tenant, `${receiver.url}/idem-race`);
    await createWebhook(stack, tenant, `${receiver.url}/idem-race-2`);
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).set('Idempotency-Key', 'race-1').send({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected', { a: 1 }) }),
      ),
    );
    expect(answers.filter((r) => r.status === 202)).toHaveLength(1);
    expect(answers.filter((r) => r.status === 200)).toHaveLength(19);
    expect(new Set(answers.map((r) => r.body.event.id)).size).toBe(1);
    expect(answers.every((r) => r.body.deliveries === 2)).toBe(true);
    await receiver.waitFor(2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(receiver.requests).toHaveLength(2);
    const events = await stack.http().get(`/projects/${tenant.projectId}/events`).set(tenant.auth).expect(200);
    expect(events.body.events).toHaveLength(1);
    expect((await deliveriesOf(webhook.id)).deliveries).toHaveLength(1);
  });

  it('puts only ids in job data, never payloads or secrets', async () => {
    receiver.responder = () => ({ status: 500 });
    const { webhook, secret } = await createWebhook(stack, tenant, `${receiver.url}/jobs`);
    await stack.http().patch(`/webhooks/${webhook.id}`).set(tenant.auth).send({}).expect(200);
    await publish({ marker: 'payload-marker-123' });
    await receiver.waitFor(1);
    const url = new URL(TEST_REDIS_URL);
    const queue = new Queue('delivery', { prefix: stack.queuePrefix, connection: { host: url.hostname, port: Number(url.port || 6379) } });
    try {
      const jobs = await eventually(async () => {
        const found = await queue.getJobs(['delayed', 'waiting', 'active', 'prioritized']);
        return found.length > 0 ? found : undefined;
      });
      for (const job of jobs) {
        expect(Object.keys(job.data).sort()).toEqual(['attempt', 'deliveryId', 'kind', 'organizationId', 'webhookId']);
        expect(job.data.kind).toBe('scheduled');
        expect(job.data.attempt).toEqual(expect.any(Number));
        expect(job.data.deliveryId).toMatch(/^dlv_/);
        expect(job.data.webhookId).toBe(webhook.id);
        expect(job.data.organizationId).toBe(tenant.organizationId);
        const serialized = JSON.stringify(job.asJSON());
        expect(serialized).not.toContain(secret);
        expect(serialized).not.toContain('payload-marker-123');
      }
    } finally {
      await queue.close();
    }
    const list = await stack.http().get(`/projects/${tenant.projectId}/webhooks`).set(tenant.auth).expect(200);
    expect(JSON.stringify(list.body)).not.toContain(secret);
    expect(list.body.webhooks[0]).not.toHaveProperty('secret');
  });
});
