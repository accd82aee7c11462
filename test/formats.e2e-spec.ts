import { createHmac, timingSafeEqual } from 'node:crypto';
import { withStackAndReceiver } from './support/harness';
import { Receiver } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { eventually, newTenant, Tenant } from './support/tenant';
import { documented } from './support/payloads';

/*
 * What a webhook's receiver gets in each format (bellwether, slack, discord, template), byte for
 * byte, signed as sent and kept in the history as sent; and a webhook's health moving with real
 * deliveries and not with test sends. The worker runs in this process; the receiver is real.
 */

/** The Bellwether documentation's Node verification recipe, unchanged but for the names. */
function verifyWebhookSignature(payload: string, signature: string, secret: string): boolean {
  const expected = 'sha256=' + createHmac('sha256', secret).update(payload, 'utf8').digest('hex');
  const given = Buffer.from(signature);
  const wanted = Buffer.from(expected);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

describe('webhook formats', () => {
  const h = withStackAndReceiver('Formats');

  const http = () => h.stack.http();
  const create = (path: string, body: Record<string, unknown>) =>
    http().post(`/projects/${h.tenant.projectId}/webhooks`).set(h.tenant.auth).send({ url: `${h.receiver.url}/${path}`, events: ['baseline.*'], ...body });
  const received = (path: string) => h.receiver.requests.filter((r) => r.url === `/${path}`);
  const publish = (event: string, data: unknown) => http().post(`/projects/${h.tenant.projectId}/events`).set(h.tenant.auth).send({ event, data }).expect(202);

  /** The body the h.receiver got, verified with the documentation's recipe; and the same bytes in the history. */
  async function deliveredBody(path: string, secret: string, webhookId: string): Promise<string> {
    await eventually(async () => (received(path).length > 0 ? true : undefined));
    const request = received(path)[0];
    const body = request.body.toString('utf8');
    expect(verifyWebhookSignature(body, String(request.headers['x-bellwether-signature']), secret)).toBe(true);
    expect(request.headers['content-type']).toBe('application/json');
    const list = await http().get(`/webhooks/${webhookId}/deliveries`).set(h.tenant.auth).expect(200);
    const detail = await eventually(async () => {
      const res = await http().get(`/deliveries/${list.body.deliveries[0].id}`).set(h.tenant.auth).expect(200);
      return res.body.delivery.attempts.length > 0 ? res.body.delivery : undefined;
    });
    expect(detail.attempts[0].request.body).toBe(body);
    return body;
  }

  it('slack and discord get a one-line summary, signed as sent; the event keeps its envelope', async () => {
    const slack = await create('slack', { format: 'slack' }).expect(201);
    const discord = await create('discord', { format: 'discord' }).expect(201);
    expect(slack.body.webhook).toMatchObject({ format: 'slack', template: null });
    const published = await publish('baseline.drift_detected', documented('baseline.drift_detected'));

    const summary = '[my-mcp-server] Drift detected (breaking): v11 → v12, 1 added, 1 modified';
    expect(await deliveredBody('slack', slack.body.secret, slack.body.webhook.id)).toBe(JSON.stringify({ text: summary }));
    expect(await deliveredBody('discord', discord.body.secret, discord.body.webhook.id)).toBe(JSON.stringify({ content: summary }));
    const event = await http().get(`/events/${published.body.event.id}`).set(h.tenant.auth).expect(200);
    expect(event.body.event.payload).toMatchObject({ event: 'baseline.drift_detected', project: { name: 'my-mcp-server' }, data: documented('baseline.drift_detected') });
  });

  it('writes a summary for each built-in type, and escapes what Slack reads as markup', async () => {
    const slack = await create('slack-all', { format: 'slack', events: ['*'] }).expect(201);
    await publish('baseline.uploaded', documented('baseline.uploaded'));
    await publish('baseline.security_finding', documented('baseline.security_finding'));
    await publish('baseline.drift_detected', documented('baseline.drift_detected', { severity: 'info', changes: { toolsAdded: [], toolsRemoved: ['<a&b>'], toolsModified: [], breakingCount: 0, warningCount: 0 } }));
    await eventually(async () => (received('slack-all').length === 3 ? true : undefined));
    const texts = received('slack-all').map((r) => JSON.parse(r.body.toString()).text as string).sort();
    expect(texts).toEqual([
      '[my-mcp-server] 1 security finding in v12: 1 high',
      '[my-mcp-server] Baseline v12 uploaded: 5 tools (my-server, CLI 0.6.0)',
      '[my-mcp-server] Drift detected (info): v11 → v12, 1 removed',
    ]);
    for (const r of received('slack-all')) expect(verifyWebhookSignature(r.body.toString(), String(r.headers['x-bellwether-signature']), slack.body.secret)).toBe(true);
  });

  it('renders a template per delivery: one placeholder keeps the value, text gets it as text, missing paths null or empty', async () => {
    const template = {
      title: '{{event}} in {{project.name}}',
      breaking: '{{data.changes.breakingCount}}',
      changes: '{{ data.changes }}',
      missing: '{{data.nope}}',
      inline: 'x{{data.nope}}y {{data.changes.toolsAdded}} "{{data.note}}"',
      nested: [{ v: '{{data.toVersion}}', first: '{{data.changes.toolsAdded.0}}' }],
      literal: 5,
      flag: true,
    };
    const hook = await create('template', { format: 'template', template }).expect(201);
    expect(hook.body.webhook).toMatchObject({ format: 'template', template });
    // Quotes, a backslash and a newline in the payload stay inside their JSON strings.
    const note = 'he said "hi" \\ and left\n';
    await publish('baseline.drift_detected', documented('baseline.drift_detected', { note }));
    const body = await deliveredBody('template', hook.body.secret, hook.body.webhook.id);
    expect(JSON.parse(body)).toEqual({
      title: 'baseline.drift_detected in my-mcp-server',
      breaking: 1,
      changes: documented('baseline.drift_detected').changes,
      missing: null,
      inline: `xy ["new_tool"] "${note}"`,
      nested: [{ v: 12, first: 'new_tool' }],
      literal: 5,
      flag: true,
    });
  });

  it('refuses templates it could not render, and drops the template when the format changes', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ format: 'template' }, 'needs a template'],
      [{ format: 'slack', template: { a: '{{event}}' } }, 'only with format'],
      [{ format: 'template', template: { a: '{{payload.x}}' } }, 'must start with one of'],
      [{ format: 'template', template: { a: 'x'.repeat(17 * 1024) } }, 'KiB'],
      [{ format: 'template', template: { a: Array.from({ length: 65 }, () => '{{event}}').join(' ') } }, 'placeholders'],
      [{ format: 'template', template: ['{{event}}'] }, 'JSON object'],
      [{ format: 'xml' }, 'format must be one of'],
    ];
    for (const [body, message] of cases) {
      const res = await create('refused', body).expect(422);
      expect(res.body.code).toBe('validation_failed');
      expect(JSON.stringify(res.body)).toContain(message);
    }
    const hook = await create('switch', { format: 'template', template: { e: '{{event}}' } }).expect(201);
    const id = hook.body.webhook.id;
    await http().patch(`/webhooks/${id}`).set(h.tenant.auth).send({ template: { e: '{{event}}!' } }).expect(200);
    const moved = await http().patch(`/webhooks/${id}`).set(h.tenant.auth).send({ format: 'discord' }).expect(200);
    expect(moved.body.webhook).toMatchObject({ format: 'discord', template: null });
    await http().patch(`/webhooks/${id}`).set(h.tenant.auth).send({ template: { e: '{{event}}' } }).expect(422);
    await http().patch(`/webhooks/${id}`).set(h.tenant.auth).send({ format: 'template' }).expect(422);
    const back = await http().patch(`/webhooks/${id}`).set(h.tenant.auth).send({ format: 'bellwether' }).expect(200);
    expect(back.body.webhook).toMatchObject({ format: 'bellwether', template: null });
  });

  it('sends a template with its keys in the order they were written, and refuses NUL characters in it', async () => {
    const hook = await create('ordered', { format: 'template', template: { zeta: '{{event}}', alpha: 1, constructor: 'kept' } }).expect(201);
    expect(Object.keys(hook.body.webhook.template)).toEqual(['zeta', 'alpha', 'constructor']);
    await publish('baseline.uploaded', documented('baseline.uploaded'));
    const body = await deliveredBody('ordered', hook.body.secret, hook.body.webhook.id);
    expect(body).toBe('{"zeta":"baseline.uploaded","alpha":1,"constructor":"kept"}');
    expect((await create('nul', { format: 'template', template: { a: 'x\u0000' } }).expect(422)).body.details[0].message).toContain('NUL');
  });

  it('sends the test button in the webhook format', async () => {
    const hook = await create('test-format', { format: 'discord' }).expect(201);
    await http().post(`/webhooks/${hook.body.webhook.id}/test?wait=true`).set(h.tenant.auth).send({ event: 'baseline.uploaded' }).expect(200);
    expect(JSON.parse(received('test-format')[0].body.toString())).toEqual({ content: '[my-mcp-server] Baseline v12 uploaded: 5 tools (my-server, CLI 0.6.0)' });
  });
});

