import { Client } from 'pg';
import { newId } from '@bellhop/domain';
import { Stack, startStack } from './support/stack';
import { createWebhook, newTenant, Tenant } from './support/tenant';
import { documented } from './support/payloads';

/*
 * Delivery history in bounded answers: a delivery shows its 20 most recent attempts and a cursor to
 * the older ones, which /attempts pages through; an event shows at most 100 deliveries. And CORS for
 * a browser dashboard: only the origins CORS_ORIGINS names. No worker: the attempts are written
 * straight into Postgres.
 */
describe('delivery history, bounded, and CORS', () => {
  let stack: Stack;
  let tenant: Tenant;

  beforeAll(async () => {
    stack = await startStack({ worker: false, env: { CORS_ORIGINS: 'https://dash.example.com,http://localhost:5173' } });
    tenant = await newTenant(stack, 'History');
  }, 60_000);
  afterAll(() => stack?.stop(), 30_000);

  it('shows the 20 most recent attempts of a delivery, and pages through all of them from the cursor it gives', async () => {
    const { webhook } = await createWebhook(stack, tenant, 'https://hooks.example.com/history', ['baseline.uploaded']);
    await stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded') }).expect(202);
    const list = await stack.http().get(`/webhooks/${webhook.id}/deliveries`).set(tenant.auth).expect(200);
    const deliveryId = list.body.deliveries[0].id as string;
    const db = new Client({ connectionString: stack.databaseUrl });
    await db.connect();
    try {
      for (let n = 1; n <= 25; n += 1) {
        await db.query(
          `INSERT INTO attempts (id, delivery_id, attempt, trigger, request_url, request_headers, response_status, response_time_ms, created_at)
           VALUES ($1, $2, $3, 'manual', 'https://hooks.example.com/history', '{}', 500, 5, now())`,
          [newId('attempt'), deliveryId, n],
        );
      }
    } finally {
      await db.end();
    }

    const detail = await stack.http().get(`/deliveries/${deliveryId}`).set(tenant.auth).expect(200);
    const shown = detail.body.delivery.attempts as Array<{ id: string; attempt: number; request: { body: string } }>;
    expect(shown.map((a) => a.attempt)).toEqual(Array.from({ length: 20 }, (_, i) => i + 6));
    expect(JSON.parse(shown[0].request.body)).toMatchObject({ event: 'baseline.uploaded' });
    expect(detail.body.delivery.attemptsNextCursor).toBe(shown[0].id);

    const older = await stack.http().get(`/deliveries/${deliveryId}/attempts?cursor=${detail.body.delivery.attemptsNextCursor}`).set(tenant.auth).expect(200);
    expect(older.body.attempts.map((a: { attempt: number }) => a.attempt)).toEqual([5, 4, 3, 2, 1]);
    expect(older.body.nextCursor).toBeNull();

    const pages: number[] = [];
    let cursor: string | null = null;
    do {
      const res: { body: { attempts: Array<{ attempt: number }>; nextCursor: string | null } } = await stack.http().get(`/deliveries/${deliveryId}/attempts?limit=7${cursor ? `&cursor=${cursor}` : ''}`).set(tenant.auth).expect(200);
      pages.push(...res.body.attempts.map((a: { attempt: number }) => a.attempt));
      cursor = res.body.nextCursor;
    } while (cursor);
    expect(pages).toEqual(Array.from({ length: 25 }, (_, i) => 25 - i));
    // A page carries a body per attempt: 20 at most.
    await stack.http().get(`/deliveries/${deliveryId}/attempts?limit=21`).set(tenant.auth).expect(422);

    const other = await newTenant(stack, 'Other');
    await stack.http().get(`/deliveries/${deliveryId}/attempts`).set(other.auth).expect(404);
  });

  it('shows at most 100 deliveries with an event', async () => {
    for (let i = 0; i < 101; i += 1) await createWebhook(stack, tenant, `https://hooks.example.com/fan/${i}`, ['baseline.security_finding']);
    const published = await stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send({ event: 'baseline.security_finding', data: documented('baseline.security_finding') }).expect(202);
    expect(published.body.deliveries).toBe(101);
    const event = await stack.http().get(`/events/${published.body.event.id}`).set(tenant.auth).expect(200);
    expect(event.body.event.deliveries).toHaveLength(100);
  });

  it("filters deliveries and events by any type name: the project's own, a source's, one never sent; a malformed one is 422", async () => {
    const t = await newTenant(stack, 'Filters');
    await stack.http().post(`/projects/${t.projectId}/event-types`).set(t.auth).send({ type: 'deploy.finished' }).expect(201);
    const { webhook } = await createWebhook(stack, t, 'https://hooks.example.com/filters', ['deploy.finished', 'baseline.uploaded', 'github.*']);
    const own = await stack.http().post(`/projects/${t.projectId}/events`).set(t.auth).send({ event: 'deploy.finished', data: { version: '1.2.3' } }).expect(202);
    await stack.http().post(`/projects/${t.projectId}/events`).set(t.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded') }).expect(202);
    const eventId = own.body.event.id as string;

    const byWebhook = await stack.http().get(`/webhooks/${webhook.id}/deliveries?event=deploy.finished`).set(t.auth).expect(200);
    expect(byWebhook.body.deliveries).toEqual([expect.objectContaining({ eventId, event: 'deploy.finished' })]);
    const byProject = await stack.http().get(`/projects/${t.projectId}/deliveries?event=deploy.finished`).set(t.auth).expect(200);
    expect(byProject.body.deliveries).toEqual([expect.objectContaining({ eventId, event: 'deploy.finished' })]);
    const events = await stack.http().get(`/projects/${t.projectId}/events?event=deploy.finished`).set(t.auth).expect(200);
    expect(events.body.events.map((e: { id: string }) => e.id)).toEqual([eventId]);

    // An equality on the stored name: a source's type or a name nothing was sent as finds nothing, and is no error.
    for (const name of ['github.push', 'gitlab.merge_request', 'deploy.never_sent']) {
      expect((await stack.http().get(`/webhooks/${webhook.id}/deliveries?event=${name}`).set(t.auth).expect(200)).body.deliveries).toEqual([]);
      expect((await stack.http().get(`/projects/${t.projectId}/deliveries?event=${name}`).set(t.auth).expect(200)).body.deliveries).toEqual([]);
      expect((await stack.http().get(`/projects/${t.projectId}/events?event=${name}`).set(t.auth).expect(200)).body.events).toEqual([]);
    }
    for (const name of ['Deploy%20Finished', 'deploy', `a.${'x'.repeat(63)}`, 'github.*']) {
      for (const path of [`/webhooks/${webhook.id}/deliveries`, `/projects/${t.projectId}/deliveries`, `/projects/${t.projectId}/events`]) {
        const res = await stack.http().get(`${path}?event=${name}`).set(t.auth).expect(422);
        expect(res.body).toMatchObject({ code: 'validation_failed', details: expect.arrayContaining([{ field: 'event', message: expect.any(String) }]) });
      }
    }
  });

  it('answers a browser dashboard on a named origin, and no other origin', async () => {
    const preflight = await stack
      .http()
      .options('/projects')
      .set('Origin', 'https://dash.example.com')
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'authorization,content-type,idempotency-key');
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers['access-control-allow-origin']).toBe('https://dash.example.com');
    expect(String(preflight.headers['access-control-allow-headers']).toLowerCase()).toContain('idempotency-key');
    const get = await stack.http().get('/projects').set('Origin', 'http://localhost:5173').set(tenant.auth).expect(200);
    expect(get.headers['access-control-allow-origin']).toBe('http://localhost:5173');
    expect(String(get.headers['access-control-expose-headers']).toLowerCase()).toContain('x-request-id');
    const stranger = await stack.http().get('/projects').set('Origin', 'https://evil.example.com').set(tenant.auth).expect(200);
    expect(stranger.headers['access-control-allow-origin']).toBeUndefined();
  });
});
