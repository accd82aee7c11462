import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { Stack, startStack } from './support/stack';
import { newTenant, Tenant } from './support/tenant';
import { documented } from './support/payloads';

describe('API edges with production destination rules', () => {
  let stack: Stack;
  let tenant: Tenant;

  beforeAll(async () => {
    stack = await startStack({ worker: false, env: { ALLOW_HTTP_DESTINATIONS: 'false', ALLOW_PRIVATE_DESTINATIONS: 'false', BODY_LIMIT_BYTES: '65536' } });
  });
  afterAll(() => stack?.stop());
  beforeEach(async () => {
    tenant = await newTenant(stack);
  });

  const errorShape = (statusCode: number, code: string) =>
    expect.objectContaining({ statusCode, code, error: expect.any(String), details: expect.any(Array), requestId: expect.stringMatching(/^req_/) });

  it('answers liveness, readiness, metrics and the OpenAPI document without a token', async () => {
    const live = await stack.http().get('/health').expect(200);
    expect(live.body).toEqual({ status: 'ok', time: expect.stringMatching(/Z$/) });
    const ready = await stack.http().get('/health/ready').expect(200);
    expect(ready.body.details).toMatchObject({ postgres: { status: 'up' }, redis: { status: 'up' } });
    const metrics = await stack.http().get('/metrics').expect(200);
    expect(metrics.text).toContain('bellhop_http_requests_total');
    const doc = await stack.http().get('/docs-json').expect(200);
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/projects/{projectId}/webhooks', '/deliveries/{deliveryId}/retry']));
    await stack.http().get('/docs').expect(200);
  });

  it('describes the answers of the webhook, event type and publish routes in OpenAPI, as they really are', async () => {
    const doc = (await stack.http().get('/docs-json').expect(200)).body;
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema({ $id: 'doc', components: doc.components });
    /** Checks a real answer against the document's schema for it, and that the schema names every field the answer has. */
    const check = (path: string, method: string, status: number, body: unknown) => {
      const schema = doc.paths[path]?.[method]?.responses?.[String(status)]?.content?.['application/json']?.schema;
      expect({ route: `${method} ${path} ${status}`, described: Boolean(schema) }).toEqual({ route: `${method} ${path} ${status}`, described: true });
      const validate = ajv.compile({ $ref: `doc${schema.$ref}` });
      expect({ route: `${method} ${path}`, errors: validate(body) ? null : validate.errors }).toEqual({ route: `${method} ${path}`, errors: null });
      const undescribed: string[] = [];
      const walk = (node: any, value: unknown, at: string) => {
        if (node?.$ref) node = doc.components.schemas[node.$ref.replace('#/components/schemas/', '')];
        if (node?.allOf) node = { properties: Object.assign({}, ...node.allOf.map((part: any) => (part.$ref ? doc.components.schemas[part.$ref.replace('#/components/schemas/', '')] : part).properties ?? {})) };
        if (Array.isArray(value)) return value.forEach((item, i) => walk(node?.items, item, `${at}/${i}`));
        if (typeof value !== 'object' || value === null || !node?.properties) return;
        for (const [key, item] of Object.entries(value)) {
          if (!(key in node.properties)) undescribed.push(`${at}/${key}`);
          else walk(node.properties[key], item, `${at}/${key}`);
        }
      };
      walk(schema, body, '');
      expect({ route: `${method} ${path}`, undescribed }).toEqual({ route: `${method} ${path}`, undescribed: [] });
    };
    const t = tenant;
    const created = await stack.http().post(`/projects/${t.projectId}/webhooks`).set(t.auth).send({ url: 'https://example.com/openapi', events: ['baseline.uploaded'] }).expect(201);
    check('/projects/{projectId}/webhooks', 'post', 201, created.body);
    check('/projects/{projectId}/webhooks', 'get', 200, (await stack.http().get(`/projects/${t.projectId}/webhooks`).set(t.auth).expect(200)).body);
    check('/webhooks/{webhookId}', 'get', 200, (await stack.http().get(`/webhooks/${created.body.webhook.id}`).set(t.auth).expect(200)).body);
    check('/webhooks/{webhookId}/secret/rotate', 'post', 200, (await stack.http().post(`/webhooks/${created.body.webhook.id}/secret/rotate`).set(t.auth).expect(200)).body);
    const type = await stack.http().post(`/projects/${t.projectId}/event-types`).set(t.auth).send({ type: 'openapi.checked', schema: { type: 'object' } }).expect(201);
    check('/projects/{projectId}/event-types', 'post', 201, type.body);
    check('/projects/{projectId}/event-types', 'get', 200, (await stack.http().get(`/projects/${t.projectId}/event-types`).set(t.auth).expect(200)).body);
    check('/event-types', 'get', 200, (await stack.http().get('/event-types').expect(200)).body);
    const published = await stack.http().post(`/projects/${t.projectId}/events`).set(t.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded') }).expect(202);
    check('/projects/{projectId}/events', 'post', 202, published.body);
    const batch = await stack.http().post(`/projects/${t.projectId}/events/batch`).set(t.auth).send({ events: [{ event: 'openapi.checked', data: {} }] }).expect(202);
    check('/projects/{projectId}/events/batch', 'post', 202, batch.body);
    check('/events/{eventId}', 'get', 200, (await stack.http().get(`/events/${published.body.event.id}`).set(t.auth).expect(200)).body);
    check('/projects/{projectId}/events', 'get', 200, (await stack.http().get(`/projects/${t.projectId}/events`).set(t.auth).expect(200)).body);
    check('/webhooks/{webhookId}/test', 'post', 202, (await stack.http().post(`/webhooks/${created.body.webhook.id}/test`).set(t.auth).send({}).expect(202)).body);
    check('/webhooks/{webhookId}/stats', 'get', 200, (await stack.http().get(`/webhooks/${created.body.webhook.id}/stats`).set(t.auth).expect(200)).body);
    check('/projects/{projectId}/stats', 'get', 200, (await stack.http().get(`/projects/${t.projectId}/stats`).set(t.auth).expect(200)).body);
  });

  it('gives every response an X-Request-Id and every error the contract shape', async () => {
    const res = await stack.http().get('/projects').expect(401);
    expect(res.headers['x-request-id']).toMatch(/^req_/);
    expect(res.body).toEqual(errorShape(401, 'unauthenticated'));
    expect(res.body.requestId).toBe(res.headers['x-request-id']);
    const missing = await stack.http().get('/no-such-route').set(tenant.auth).expect(404);
    expect(missing.body).toEqual(errorShape(404, 'not_found'));
  });

  it('answers malformed JSON with 400, an oversized body with 413 and unknown fields with 422', async () => {
    const malformed = await stack.http().post('/projects').set(tenant.auth).set('Content-Type', 'application/json').send('{"name":').expect(400);
    expect(malformed.body).toEqual(errorShape(400, 'bad_request'));
    const big = await stack
      .http()
      .post(`/projects/${tenant.projectId}/events`)
      .set(tenant.auth)
      .send({ event: 'baseline.uploaded', data: documented('baseline.uploaded', { blob: 'x'.repeat(70_000) }) })
      .expect(413);
    expect(big.body).toEqual(errorShape(413, 'payload_too_large'));
    const unknown = await stack.http().post('/projects').set(tenant.auth).send({ name: 'p', color: 'red' }).expect(422);
    expect(unknown.body).toEqual(errorShape(422, 'validation_failed'));
    expect(unknown.body.details).toEqual([expect.objectContaining({ field: 'color' })]);
  });

  it('lists each failing field of a webhook', async () => {
    const res = await stack.http().post(`/projects/${tenant.projectId}/webhooks`).set(tenant.auth).send({ url: 42, events: ['Not A Type'] }).expect(422);
    const fields = res.body.details.map((d: { field: string }) => d.field);
    expect(fields).toEqual(expect.arrayContaining(['url', 'events']));
    // A well-formed name the project does not know is refused once the rest is valid.
    const unknown = await stack.http().post(`/projects/${tenant.projectId}/webhooks`).set(tenant.auth).send({ url: 'https://example.com/h', events: ['nope.unknown'] }).expect(422);
    expect(unknown.body.details).toEqual([{ field: 'events', message: expect.stringContaining('nope.unknown') }]);
    const empty = await stack.http().post(`/projects/${tenant.projectId}/webhooks`).set(tenant.auth).send({ url: 'https://example.com/h', events: [] }).expect(422);
    expect(empty.body.details[0].field).toBe('events');
  });

  it.each([
    ['http://example.com/hook', 'https'],
    ['https://user:pass@example.com/hook', 'user name'],
    ['https://127.0.0.1/hook', 'private'],
    ['https://10.1.2.3/hook', 'private'],
    ['https://169.254.169.254/latest/meta-data', 'private'],
    ['https://[::1]/hook', 'private'],
    ['https://[::ffff:127.0.0.1]/hook', 'private'],
    ['https://0x7f.1/hook', 'private'],
    ['https://2130706433/hook', 'private'],
    ['https://localhost/hook', 'localhost'],
    ['not a url', 'absolute'],
    [`https://example.com/${'a'.repeat(2048)}`, '2048'],
  ])('refuses the webhook URL %s', async (url, reason) => {
    const res = await stack.http().post(`/projects/${tenant.projectId}/webhooks`).set(tenant.auth).send({ url, events: ['baseline.uploaded'] }).expect(422);
    expect(res.body.code).toBe('validation_failed');
    expect(JSON.stringify(res.body.details)).toContain(reason);
  });

  it('accepts a public https URL and returns the secret only at creation and reveal', async () => {
    const created = await stack
      .http()
      .post(`/projects/${tenant.projectId}/webhooks`)
      .set(tenant.auth)
      .send({ url: 'https://hooks.example.com/bellwether', events: ['baseline.uploaded'], description: 'prod' })
      .expect(201);
    const { webhook, secret } = created.body;
    expect(webhook).toEqual({
      id: expect.stringMatching(/^wh_/),
      projectId: tenant.projectId,
      name: 'hooks.example.com',
      url: 'https://hooks.example.com/bellwether',
      events: ['baseline.uploaded'],
      headers: {},
      createdBy: { type: 'user', id: tenant.userId },
      enabled: true,
      description: 'prod',
      disabledReason: null,
      retrySchedule: ['100ms', '200ms', '300ms', '400ms'],
      format: 'bellwether',
      template: null,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
      health: { status: 'healthy', failingSince: null, lastSuccessAt: null, lastFailureAt: null, lastDeliveryAt: null, autoDisableAt: null },
    });
    const got = await stack.http().get(`/webhooks/${webhook.id}`).set(tenant.auth).expect(200);
    expect(got.body).toEqual({ webhook });
    const revealed = await stack.http().get(`/webhooks/${webhook.id}/secret`).set(tenant.auth).expect(200);
    expect(revealed.body).toEqual({ secret });
  });

  it('refuses a duplicate email with 409 and a wrong password like an unknown email', async () => {
    const dup = await stack.http().post('/auth/signup').send({ email: tenant.email, password: 'another password', name: 'X' }).expect(409);
    expect(dup.body).toEqual(errorShape(409, 'conflict'));
    const wrong = await stack.http().post('/auth/login').send({ email: tenant.email, password: 'wrong password!' }).expect(401);
    const unknown = await stack.http().post('/auth/login').send({ email: 'nobody@example.com', password: 'wrong password!' }).expect(401);
    expect(wrong.body.error).toBe(unknown.body.error);
  });

  it('logs in, shows the caller and revokes the session at logout', async () => {
    const login = await stack.http().post('/auth/login').send({ email: tenant.email, password: 'correct horse battery' }).expect(200);
    expect(login.body).toMatchObject({ user: { id: tenant.userId, email: tenant.email }, session: { token: expect.any(String), expiresAt: expect.any(String) } });
    const auth = { Authorization: `Bearer ${login.body.session.token}` };
    const me = await stack.http().get('/auth/me').set(auth).expect(200);
    expect(me.body.memberships).toEqual([{ organization: { id: tenant.organizationId, name: expect.any(String), plan: 'solo' }, role: 'owner' }]);
    await stack.http().post('/auth/logout').set(auth).expect(204);
    await stack.http().get('/auth/me').set(auth).expect(401);
    await stack.http().get('/auth/me').set(tenant.auth).expect(200);
  });

  it("answers 404 for another organization's project, webhook and event", async () => {
    const other = await newTenant(stack, 'Other');
    const created = await stack
      .http()
      .post(`/projects/${tenant.projectId}/webhooks`)
      .set(tenant.auth)
      .send({ url: 'https://hooks.example.com/x', events: ['baseline.uploaded'] })
      .expect(201);
    const event = await stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send({ event: 'baseline.uploaded', data: documented('baseline.uploaded') }).expect(202);
    for (const path of [`/projects/${tenant.projectId}`, `/webhooks/${created.body.webhook.id}`, `/webhooks/${created.body.webhook.id}/secret`, `/events/${event.body.event.id}`]) {
      const res = await stack.http().get(path).set(other.auth).expect(404);
      expect(res.body).toEqual(errorShape(404, 'not_found'));
    }
    const list = await stack.http().get('/projects').set(other.auth).expect(200);
    expect(list.body.projects.map((p: { id: string }) => p.id)).toEqual([other.projectId]);
  });

  it('serves the event catalog with a category, a schema and an example for each type', async () => {
    const res = await stack.http().get('/event-types').expect(200);
    expect(res.body.eventTypes.map((t: { type: string; category: string }) => [t.type, t.category])).toEqual([
      ['baseline.uploaded', 'baseline'],
      ['baseline.drift_detected', 'baseline'],
      ['baseline.security_finding', 'baseline'],
      ['webhook.disabled', 'operational'],
      ['delivery.exhausted', 'operational'],
      ['github.*', 'source'],
      ['gitlab.*', 'source'],
    ]);
    for (const type of res.body.eventTypes) {
      expect(type).toMatchObject({ description: expect.any(String), schema: expect.objectContaining({ type: 'object', $schema: 'https://json-schema.org/draft/2020-12/schema' }) });
    }
    // The sources' families: the payload as GitHub or GitLab sends it, the example what a test send to the family carries.
    const byType = new Map(res.body.eventTypes.map((t: { type: string }) => [t.type, t]));
    expect(byType.get('github.*')).toEqual({
      type: 'github.*',
      category: 'source',
      description: expect.stringContaining('GitHub payload as received'),
      schema: { $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'object' },
      example: { zen: expect.any(String), hook_id: expect.any(Number), hook: expect.objectContaining({ events: ['ping'] }) },
      source: 'builtin',
    });
    expect(byType.get('gitlab.*')).toMatchObject({ category: 'source', description: expect.stringContaining('GitLab payload as received'), example: { object_kind: 'push' } });
  });
});