describe('webhook health', () => {
  let stack: Stack;
  let tenant: Tenant;
  let receiver: Receiver;
  let failing = true;

  beforeAll(async () => {
    stack = await startStack({ env: { AUTO_DISABLE_AFTER: '2d' } });
    receiver = await new Receiver().start();
    receiver.responder = () => ({ status: failing ? 503 : 200, body: failing ? 'down' : 'ok' });
    tenant = await newTenant(stack, 'Health');
  }, 60_000);

  afterAll(async () => {
    await receiver?.stop();
    await stack?.stop();
  }, 30_000);

  const http = () => stack.http();
  const health = async (id: string) => (await http().get(`/webhooks/${id}`).set(tenant.auth).expect(200)).body.webhook.health;
  const finished = async (id: string, count: number) =>
    eventually(async () => {
      const res = await http().get(`/webhooks/${id}/deliveries`).set(tenant.auth).expect(200);
      const done = res.body.deliveries.filter((d: { status: string }) => d.status !== 'pending');
      return done.length >= count ? done : undefined;
    });

  it('moves with real deliveries, never with test sends, and says when a failing webhook will be disabled', async () => {
    const created = await http().post(`/projects/${tenant.projectId}/webhooks`).set(tenant.auth).send({ url: `${receiver.url}/health`, events: ['baseline.uploaded'], retrySchedule: [] }).expect(201);
    // (No retries: a failed delivery is finished at its first attempt.)
    const id = created.body.webhook.id;
    const fresh = { status: 'healthy', failingSince: null, lastSuccessAt: null, lastFailureAt: null, lastDeliveryAt: null, autoDisableAt: null };
    expect(created.body.webhook.health).toEqual(fresh);

    // A failing test send moves nothing.
    await http().post(`/webhooks/${id}/test?wait=true`).set(tenant.auth).send({}).expect(200);
    expect(await health(id)).toEqual(fresh);

    const before = Date.now();
    await http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded') }).expect(202);
    await finished(id, 2);
    const failed = await health(id);
    expect(failed).toMatchObject({ status: 'failing', lastSuccessAt: null });
    expect(Date.parse(failed.failingSince)).toBeGreaterThanOrEqual(before - 1000);
    expect(failed.lastFailureAt).toBe(failed.lastDeliveryAt);
    expect(Date.parse(failed.autoDisableAt) - Date.parse(failed.failingSince)).toBe(2 * 24 * 3600 * 1000);

    failing = false;
    // A succeeding test send does not end the run of failures either.
    await http().post(`/webhooks/${id}/test?wait=true`).set(tenant.auth).send({}).expect(200);
    expect(await health(id)).toEqual(failed);

    await http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded') }).expect(202);
    await eventually(async () => ((await health(id)).status === 'healthy' ? true : undefined));
    const healthy = await health(id);
    expect(healthy).toMatchObject({ status: 'healthy', failingSince: null, autoDisableAt: null, lastFailureAt: failed.lastFailureAt });
    expect(Date.parse(healthy.lastSuccessAt)).toBeGreaterThan(Date.parse(failed.lastFailureAt));
    expect(healthy.lastDeliveryAt).toBe(healthy.lastSuccessAt);

    await http().patch(`/webhooks/${id}`).set(tenant.auth).send({ enabled: false }).expect(200);
    expect(await health(id)).toMatchObject({ status: 'disabled', lastSuccessAt: healthy.lastSuccessAt });
  });
});
