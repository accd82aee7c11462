import { createHmac } from 'node:crypto';
import { withStackAndReceiver } from './support/harness';
import { ReceivedRequest } from './support/receiver';
import { eventually } from './support/tenant';
import { documented } from './support/payloads';

/*
 * Operational events (delivery.exhausted, webhook.disabled) raised by Bellhop into the project:
 * received, signed, by the webhooks that subscribe to them, never by the webhook they are about;
 * never raised by test deliveries nor by operational deliveries that fail themselves.
 */

describe('operational events', () => {
  const h = withStackAndReceiver('Operational', { env: { AUTO_DISABLE_AFTER: '500ms' } });
  const http = () => h.stack.http();

  async function webhook(path: string, events: string[]) {
    const res = await http().post(`/projects/${h.tenant.projectId}/webhooks`).set(h.tenant.auth).send({ url: `${h.receiver.url}/${path}`, events }).expect(201);
    return { id: res.body.webhook.id as string, secret: res.body.secret as string };
  }
  const at = (path: string) => h.receiver.requests.filter((r) => r.url === `/${path}`);
  const bodyOf = (r: ReceivedRequest) => JSON.parse(r.body.toString('utf8'));
  const ofType = (path: string, type: string) => at(path).filter((r) => r.headers['x-bellwether-event'] === type);

  beforeEach(() => {
    h.receiver.responder = (req) => {
      const path = req.url.slice(1);
      if (path.startsWith('fail')) return { status: 500, body: 'down' };
      if (path.startsWith('gone')) return { status: 410 };
      return { status: 200 };
    };
  });

  it('raises delivery.exhausted for a delivery that ends failed, to subscribers other than its webhook', async () => {
    // `*` takes every type, operational ones included: it still never gets the event about itself.
    const failing = await webhook('fail-a', ['*']);
    const watcher = await webhook('watch', ['delivery.exhausted', 'webhook.disabled']);
    // An operational delivery that fails raises nothing further.
    const failingWatcher = await webhook('fail-watch', ['delivery.exhausted']);

    // A test send that fails raises nothing.
    await http().post(`/webhooks/${failing.id}/test`).set(h.tenant.auth).send({ event: 'baseline.uploaded' }).expect(202);
    const published = await http().post(`/projects/${h.tenant.projectId}/events`).set(h.tenant.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded') }).expect(202);
    const eventId = published.body.event.id as string;

    const [received] = await eventually(async () => (ofType('watch', 'delivery.exhausted').length > 0 ? ofType('watch', 'delivery.exhausted') : undefined), 20_000);
    const body = bodyOf(received);
    const [delivery] = (await http().get(`/projects/${h.tenant.projectId}/deliveries?webhookId=${failing.id}&test=false`).set(h.tenant.auth).expect(200)).body.deliveries;
    expect(body).toEqual({
      event: 'delivery.exhausted',
      timestamp: expect.any(String),
      project: { id: h.tenant.projectId, name: 'my-mcp-server' },
      data: { deliveryId: delivery.id, webhookId: failing.id, eventId, event: 'baseline.uploaded', attempts: 5, lastStatusCode: 500, lastError: null },
    });
    // Signed with the watcher's own secret, like any delivery.
    const expected = 'sha256=' + createHmac('sha256', watcher.secret).update(received.body).digest('hex');
    expect(received.headers['x-bellwether-signature']).toBe(expected);

    // The failing watcher gets it too, fails five times, and that raises no further event.
    await eventually(async () => (ofType('fail-watch', 'delivery.exhausted').length >= 5 ? true : undefined), 20_000);
    await eventually(async () => {
      const list = (await http().get(`/webhooks/${failingWatcher.id}/deliveries`).set(h.tenant.auth).expect(200)).body.deliveries;
      return list.length === 1 && list[0].status === 'failed' ? true : undefined;
    }, 20_000);
    // The test delivery ended too (it is retried like any other) without raising anything.
    await eventually(async () => {
      const list = (await http().get(`/projects/${h.tenant.projectId}/deliveries?webhookId=${failing.id}&test=true`).set(h.tenant.auth).expect(200)).body.deliveries;
      return list.length === 1 && list[0].status !== 'pending' ? true : undefined;
    }, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(ofType('watch', 'delivery.exhausted').map((r) => bodyOf(r).data.webhookId)).toEqual([failing.id]);
    // Never to the webhook it is about.
    expect(ofType('fail-a', 'delivery.exhausted').filter((r) => bodyOf(r).data.webhookId === failing.id)).toEqual([]);
    // The failing watcher, whose failures were all operational, was disabled for failing too long
    // (AUTO_DISABLE_AFTER is short here) without raising webhook.disabled; the webhook whose own
    // deliveries failed raised it.
    expect((await http().get(`/webhooks/${failingWatcher.id}`).set(h.tenant.auth).expect(200)).body.webhook).toMatchObject({ enabled: false, disabledReason: 'failing' });
    await eventually(async () => (ofType('watch', 'webhook.disabled').some((r) => bodyOf(r).data.webhookId === failing.id) ? true : undefined), 10_000);
    expect(ofType('watch', 'webhook.disabled').map((r) => bodyOf(r).data.webhookId)).toEqual([failing.id]);
    // The event is in the project's history like any other; users cannot publish one.
    const events = (await http().get(`/projects/${h.tenant.projectId}/events?event=delivery.exhausted`).set(h.tenant.auth).expect(200)).body.events;
    expect(events.length).toBeGreaterThanOrEqual(1);
    await http().post(`/projects/${h.tenant.projectId}/events`).set(h.tenant.auth).send({ event: 'delivery.exhausted', data: body.data }).expect(422);
  }, 60_000);

  it('raises webhook.disabled when a receiver answers 410 Gone, and when a webhook fails for too long', async () => {
    const gone = await webhook('gone', ['baseline.*', 'webhook.disabled']);
    const failing = await webhook('fail-long', ['baseline.*']);
    await webhook('watch2', ['webhook.disabled']);
    await http().post(`/projects/${h.tenant.projectId}/events`).set(h.tenant.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded') }).expect(202);

    const disabledEvents = () => ofType('watch2', 'webhook.disabled').map((r) => bodyOf(r).data);
    await eventually(async () => (disabledEvents().length >= 2 ? true : undefined), 30_000).catch((err) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(disabledEvents())}`);
    });
    const byWebhook = new Map(disabledEvents().map((d) => [d.webhookId, d]));
    expect(byWebhook.get(gone.id)).toEqual({ webhookId: gone.id, name: '127.0.0.1', url: `${h.receiver.url}/gone`, reason: 'gone', failingSince: expect.any(String) });
    expect(byWebhook.get(failing.id)).toEqual({ webhookId: failing.id, name: '127.0.0.1', url: `${h.receiver.url}/fail-long`, reason: 'failing', failingSince: expect.any(String) });
    expect(new Date(byWebhook.get(failing.id).failingSince).getTime()).toBeLessThan(Date.now());
    const state = (await http().get(`/webhooks/${failing.id}`).set(h.tenant.auth).expect(200)).body.webhook;
    expect(state).toMatchObject({ enabled: false, disabledReason: 'failing', health: { status: 'disabled' } });
    // Each raised once; the disabled webhook (subscribed to webhook.disabled itself) never gets its own.
    expect(disabledEvents()).toHaveLength(2);
    expect(ofType('gone', 'webhook.disabled').filter((r) => bodyOf(r).data.webhookId === gone.id)).toEqual([]);
  }, 60_000);
});
