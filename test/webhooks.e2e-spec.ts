import { createHmac } from 'node:crypto';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { withStackAndReceiver } from './support/harness';
import { documented } from './support/payloads';

/*
 * A webhook's own fields, end to end: name, a secret the caller chose, custom request headers sent
 * with every attempt, who created it. The worker runs in this process and delivers to a real
 * receiver on 127.0.0.1.
 */

/** The Bellwether documentation's Node verification recipe, as a receiver would write it. */
function bellwetherVerifies(rawBody: Buffer, signature: string, secret: string): boolean {
  const expected = 'sha256=' + createHmac('sha256', secret).update(rawBody).digest('hex');
  return signature === expected;
}

describe('webhook fields', () => {
  const h = withStackAndReceiver('Fields');

  const create = (body: Record<string, unknown>) =>
    h.stack.http().post(`/projects/${h.tenant.projectId}/webhooks`).set(h.tenant.auth).send({ events: ['baseline.drift_detected'], ...body });

  it('signs with a secret the caller chose and sends its custom headers with every attempt', async () => {
    const secret = 'whsec_' + Buffer.alloc(32, 42).toString('base64');
    const created = await create({
      url: `${h.receiver.url}/chosen`,
      name: 'Payments prod',
      secret,
      headers: { Authorization: 'Bearer static-token', 'X-Team': 'payments' },
    }).expect(201);
    expect(created.body.secret).toBe(secret);
    expect(created.body.webhook).toMatchObject({
      name: 'Payments prod',
      headers: { Authorization: 'Bearer static-token', 'X-Team': 'payments' },
      createdBy: { type: 'user', id: h.tenant.userId },
    });
    // Shown by GET and lists, the secret never.
    const got = await h.stack.http().get(`/webhooks/${created.body.webhook.id}`).set(h.tenant.auth).expect(200);
    expect(got.body).toEqual({ webhook: created.body.webhook });

    const before = h.receiver.requests.length;
    await h.stack.http().post(`/projects/${h.tenant.projectId}/events`).set(h.tenant.auth).send({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected', { n: 1 }) }).expect(202);
    await h.receiver.waitFor(before + 1);
    const req = h.receiver.requests[before];
    expect(req.headers.authorization).toBe('Bearer static-token');
    expect(req.headers['x-team']).toBe('payments');
    expect(req.headers['content-type']).toBe('application/json');
    expect(bellwetherVerifies(req.body, String(req.headers['x-bellwether-signature']), secret)).toBe(true);
    expect(() =>
      new StandardWebhook(secret.slice('whsec_'.length)).verify(req.body.toString('utf8'), {
        'webhook-id': String(req.headers['webhook-id']),
        'webhook-timestamp': String(req.headers['webhook-timestamp']),
        'webhook-signature': String(req.headers['webhook-signature']),
      }),
    ).not.toThrow();
    // The history shows the headers as sent.
    const deliveries = await h.stack.http().get(`/webhooks/${created.body.webhook.id}/deliveries`).set(h.tenant.auth).expect(200);
    const detail = await h.stack.http().get(`/deliveries/${deliveries.body.deliveries[0].id}`).set(h.tenant.auth).expect(200);
    expect(detail.body.delivery.attempts[0].request.headers).toMatchObject({ Authorization: 'Bearer static-token', 'X-Team': 'payments' });
  });

  it('names a webhook after its URL\'s host by default and records an API token as its creator', async () => {
    const token = await h.stack.http().post(`/organizations/${h.tenant.organizationId}/api-tokens`).set(h.tenant.auth).send({ name: 'ci', role: 'admin' }).expect(201);
    const res = await h.stack
      .http()
      .post(`/projects/${h.tenant.projectId}/webhooks`)
      .set({ Authorization: `Bearer ${token.body.token}` })
      .send({ url: `${h.receiver.url}/by-token`, events: ['baseline.uploaded'] })
      .expect(201);
    expect(res.body.webhook).toMatchObject({ name: '127.0.0.1', headers: {}, createdBy: { type: 'api_token', id: token.body.apiToken.id } });
    expect(res.body.secret).toMatch(/^whsec_/);
    expect(Buffer.from(res.body.secret.slice('whsec_'.length), 'base64')).toHaveLength(32);
  });

  it.each([
    ['a reserved header', { headers: { 'Content-Type': 'text/plain' } }],
    ['a hop-by-hop header the HTTP client refuses', { headers: { 'Keep-Alive': 'timeout=5' } }],
    ['a Bellwether header', { headers: { 'X-Bellwether-Signature': 'sha256=00' } }],
    ['a Standard Webhooks header', { headers: { 'webhook-id': 'evt_1' } }],
    ['a header name with a space', { headers: { 'X Team': 'a' } }],
    ['a header value with a line break', { headers: { 'X-Team': 'a\r\nInjected: yes' } }],
    ['21 headers', { headers: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`X-H${i}`, 'v'])) }],
    ['headers as a list', { headers: ['X-Team'] }],
    ['a header named like an object member (it would be dropped, not sent)', { headers: { constructor: 'v', 'X-A': '1' } }],
    ['a header named toString', { headers: { toString: 'w' } }],
    ['a header value that is not text', { headers: { 'X-A': { nested: 1 } } }],
    ['a secret of 16 bytes', { secret: 'whsec_' + Buffer.alloc(16, 1).toString('base64') }],
    ['a secret of 65 bytes', { secret: 'whsec_' + Buffer.alloc(65, 1).toString('base64') }],
    ['a secret without whsec_', { secret: Buffer.alloc(32, 1).toString('base64') }],
    ['a name of 101 characters', { name: 'n'.repeat(101) }],
    ['an empty name', { name: '' }],
  ])('refuses %s with 422 and writes nothing', async (_what, body) => {
    const res = await create({ url: `${h.receiver.url}/refused`, ...body }).expect(422);
    expect(res.body).toMatchObject({ statusCode: 422, code: 'validation_failed', requestId: expect.stringMatching(/^req_/) });
    const list = await h.stack.http().get(`/projects/${h.tenant.projectId}/webhooks`).set(h.tenant.auth).expect(200);
    expect(list.body.webhooks).toHaveLength(0);
  });

  it('changes name and headers by PATCH, and never the secret', async () => {
    const created = await create({ url: `${h.receiver.url}/patched`, headers: { 'X-Old': '1' } }).expect(201);
    const id = created.body.webhook.id as string;
    const patched = await h.stack.http().patch(`/webhooks/${id}`).set(h.tenant.auth).send({ name: 'Renamed', headers: { 'X-New': '2' } }).expect(200);
    expect(patched.body.webhook).toMatchObject({ name: 'Renamed', headers: { 'X-New': '2' } });
    await h.stack.http().patch(`/webhooks/${id}`).set(h.tenant.auth).send({ headers: { Host: 'evil.example' } }).expect(422);
    await h.stack.http().patch(`/webhooks/${id}`).set(h.tenant.auth).send({ secret: 'whsec_' + Buffer.alloc(32, 3).toString('base64') }).expect(422);
    const revealed = await h.stack.http().get(`/webhooks/${id}/secret`).set(h.tenant.auth).expect(200);
    expect(revealed.body.secret).toBe(created.body.secret);
  });
});
