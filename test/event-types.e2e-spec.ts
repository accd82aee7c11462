import { withStackAndReceiver } from './support/harness';
import { eventually, newTenant, Tenant } from './support/tenant';
import { documented } from './support/payloads';

/*
 * A project's own event types, end to end: created with a JSON Schema, listed beside the built-in
 * ones, subscribed to by name and by category, their data validated on publish (a changed schema
 * applies at once), 409s, and another tenant's project a 404. Deliveries go to a real receiver.
 */

const deploySchema = {
  type: 'object',
  properties: {
    service: { type: 'string', pattern: '^[a-z-]+$' },
    version: { type: 'integer', minimum: 1 },
  },
  required: ['service', 'version'],
  examples: [{ service: 'billing-api', version: 42 }],
};

describe('event types of a project', () => {
  const h = withStackAndReceiver('Types');

  const http = () => h.stack.http();
  const types = (t: Tenant = h.tenant) => `/projects/${t.projectId}/event-types`;
  const publish = (event: string, data: unknown, t: Tenant = h.tenant) => http().post(`/projects/${t.projectId}/events`).set(t.auth).send({ event, data });
  const subscribe = (events: string[], path: string) =>
    http().post(`/projects/${h.tenant.projectId}/webhooks`).set(h.tenant.auth).send({ url: `${h.receiver.url}/${path}`, events });
  const received = (path: string) => h.receiver.requests.filter((r) => r.url === `/${path}`);

  it('creates a type with a schema, lists it beside the built-in ones and filters by category', async () => {
    const created = await http().post(types()).set(h.tenant.auth).send({ type: 'deploy.finished', description: 'A deploy finished', schema: deploySchema }).expect(201);
    expect(created.body).toEqual({
      eventType: {
        type: 'deploy.finished',
        category: 'deploy',
        description: 'A deploy finished',
        schema: deploySchema,
        source: 'custom',
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
      },
    });
    await http().post(types()).set(h.tenant.auth).send({ type: 'deploy.rolled_back', category: 'ops' }).expect(201);

    const all = await http().get(types()).set(h.tenant.auth).expect(200);
    const byType = new Map(all.body.eventTypes.map((t: { type: string }) => [t.type, t]));
    expect(byType.get('baseline.drift_detected')).toMatchObject({ source: 'builtin', category: 'baseline', example: expect.any(Object) });
    expect(byType.get('deploy.finished')).toMatchObject({ source: 'custom', category: 'deploy' });
    expect(byType.get('deploy.rolled_back')).toMatchObject({ source: 'custom', category: 'ops', schema: null, description: null });

    const deploy = await http().get(`${types()}?category=deploy`).set(h.tenant.auth).expect(200);
    expect(deploy.body.eventTypes.map((t: { type: string }) => t.type)).toEqual(['deploy.finished']);
    const baseline = await http().get(`${types()}?category=baseline`).set(h.tenant.auth).expect(200);
    expect(baseline.body.eventTypes.map((t: { source: string }) => t.source)).toEqual(['builtin', 'builtin', 'builtin']);
    const sources = await http().get(`${types()}?category=source`).set(h.tenant.auth).expect(200);
    expect(sources.body.eventTypes.map((t: { type: string; source: string }) => [t.type, t.source])).toEqual([
      ['github.*', 'builtin'],
      ['gitlab.*', 'builtin'],
    ]);
    expect(byType.get('github.*')).toMatchObject({ source: 'builtin', category: 'source', example: expect.objectContaining({ zen: expect.any(String) }) });
  });

  it('refuses bad names, built-in names, a name twice and schemas that are not valid JSON Schema', async () => {
    for (const type of ['deploy', 'Deploy.finished', '1deploy.x', 'deploy..x', 'deploy.', `a.${'x'.repeat(63)}`, 'deploy finished.x']) {
      const res = await http().post(types()).set(h.tenant.auth).send({ type }).expect(422);
      expect(res.body.code).toBe('validation_failed');
    }
    for (const type of ['baseline.drift_detected', 'webhook.disabled', 'github.push', 'gitlab.merge_request']) {
      const res = await http().post(types()).set(h.tenant.auth).send({ type }).expect(409);
      expect(res.body.code).toBe('conflict');
    }
    await http().post(types()).set(h.tenant.auth).send({ type: 'deploy.started' }).expect(201);
    expect((await http().post(types()).set(h.tenant.auth).send({ type: 'deploy.started' }).expect(409)).body.code).toBe('conflict');

    const invalid = [
      { type: 'nope' },
      { type: 'object', properties: { a: { minimum: 'one' } } },
      { $ref: 'https://example.com/remote.json' },
      { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object' },
      // Lookahead is not RE2: patterns run in linear time, so it is refused when saved.
      { type: 'object', properties: { a: { type: 'string', pattern: '^(?=a)a$' } } },
      { type: 'object', description: 'x'.repeat(70 * 1024) },
    ];
    for (const schema of invalid) {
      const res = await http().post(types()).set(h.tenant.auth).send({ type: 'deploy.bad', schema }).expect(422);
      expect(res.body).toMatchObject({ code: 'validation_failed', details: [{ field: 'schema', message: expect.any(String) }] });
    }
    // Nothing of the refused ones was written.
    const all = await http().get(`${types()}?category=deploy`).set(h.tenant.auth).expect(200);
    expect(all.body.eventTypes.map((t: { type: string }) => t.type)).toEqual(['deploy.started']);
  });

  it('validates published data against the schema, applies a changed schema at once, and delivers by name and by category', async () => {
    await http().post(types()).set(h.tenant.auth).send({ type: 'deploy.finished', schema: deploySchema }).expect(201);
    await subscribe(['deploy.finished'], 'by-name').expect(201);
    await subscribe(['deploy.*'], 'by-category').expect(201);
    await subscribe(['*'], 'everything').expect(201);
    await subscribe(['baseline.*'], 'other-category').expect(201);

    const bad = await publish('deploy.finished', { service: 'Billing API', version: 0 }).expect(422);
    expect(bad.body.code).toBe('validation_failed');
    expect(bad.body.details).toEqual(
      expect.arrayContaining([
        { path: '/service', message: expect.stringContaining('pattern') },
        { path: '/version', message: expect.any(String) },
      ]),
    );
    const missing = await publish('deploy.finished', { service: 'billing' }).expect(422);
    expect(missing.body.details).toEqual([{ path: '/version', message: 'is required' }]);

    const ok = await publish('deploy.finished', { service: 'billing', version: 3 }).expect(202);
    expect(ok.body.deliveries).toBe(3);
    await eventually(async () => (received('by-name').length === 1 && received('by-category').length === 1 && received('everything').length === 1 ? true : undefined));
    expect(JSON.parse(received('by-name')[0].body.toString())).toMatchObject({ event: 'deploy.finished', data: { service: 'billing', version: 3 } });
    expect(received('other-category')).toHaveLength(0);

    // A new schema applies to the very next publish.
    await http()
      .patch(`${types()}/deploy.finished`)
      .set(h.tenant.auth)
      .send({ schema: { type: 'object', properties: { region: { type: 'string' } }, required: ['region'] } })
      .expect(200);
    expect((await publish('deploy.finished', { service: 'billing', version: 4 }).expect(422)).body.details).toEqual([{ path: '/region', message: 'is required' }]);
    await publish('deploy.finished', { region: 'eu' }).expect(202);
    // Without a schema, any object.
    const cleared = await http().patch(`${types()}/deploy.finished`).set(h.tenant.auth).send({ schema: null, description: 'no schema' }).expect(200);
    expect(cleared.body.eventType).toMatchObject({ schema: null, description: 'no schema' });
    await publish('deploy.finished', { anything: [1, 2] }).expect(202);

    // A batch checks the project's own types too, with paths under /events/<i>.
    const batch = await http()
      .post(`/projects/${h.tenant.projectId}/events/batch`)
      .set(h.tenant.auth)
      .send({ events: [{ event: 'deploy.finished', data: {} }, { event: 'deploy.unknown', data: {} }] })
      .expect(422);
    expect(batch.body.details).toEqual([{ path: '/events/1/event', message: expect.stringContaining('deploy.unknown') }]);
    // Items that are not objects are refused by shape, before anything is looked up.
    await h.stack.http().post(`/projects/${h.tenant.projectId}/events/batch`).set(h.tenant.auth).send({ events: [[{ event: 'deploy.finished', data: {} }]] }).expect(422);
  });

  it('refuses to publish or subscribe to a type the project does not have', async () => {
    const res = await publish('deploy.finished', { service: 'x', version: 1 }).expect(422);
    expect(res.body).toMatchObject({ code: 'validation_failed', details: [{ path: '/event', message: expect.stringContaining('deploy.finished') }] });
    for (const events of [['deploy.finished'], ['deploy.*'], ['baseline.drift_detected', 'nothing.here']]) {
      const sub = await subscribe(events, 'x').expect(422);
      expect(sub.body).toMatchObject({ code: 'validation_failed', details: [{ field: 'events', message: expect.stringContaining('unknown event types') }] });
    }
  });

  it('refuses to delete a type while a webhook subscribes to it by name (409), and deletes it after', async () => {
    await http().post(types()).set(h.tenant.auth).send({ type: 'deploy.finished' }).expect(201);
    const hook = await subscribe(['deploy.finished', 'baseline.uploaded'], 'held').expect(201);
    await subscribe(['deploy.*'], 'wildcard').expect(201);
    const refused = await http().delete(`${types()}/deploy.finished`).set(h.tenant.auth).expect(409);
    expect(refused.body.code).toBe('conflict');
    expect(refused.body.error).toContain(hook.body.webhook.id);

    await http().patch(`/webhooks/${hook.body.webhook.id}`).set(h.tenant.auth).send({ events: ['baseline.uploaded'] }).expect(200);
    // A subscription by category does not hold a type.
    await http().delete(`${types()}/deploy.finished`).set(h.tenant.auth).expect(204);
    await http().delete(`${types()}/deploy.finished`).set(h.tenant.auth).expect(404);
    await publish('deploy.finished', {}).expect(422);
    // Built-in types are not the project's to delete.
    await http().delete(`${types()}/baseline.uploaded`).set(h.tenant.auth).expect(404);
  });

  it('keeps a type and a concurrent subscription consistent: never a webhook subscribed by name to a deleted type', async () => {
    for (let round = 0; round < 10; round += 1) {
      const type = `race.t${round}`;
      await http().post(types()).set(h.tenant.auth).send({ type }).expect(201);
      const [sub, del] = await Promise.all([subscribe([type], `race${round}`), http().delete(`${types()}/${type}`).set(h.tenant.auth)]);
      const list = await http().get(`${types()}?category=race`).set(h.tenant.auth).expect(200);
      const exists = list.body.eventTypes.some((t: { type: string }) => t.type === type);
      if (sub.status === 201) {
        // The subscription won: the delete saw it and refused.
        expect(del.status).toBe(409);
        expect(exists).toBe(true);
      } else {
        expect(sub.status).toBe(422);
        expect(del.status).toBe(204);
        expect(exists).toBe(false);
      }
    }
  });

  it("sends a test of the project's own type with its schema's first example", async () => {
    await http().post(types()).set(h.tenant.auth).send({ type: 'deploy.finished', schema: deploySchema }).expect(201);
    const hook = await subscribe(['deploy.finished'], 'test-own').expect(201);
    const res = await http().post(`/webhooks/${hook.body.webhook.id}/test?wait=true`).set(h.tenant.auth).send({}).expect(200);
    expect(res.body.delivery).toMatchObject({ event: 'deploy.finished', test: true, status: 'succeeded' });
    const body = JSON.parse(received('test-own')[0].body.toString());
    expect(body).toMatchObject({ event: 'deploy.finished', data: { service: 'billing-api', version: 42 } });
  });

  it('checks a type created again after its delete against its new schema, not the old one', async () => {
    await http().post(types()).set(h.tenant.auth).send({ type: 'again.created', schema: { type: 'object', required: ['a'] } }).expect(201);
    await publish('again.created', { a: 1 }).expect(202);
    await http().delete(`${types()}/again.created`).set(h.tenant.auth).expect(204);
    await http().post(types()).set(h.tenant.auth).send({ type: 'again.created', schema: { type: 'object', required: ['b'] } }).expect(201);
    await publish('again.created', { b: 1 }).expect(202);
    expect((await publish('again.created', { a: 1 }).expect(422)).body.details).toEqual([{ path: '/b', message: 'is required' }]);
  });

  it("answers a schema too costly for a payload with a 422 for that publish only, and keeps serving everyone else", async () => {
    // Branches that double at each level: fine to save, exponential to run on a value that matches none.
    const $defs: Record<string, object> = { a24: { type: 'string' } };
    for (let i = 0; i < 24; i += 1) $defs[`a${i}`] = { anyOf: [{ $ref: `#/$defs/a${i + 1}` }, { $ref: `#/$defs/a${i + 1}` }] };
    await http().post(types()).set(h.tenant.auth).send({ type: 'costly.type', schema: { $defs, properties: { x: { $ref: '#/$defs/a0' } } } }).expect(201);
    await http().post(types()).set(h.tenant.auth).send({ type: 'self.ref', schema: { $ref: '#' } }).expect(201);
    const started = Date.now();
    const [costly, others] = await Promise.all([
      publish('costly.type', { x: 1 }),
      // Meanwhile the API answers other requests, built-in publishes included.
      (async () => {
        const times: number[] = [];
        for (let i = 0; i < 5; i += 1) {
          const t0 = Date.now();
          await publish('baseline.uploaded', documented('baseline.uploaded')).expect(202);
          times.push(Date.now() - t0);
        }
        return times;
      })(),
    ]);
    expect(costly.status).toBe(422);
    expect(costly.body.details).toEqual([{ path: '', message: expect.stringMatching(/took longer than 1 s|ended its sandbox/) }]);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(Math.max(...others)).toBeLessThan(500);
    const selfRef = await publish('self.ref', { a: 1 }).expect(422);
    expect(selfRef.body.details).toEqual([{ path: '', message: expect.stringContaining('could not be evaluated') }]);
  }, 30_000);

  it('refuses what Postgres cannot store or Bellhop keeps for itself, with 4xx and never 500', async () => {
    await http().get(`${types()}/a.b%00`).set(h.tenant.auth).expect(404);
    await http().patch(`${types()}/a.b%00`).set(h.tenant.auth).send({ description: 'x' }).expect(404);
    await http().delete(`${types()}/a.b%00`).set(h.tenant.auth).expect(404);
    expect((await http().post(types()).set(h.tenant.auth).send({ type: 'nul.schema', schema: { description: 'a\u0000b' } }).expect(422)).body.details[0].message).toContain('NUL');
    expect((await http().post(types()).set(h.tenant.auth).send({ type: 'my.thing', category: 'operational' }).expect(422)).body.details[0].field).toBe('category');
    await http().post(types()).set(h.tenant.auth).send({ type: 'webhook.mine' }).expect(409);
    await http().post(types()).set(h.tenant.auth).send({ type: 'delivery.exhausted2' }).expect(409);
  });

  it('keeps keys named like Object.prototype members in schemas and payloads', async () => {
    const schema = { type: 'object', properties: { constructor: { type: 'string' } }, required: ['constructor'] };
    const created = await http().post(types()).set(h.tenant.auth).send({ type: 'proto.keys', schema }).expect(201);
    expect(created.body.eventType.schema).toEqual(schema);
    await subscribe(['proto.keys'], 'proto').expect(201);
    await publish('proto.keys', { constructor: 'x', valueOf: 1 }).expect(202);
    expect((await publish('proto.keys', {}).expect(422)).body.details).toEqual([{ path: '/constructor', message: 'is required' }]);
    await eventually(async () => (received('proto').length === 1 ? true : undefined));
    expect(JSON.parse(received('proto')[0].body.toString()).data).toEqual({ constructor: 'x', valueOf: 1 });
  });

  it("tests a webhook with its first event by default, a category wildcard's first type included", async () => {
    await http().post(types()).set(h.tenant.auth).send({ type: 'deploy.finished' }).expect(201);
    const named = await subscribe(['deploy.finished', 'baseline.uploaded'], 'first-named').expect(201);
    expect((await http().post(`/webhooks/${named.body.webhook.id}/test`).set(h.tenant.auth).send({}).expect(202)).body.delivery.event).toBe('deploy.finished');
    const wildcard = await subscribe(['deploy.*'], 'first-wildcard').expect(201);
    expect((await http().post(`/webhooks/${wildcard.body.webhook.id}/test`).set(h.tenant.auth).send({}).expect(202)).body.delivery.event).toBe('deploy.finished');
  });

  it("is the h.tenant's own: another h.tenant's project and types are not found", async () => {
    await http().post(types()).set(h.tenant.auth).send({ type: 'deploy.finished', schema: deploySchema }).expect(201);
    const other = await newTenant(h.stack, 'Other');
    await http().get(types()).set(other.auth).expect(404);
    await http().post(types()).set(other.auth).send({ type: 'deploy.other' }).expect(404);
    await http().patch(`${types()}/deploy.finished`).set(other.auth).send({ description: 'mine' }).expect(404);
    await http().delete(`${types()}/deploy.finished`).set(other.auth).expect(404);
    await http().post(`/projects/${h.tenant.projectId}/events`).set(other.auth).send({ event: 'deploy.finished', data: {} }).expect(404);
    // The same name in the other project is its own, with its own schema.
    await http().post(types(other)).set(other.auth).send({ type: 'deploy.finished' }).expect(201);
    await publish('deploy.finished', {}, other).expect(202);
    await publish('deploy.finished', {}).expect(422);
  });
});
