import { randomBytes } from 'node:crypto';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { validSecrets } from '@bellhop/signing';
import {
  describeAnswer,
  errorShapeProblem,
  fetchDocument,
  fillPath,
  Ids,
  Operation,
  operationsOf,
  OpenApiDocument,
  PUBLIC_OPERATIONS,
  requestFor,
  sampleFromSchema,
  unknownParams,
} from './support/openapi-walk';
import { Stack, startStack } from './support/stack';
import { createWebhook, newTenant, Tenant } from './support/tenant';
import { MEMBER_LIMIT } from '../apps/api/src/organizations/organizations.service';
import { documented } from './support/payloads';

type Auth = { Authorization: string };

const errorShape = (statusCode: number, code: string) =>
  expect.objectContaining({ statusCode, code, error: expect.any(String), details: expect.any(Array), requestId: expect.stringMatching(/^req_/) });

/**
 * Bodies that would succeed if the caller were allowed: a refusal must come from tenancy, not from
 * validation. Routes not listed here get a body built from the document's schema.
 */
function validBodies(extra: { email: string }): Record<string, unknown> {
  return {
    'PATCH /organizations/{orgId}': { name: 'Renamed by a stranger', plan: 'free' },
    'POST /organizations/{orgId}/members': { email: extra.email, role: 'owner' },
    'PATCH /organizations/{orgId}/members/{userId}': { role: 'owner' },
    'POST /organizations/{orgId}/api-tokens': { name: 'stolen', role: 'owner' },
    'PATCH /projects/{projectId}': { name: 'hijacked' },
    'POST /projects/{projectId}/webhooks': { url: 'https://attacker.example.com/hook', events: ['baseline.uploaded'] },
    'PATCH /webhooks/{webhookId}': { url: 'https://attacker.example.com/hook', enabled: false },
    'POST /webhooks/{webhookId}/test': {},
    'POST /projects/{projectId}/events': { event: 'baseline.drift_detected', data: documented('baseline.drift_detected') },
    'POST /projects/{projectId}/events/batch': { events: [{ event: 'baseline.drift_detected', data: documented('baseline.drift_detected') }] },
    'POST /projects/{projectId}/event-types': { type: 'deploy.stolen' },
    'PATCH /projects/{projectId}/event-types/{type}': { description: 'hijacked', schema: null },
    'POST /webhooks/{webhookId}/replay': { from: new Date(Date.now() - 3_600_000).toISOString() },
    'POST /projects/{projectId}/sources': { name: 'stolen', type: 'github' },
  };
}

function bodyFor(doc: OpenApiDocument, op: Operation, table: Record<string, unknown>): unknown {
  if (op.key in table) return table[op.key];
  return op.bodySchema ? sampleFromSchema(doc, op.bodySchema) : undefined;
}

/** Sends `op` with a body when it takes one; Idempotency-Key and similar headers get a fresh value. */
async function send(stack: Stack, doc: OpenApiDocument, op: Operation, path: string, auth: Partial<Auth>, table: Record<string, unknown>) {
  let req = requestFor(stack, op, path);
  if (auth.Authorization) req = req.set('Authorization', auth.Authorization);
  for (const header of op.headerParams) req = req.set(header, `walk-${randomBytes(6).toString('hex')}`);
  const body = bodyFor(doc, op, table);
  return body === undefined ? req : req.send(body as object);
}

async function signup(stack: Stack, name: string) {
  const email = `${name.toLowerCase()}-${randomBytes(6).toString('hex')}@example.com`;
  const res = await stack.http().post('/auth/signup').send({ email, password: 'correct horse battery', name }).expect(201);
  return { email, userId: res.body.user.id as string, organizationId: res.body.organization.id as string, auth: { Authorization: `Bearer ${res.body.session.token}` } };
}

async function upgrade(stack: Stack, tenant: Tenant, plan = 'team') {
  await stack.http().patch(`/organizations/${tenant.organizationId}`).set(tenant.auth).send({ plan }).expect(200);
}

async function addMember(stack: Stack, tenant: Tenant, email: string, role: 'member' | 'admin' | 'owner') {
  const res = await stack.http().post(`/organizations/${tenant.organizationId}/members`).set(tenant.auth).send({ email, role });
  expect(describeAnswer('add member', res)).toMatch(/-> 201 /);
  return res.body.member as { user: { id: string; email: string }; role: string };
}

async function apiToken(stack: Stack, tenant: Tenant, role: 'member' | 'admin' | 'owner') {
  const res = await stack.http().post(`/organizations/${tenant.organizationId}/api-tokens`).set(tenant.auth).send({ name: `ci-${role}`, role }).expect(201);
  return { id: res.body.apiToken.id as string, auth: { Authorization: `Bearer ${res.body.token}` } };
}

async function publish(stack: Stack, tenant: Tenant, auth: Auth = tenant.auth) {
  const res = await stack.http().post(`/projects/${tenant.projectId}/events`).set(auth).send({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected') }).expect(202);
  return res.body.event.id as string;
}

/** Everything a tenant can read about itself, to compare before and after a stranger's visit. */
async function snapshot(stack: Stack, tenant: Tenant, ids: Ids) {
  const get = async (path: string) => {
    const res = await stack.http().get(path).set(tenant.auth);
    return { status: res.status, body: res.body as unknown };
  };
  return {
    organizations: await get('/organizations'),
    members: await get(`/organizations/${ids.orgId}/members`),
    apiTokens: await get(`/organizations/${ids.orgId}/api-tokens`),
    project: await get(`/projects/${ids.projectId}`),
    projects: await get('/projects'),
    webhook: await get(`/webhooks/${ids.webhookId}`),
    webhooks: await get(`/projects/${ids.projectId}/webhooks`),
    secret: await get(`/webhooks/${ids.webhookId}/secret`),
    events: await get(`/projects/${ids.projectId}/events`),
    event: await get(`/events/${ids.eventId}`),
    deliveries: await get(`/webhooks/${ids.webhookId}/deliveries`),
    delivery: await get(`/deliveries/${ids.deliveryId}`),
    eventTypes: await get(`/projects/${ids.projectId}/event-types`),
    sources: await get(`/projects/${ids.projectId}/sources`),
  };
}

describe('tenancy', () => {
  let stack: Stack;
  let doc: OpenApiDocument;
  let ops: Operation[];

  beforeAll(async () => {
    stack = await startStack({ worker: false, env: { RATE_LIMIT: '1000000/1m', AUTH_RATE_LIMIT: '1000000/1m' } });
    doc = await fetchDocument(stack);
    ops = operationsOf(doc);
  });
  afterAll(() => stack?.stop());

  /** Tenant A with one of everything: a team plan, a project, a webhook, an event and its delivery, an API token and a member. */
  async function fullTenant() {
    const a = await newTenant(stack, 'Alice');
    await upgrade(stack, a);
    await stack.http().post(`/projects/${a.projectId}/event-types`).set(a.auth).send({ type: 'deploy.finished', schema: { type: 'object' } }).expect(201);
    const { webhook, secret } = await createWebhook(stack, a, 'https://hooks.example.com/alice', ['baseline.drift_detected']);
    const eventId = await publish(stack, a);
    const deliveries = await stack.http().get(`/webhooks/${webhook.id}/deliveries`).set(a.auth).expect(200);
    expect(deliveries.body.deliveries).toHaveLength(1);
    const token = await apiToken(stack, a, 'admin');
    const colleague = await signup(stack, 'Carol');
    await addMember(stack, a, colleague.email, 'member');
    const replay = await stack.http().post(`/webhooks/${webhook.id}/replay`).set(a.auth).send({ from: new Date(Date.now() - 3_600_000).toISOString() }).expect(202);
    const source = await stack.http().post(`/projects/${a.projectId}/sources`).set(a.auth).send({ name: 'alice/api', type: 'github' }).expect(201);
    const ids: Ids = {
      orgId: a.organizationId,
      projectId: a.projectId,
      webhookId: webhook.id,
      eventId,
      deliveryId: deliveries.body.deliveries[0].id,
      tokenId: token.id,
      userId: colleague.userId,
      type: 'deploy.finished',
      replayId: replay.body.replay.id,
      sourceId: source.body.source.id,
    };
    return { a, ids, secret, token, colleague };
  }

  describe('the OpenAPI walk', () => {
    it('knows every path parameter of the document, so that no new route escapes the walk', () => {
      expect(unknownParams(ops)).toEqual([]);
      expect(ops.length).toBeGreaterThan(30);
    });

    it('keeps public only the routes meant to be public', () => {
      const publicOps = ops.filter((op) => op.isPublic).map((op) => op.key);
      expect(publicOps.filter((key) => !PUBLIC_OPERATIONS.has(key))).toEqual([]);
    });

    it("answers 404 not_found to every operation on another organization's ids, and changes nothing", async () => {
      const { a, ids, secret, token } = await fullTenant();
      const before = await snapshot(stack, a, ids);
      const b = await newTenant(stack, 'Bob');
      const bToken = await apiToken(stack, b, 'owner');
      const table = validBodies({ email: b.email });

      // Writes that could remove something go last, so that a leak in one of them cannot hide others.
      const order = { get: 0, put: 1, patch: 1, post: 1, delete: 2 } as const;
      const walked = ops.filter((op) => op.pathParams.length > 0).sort((x, y) => order[x.method] - order[y.method]);
      const failures: string[] = [];
      for (const [who, auth] of [
        ['session', b.auth],
        ['API token', bToken.auth],
      ] as const) {
        for (const op of walked) {
          const res = await send(stack, doc, op, fillPath(op, ids), auth, table);
          const label = `${who}: ${op.key}`;
          // A public route with an id (an inbound source's deliveries) takes no bearer token: the
          // stranger's is no credential there, and without the source's signature the answer is 401.
          const [status, code] = op.isPublic ? [401, 'unauthenticated'] : [404, 'not_found'];
          if (res.status !== status) failures.push(describeAnswer(label, res));
          else if (res.body?.code !== code) failures.push(describeAnswer(`${label} (code)`, res));
          else if (errorShapeProblem(res)) failures.push(`${label}: ${errorShapeProblem(res)}`);
        }
      }
      expect(failures).toEqual([]);
      expect(walked.length).toBeGreaterThanOrEqual(25);

      // A mixed request: the stranger's own organization with the other organization's member.
      for (const method of ['patch', 'delete'] as const) {
        const res = await stack.http()[method](`/organizations/${b.organizationId}/members/${ids.userId}`).set(b.auth).send({ role: 'owner' });
        expect(describeAnswer(`${method} own org, foreign member`, res)).toMatch(/-> 404 /);
        expect(res.body).toEqual(errorShape(404, 'not_found'));
      }

      // The control: the same ids are real, so the 404s above came from tenancy and not from bad ids.
      for (const op of walked.filter((o) => o.method === 'get')) {
        const res = await send(stack, doc, op, fillPath(op, ids), a.auth, table);
        expect(describeAnswer(`owner: ${op.key}`, res)).toMatch(/-> 200 /);
      }

      const after = await snapshot(stack, a, ids);
      expect(after).toEqual(before);
      expect(after.webhook.body).toMatchObject({ webhook: { url: 'https://hooks.example.com/alice', enabled: true } });
      expect(after.secret.body).toEqual({ secret });
      expect(after.project.body).toMatchObject({ project: { name: 'my-mcp-server' } });
      expect((after.deliveries.body as { deliveries: unknown[] }).deliveries).toHaveLength(1);
      await stack.http().get(`/projects/${ids.projectId}`).set(token.auth).expect(200);
      const audit = await stack.http().get(`/organizations/${ids.orgId}/audit-log`).set(a.auth).expect(200);
      const actors = audit.body.entries.map((e: { actor: { id: string } }) => e.actor.id);
      expect(actors).not.toContain(b.userId);
      expect(actors).not.toContain(bToken.id);
    });

    it("shows none of another organization's ids in the routes that take no id", async () => {
      const { a, ids } = await fullTenant();
      const b = await newTenant(stack, 'Bob');
      const bToken = await apiToken(stack, b, 'owner');
      const foreign = Object.values(ids);
      const leaks = (body: unknown) => foreign.filter((id) => JSON.stringify(body).includes(id));

      // Each route without a path parameter, with what it must (not) show; a new one fails here until it is added.
      const checks: Record<string, (auth: Auth) => Promise<void>> = {
        'GET /projects': async (auth) => {
          const res = await stack.http().get('/projects').set(auth).expect(200);
          expect(res.body.projects.map((p: { id: string }) => p.id)).toEqual([b.projectId]);
          expect(leaks(res.body)).toEqual([]);
        },
        'GET /organizations': async (auth) => {
          const res = await stack.http().get('/organizations').set(auth).expect(200);
          expect(res.body.organizations.map((o: { id: string }) => o.id)).toEqual([b.organizationId]);
          expect(leaks(res.body)).toEqual([]);
        },
        'GET /auth/me': async (auth) => {
          const res = await stack.http().get('/auth/me').set(auth).expect(200);
          expect(res.body.memberships.map((m: { organization: { id: string } }) => m.organization.id)).toEqual([b.organizationId]);
          expect(leaks(res.body)).toEqual([]);
        },
        'POST /projects': async (auth) => {
          const res = await stack.http().post('/projects').set(auth).send({ name: 'squatter', organizationId: a.organizationId });
          expect(describeAnswer('POST /projects into another organization', res)).toMatch(/-> 404 /);
          expect(res.body).toEqual(errorShape(404, 'not_found'));
        },
        'POST /organizations': async () => undefined,
        'POST /auth/logout': async () => undefined,
        'POST /auth/signup': async () => undefined,
        'POST /auth/login': async () => undefined,
        'GET /event-types': async () => undefined,
        'GET /health': async () => undefined,
        'GET /health/ready': async () => undefined,
      };
      const pathless = ops.filter((op) => op.pathParams.length === 0).map((op) => op.key);
      expect(pathless.filter((key) => !(key in checks))).toEqual([]);
      for (const auth of [b.auth, bToken.auth]) {
        for (const key of pathless) await checks[key](auth);
      }
      const stillThere = await stack.http().get('/projects').set(a.auth).expect(200);
      expect(stillThere.body.projects.map((p: { id: string }) => p.id)).toEqual([a.projectId]);
    });

    it('answers 401 unauthenticated to every non-public operation without a valid token', async () => {
      const { ids } = await fullTenant();
      const table = validBodies({ email: 'nobody@example.com' });
      const failures: string[] = [];
      const credentials: Array<[string, Partial<Auth>]> = [
        ['no token', {}],
        ['garbage bearer', { Authorization: 'Bearer not-a-token' }],
        ['unknown API token', { Authorization: `Bearer bht_${randomBytes(32).toString('base64url')}` }],
        ['basic auth', { Authorization: 'Basic YWxpY2U6c2VjcmV0' }],
      ];
      for (const [label, auth] of credentials) {
        for (const op of ops.filter((o) => !o.isPublic)) {
          const res = await send(stack, doc, op, fillPath(op, ids), auth, table);
          if (res.status !== 401 || res.body?.code !== 'unauthenticated') failures.push(describeAnswer(`${label}: ${op.key}`, res));
          else if (errorShapeProblem(res)) failures.push(`${label}: ${op.key}: ${errorShapeProblem(res)}`);
        }
      }
      expect(failures).toEqual([]);
    });
  });

  describe('roles', () => {
    /** Tenant A on the team plan with a webhook, an event and its delivery, and a caller of the given role. */
    async function teamWith(role: 'member' | 'admin', kind: 'session' | 'API token') {
      const a = await newTenant(stack, 'Alice');
      await upgrade(stack, a);
      const { webhook } = await createWebhook(stack, a, 'https://hooks.example.com/alice');
      const eventId = await publish(stack, a);
      const deliveryId = (await stack.http().get(`/webhooks/${webhook.id}/deliveries`).set(a.auth).expect(200)).body.deliveries[0].id as string;
      let auth: Auth;
      if (kind === 'session') {
        const user = await signup(stack, role === 'member' ? 'Mallory' : 'Dana');
        await addMember(stack, a, user.email, role);
        auth = user.auth;
      } else {
        auth = (await apiToken(stack, a, role)).auth;
      }
      return { a, auth, webhookId: webhook.id, eventId, deliveryId };
    }

    it.each(['session', 'API token'] as const)('lets a member (%s) read everything and publish events', async (kind) => {
      const { a, auth, webhookId, eventId, deliveryId } = await teamWith('member', kind);
      for (const path of [
        `/projects/${a.projectId}`,
        `/projects/${a.projectId}/webhooks`,
        `/webhooks/${webhookId}`,
        `/projects/${a.projectId}/events`,
        `/events/${eventId}`,
        `/webhooks/${webhookId}/deliveries`,
        `/deliveries/${deliveryId}`,
      ]) {
        const res = await stack.http().get(path).set(auth);
        expect(describeAnswer(`GET ${path}`, res)).toMatch(/-> 200 /);
      }
      const projects = await stack.http().get('/projects').set(auth).expect(200);
      expect(projects.body.projects.map((p: { id: string }) => p.id)).toContain(a.projectId);
      await publish(stack, a, auth);
    });

    it.each(['session', 'API token'] as const)('refuses a member (%s) secrets and webhook changes with 403 forbidden', async (kind) => {
      const { a, auth, webhookId } = await teamWith('member', kind);
      const attempts = [
        stack.http().get(`/webhooks/${webhookId}/secret`).set(auth),
        stack.http().post(`/projects/${a.projectId}/webhooks`).set(auth).send({ url: 'https://hooks.example.com/m', events: ['baseline.uploaded'] }),
        stack.http().patch(`/webhooks/${webhookId}`).set(auth).send({ enabled: false }),
        stack.http().post(`/webhooks/${webhookId}/secret/rotate`).set(auth),
        stack.http().delete(`/webhooks/${webhookId}`).set(auth),
        stack.http().get(`/organizations/${a.organizationId}/audit-log`).set(auth),
      ];
      for (const attempt of attempts) {
        const res = await attempt;
        expect(describeAnswer('member', res)).toMatch(/-> 403 /);
        expect(res.body).toEqual(errorShape(403, 'forbidden'));
      }
      const webhook = await stack.http().get(`/webhooks/${webhookId}`).set(a.auth).expect(200);
      expect(webhook.body.webhook).toMatchObject({ enabled: true, url: 'https://hooks.example.com/alice' });
      const list = await stack.http().get(`/projects/${a.projectId}/webhooks`).set(a.auth).expect(200);
      expect(list.body.webhooks).toHaveLength(1);
    });

    it.each(['session', 'API token'] as const)('lets an admin (%s) reveal, create, change, rotate and delete webhooks', async (kind) => {
      const { a, auth, webhookId } = await teamWith('admin', kind);
      const revealed = await stack.http().get(`/webhooks/${webhookId}/secret`).set(auth).expect(200);
      expect(revealed.body.secret).toMatch(/^whsec_/);
      const created = await stack.http().post(`/projects/${a.projectId}/webhooks`).set(auth).send({ url: 'https://hooks.example.com/admin', events: ['baseline.uploaded'] }).expect(201);
      const patched = await stack.http().patch(`/webhooks/${created.body.webhook.id}`).set(auth).send({ enabled: false }).expect(200);
      expect(patched.body.webhook.enabled).toBe(false);
      const rotated = await stack.http().post(`/webhooks/${webhookId}/secret/rotate`).set(auth).expect(200);
      expect(rotated.body.secret).not.toBe(revealed.body.secret);
      await stack.http().delete(`/webhooks/${created.body.webhook.id}`).set(auth).expect(204);
      await stack.http().get(`/webhooks/${created.body.webhook.id}`).set(a.auth).expect(404);
    });

    it("confines an API token to its own organization: another organization's ids are 404", async () => {
      const a = await newTenant(stack, 'Alice');
      const b = await newTenant(stack, 'Bob');
      const { webhook } = await createWebhook(stack, b, 'https://hooks.example.com/bob');
      const eventId = await publish(stack, b);
      const aToken = await apiToken(stack, a, 'owner');
      for (const path of [`/projects/${b.projectId}`, `/webhooks/${webhook.id}`, `/webhooks/${webhook.id}/secret`, `/events/${eventId}`, `/organizations/${b.organizationId}/members`]) {
        const res = await stack.http().get(path).set(aToken.auth);
        expect(describeAnswer(`GET ${path}`, res)).toMatch(/-> 404 /);
        expect(res.body).toEqual(errorShape(404, 'not_found'));
      }
      const orgs = await stack.http().get('/organizations').set(aToken.auth).expect(200);
      expect(orgs.body.organizations.map((o: { id: string }) => o.id)).toEqual([a.organizationId]);
      const projects = await stack.http().get('/projects').set(aToken.auth).expect(200);
      expect(projects.body.projects.map((p: { id: string }) => p.id)).toEqual([a.projectId]);
    });

    it('keeps billing and tokens to the right roles: an admin cannot change the plan, a member cannot see API tokens', async () => {
      const a = await newTenant(stack, 'Alice');
      await upgrade(stack, a);
      const admin = await signup(stack, 'Dana');
      await addMember(stack, a, admin.email, 'admin');
      const member = await signup(stack, 'Mallory');
      await addMember(stack, a, member.email, 'member');
      const plan = await stack.http().patch(`/organizations/${a.organizationId}`).set(admin.auth).send({ plan: 'free' });
      expect(plan.body).toEqual(errorShape(403, 'forbidden'));
      for (const res of [
        await stack.http().get(`/organizations/${a.organizationId}/api-tokens`).set(member.auth),
        await stack.http().post(`/organizations/${a.organizationId}/api-tokens`).set(member.auth).send({ name: 'mine', role: 'member' }),
        await stack.http().post(`/organizations/${a.organizationId}/members`).set(member.auth).send({ email: admin.email, role: 'member' }),
      ]) {
        expect(res.body).toEqual(errorShape(403, 'forbidden'));
      }
      const org = await stack.http().get('/organizations').set(a.auth).expect(200);
      expect(org.body.organizations.find((o: { id: string }) => o.id === a.organizationId).plan).toBe('team');
    });

    it('takes access away from a removed member at once', async () => {
      const a = await newTenant(stack, 'Alice');
      await upgrade(stack, a);
      const member = await signup(stack, 'Mallory');
      await addMember(stack, a, member.email, 'member');
      await stack.http().get(`/projects/${a.projectId}`).set(member.auth).expect(200);
      await stack.http().delete(`/organizations/${a.organizationId}/members/${member.userId}`).set(a.auth).expect(204);
      const res = await stack.http().get(`/projects/${a.projectId}`).set(member.auth);
      expect(res.body).toEqual(errorShape(404, 'not_found'));
      const projects = await stack.http().get('/projects').set(member.auth).expect(200);
      expect(projects.body.projects.map((p: { id: string }) => p.id)).not.toContain(a.projectId);
    });

    it('lets no admin grant a role above its own', async () => {
      const a = await newTenant(stack, 'Alice');
      await upgrade(stack, a);
      const admin = await apiToken(stack, a, 'admin');
      const res = await stack.http().post(`/organizations/${a.organizationId}/api-tokens`).set(admin.auth).send({ name: 'escalate', role: 'owner' });
      expect(res.body).toEqual(errorShape(403, 'forbidden'));
      const other = await signup(stack, 'Eve');
      const added = await stack.http().post(`/organizations/${a.organizationId}/members`).set(admin.auth).send({ email: other.email, role: 'owner' });
      expect(added.body).toEqual(errorShape(403, 'forbidden'));
    });
  });

  describe('plans', () => {
    it('refuses webhook creation on the free plan with 403 plan_limit and keeps the webhooks made before the downgrade', async () => {
      const a = await newTenant(stack, 'Alice');
      const { webhook } = await createWebhook(stack, a, 'https://hooks.example.com/kept');
      await upgrade(stack, a, 'free');
      const refused = await stack.http().post(`/projects/${a.projectId}/webhooks`).set(a.auth).send({ url: 'https://hooks.example.com/new', events: ['baseline.uploaded'] });
      expect(refused.body).toEqual(errorShape(403, 'plan_limit'));
      const kept = await stack.http().get(`/webhooks/${webhook.id}`).set(a.auth).expect(200);
      expect(kept.body.webhook).toMatchObject({ id: webhook.id, url: 'https://hooks.example.com/kept', enabled: true });
      const list = await stack.http().get(`/projects/${a.projectId}/webhooks`).set(a.auth).expect(200);
      expect(list.body.webhooks.map((w: { id: string }) => w.id)).toEqual([webhook.id]);
    });

    it('refuses a second member on the solo plan with 403 plan_limit', async () => {
      const a = await newTenant(stack, 'Alice');
      const me = await stack.http().get('/auth/me').set(a.auth).expect(200);
      expect(me.body.memberships[0].organization.plan).toBe('solo');
      const other = await signup(stack, 'Grace');
      const res = await stack.http().post(`/organizations/${a.organizationId}/members`).set(a.auth).send({ email: other.email, role: 'member' });
      expect(res.body).toEqual(errorShape(403, 'plan_limit'));
      // The same answer for an address without an account: no way to tell who has one.
      const nobody = await stack.http().post(`/organizations/${a.organizationId}/members`).set(a.auth).send({ email: 'nobody-at-all@example.com', role: 'member' });
      expect(nobody.body).toEqual(errorShape(403, 'plan_limit'));
      const members = await stack.http().get(`/organizations/${a.organizationId}/members`).set(a.auth).expect(200);
      expect(members.body.members.map((m: { user: { id: string } }) => m.user.id)).toEqual([a.userId]);
    });

    it('never lets the last owner be demoted or removed (409 conflict)', async () => {
      const a = await newTenant(stack, 'Alice');
      await upgrade(stack, a);
      const demote = await stack.http().patch(`/organizations/${a.organizationId}/members/${a.userId}`).set(a.auth).send({ role: 'admin' });
      expect(demote.body).toEqual(errorShape(409, 'conflict'));
      const remove = await stack.http().delete(`/organizations/${a.organizationId}/members/${a.userId}`).set(a.auth);
      expect(remove.body).toEqual(errorShape(409, 'conflict'));
      const members = await stack.http().get(`/organizations/${a.organizationId}/members`).set(a.auth).expect(200);
      expect(members.body.members).toEqual([{ user: expect.objectContaining({ id: a.userId }), role: 'owner' }]);

      // With a second owner, the first may step down: the 409 is about the last one.
      const other = await signup(stack, 'Heidi');
      await addMember(stack, a, other.email, 'owner');
      await stack.http().patch(`/organizations/${a.organizationId}/members/${a.userId}`).set(a.auth).send({ role: 'admin' }).expect(200);
      const last = await stack.http().delete(`/organizations/${a.organizationId}/members/${other.userId}`).set(other.auth);
      expect(last.body).toEqual(errorShape(409, 'conflict'));
    });

    it('adds no member beyond the plan cap when many are added at once', async () => {
      const a = await newTenant(stack, 'Alice');
      // The solo cap (1, the owner) leaves no room to race; the team plan, given a cap of 3 for this
      // test, shows whether concurrent adds each count the members before any of them is written.
      await upgrade(stack, a);
      const cap = jest.replaceProperty(MEMBER_LIMIT, 'team', 3);
      try {
        const others = await Promise.all(Array.from({ length: 10 }, (_, i) => signup(stack, `Crowd${i}`)));
        const answers = await Promise.all(
          others.map((o) => stack.http().post(`/organizations/${a.organizationId}/members`).set(a.auth).send({ email: o.email, role: 'member' })),
        );
        expect(answers.map((r) => r.status).sort()).toEqual([201, 201, ...Array(8).fill(403)]);
        for (const refused of answers.filter((r) => r.status !== 201)) expect(refused.body).toEqual(errorShape(403, 'plan_limit'));
        const members = await stack.http().get(`/organizations/${a.organizationId}/members`).set(a.auth).expect(200);
        expect(members.body.members).toHaveLength(3);
      } finally {
        cap.restore();
      }
      // On the real solo cap, a crowd of adds still adds nobody.
      const b = await newTenant(stack, 'Bob');
      const crowd = await Promise.all(Array.from({ length: 5 }, (_, i) => signup(stack, `Solo${i}`)));
      const refused = await Promise.all(crowd.map((o) => stack.http().post(`/organizations/${b.organizationId}/members`).set(b.auth).send({ email: o.email, role: 'member' })));
      expect(refused.map((r) => r.status)).toEqual(Array(5).fill(403));
    });

    /** A team organization whose founder and `count - 1` others are all owners. */
    async function ownersOf(count: number) {
      const a = await newTenant(stack, 'Alice');
      await upgrade(stack, a);
      const owners = [{ userId: a.userId, auth: a.auth }];
      for (let i = 1; i < count; i += 1) {
        const other = await signup(stack, `Owner${i}`);
        await addMember(stack, a, other.email, 'owner');
        owners.push(other);
      }
      return { a, owners };
    }

    async function ownerIds(a: Tenant, auth: Auth) {
      const members = await stack.http().get(`/organizations/${a.organizationId}/members`).set(auth).expect(200);
      return (members.body.members as Array<{ user: { id: string }; role: string }>).filter((m) => m.role === 'owner').map((m) => m.user.id);
    }

    it('keeps one owner when every owner steps down at once', async () => {
      const { a, owners } = await ownersOf(8);
      const answers = await Promise.all(
        owners.map((o) => stack.http().patch(`/organizations/${a.organizationId}/members/${o.userId}`).set(o.auth).send({ role: 'admin' })),
      );
      expect(answers.map((r) => r.status).sort()).toEqual([...Array(7).fill(200), 409]);
      const kept = owners.find((_, i) => answers[i].status === 409)!;
      expect(await ownerIds(a, kept.auth)).toEqual([kept.userId]);
    });

    it('keeps one owner when every owner leaves at once, or owners demote each other at once', async () => {
      const { a, owners } = await ownersOf(8);
      const answers = await Promise.all(owners.map((o) => stack.http().delete(`/organizations/${a.organizationId}/members/${o.userId}`).set(o.auth)));
      expect(answers.map((r) => r.status).sort()).toEqual([...Array(7).fill(204), 409]);
      const kept = owners.find((_, i) => answers[i].status === 409)!;
      expect(await ownerIds(a, kept.auth)).toEqual([kept.userId]);

      // Each owner demotes the next one, round the ring: at least one stays owner.
      const ring = await ownersOf(8);
      const demotions = await Promise.all(
        ring.owners.map((o, i) => {
          const next = ring.owners[(i + 1) % ring.owners.length];
          return stack.http().patch(`/organizations/${ring.a.organizationId}/members/${next.userId}`).set(o.auth).send({ role: 'member' });
        }),
      );
      // 403 too: an owner demoted before its own request was authorized is a member by then.
      for (const r of demotions) expect([200, 403, 409]).toContain(r.status);
      expect((await ownerIds(ring.a, ring.a.auth)).length).toBeGreaterThanOrEqual(1);
    });
  });

  describe('audit log and rotation', () => {
    it('records a secret reveal with actor, target and request id, and never shows the secret', async () => {
      const a = await newTenant(stack, 'Alice');
      await upgrade(stack, a);
      const { webhook, secret } = await createWebhook(stack, a, 'https://hooks.example.com/audited');
      const reveal = await stack.http().get(`/webhooks/${webhook.id}/secret`).set(a.auth).expect(200);
      expect(reveal.body).toEqual({ secret });
      const rotated = await stack.http().post(`/webhooks/${webhook.id}/secret/rotate`).set(a.auth).expect(200);

      const log = await stack.http().get(`/organizations/${a.organizationId}/audit-log`).set(a.auth).expect(200);
      expect(log.body.entries).toContainEqual({
        id: expect.any(String),
        action: 'webhook.secret_revealed',
        actor: { type: 'user', id: a.userId },
        target: { type: 'webhook', id: webhook.id },
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        requestId: reveal.headers['x-request-id'],
        clientRequestId: null,
      });
      expect(log.body.entries.map((e: { action: string }) => e.action)).toEqual(expect.arrayContaining(['webhook.created', 'webhook.secret_rotated']));
      for (const s of [secret, rotated.body.secret as string]) {
        expect(log.text).not.toContain(s);
        expect(log.text).not.toContain(s.slice('whsec_'.length));
      }

      const member = await signup(stack, 'Mallory');
      await addMember(stack, a, member.email, 'member');
      const refused = await stack.http().get(`/organizations/${a.organizationId}/audit-log`).set(member.auth);
      expect(refused.body).toEqual(errorShape(403, 'forbidden'));
    });

    it('names an API token as the actor when a token reveals a secret', async () => {
      const a = await newTenant(stack, 'Alice');
      const { webhook, secret } = await createWebhook(stack, a, 'https://hooks.example.com/token');
      const token = await apiToken(stack, a, 'admin');
      const reveal = await stack.http().get(`/webhooks/${webhook.id}/secret`).set(token.auth).expect(200);
      expect(reveal.body).toEqual({ secret });
      const log = await stack.http().get(`/organizations/${a.organizationId}/audit-log`).set(a.auth).expect(200);
      expect(log.body.entries).toContainEqual(
        expect.objectContaining({ action: 'webhook.secret_revealed', actor: { type: 'api_token', id: token.id }, target: { type: 'webhook', id: webhook.id }, requestId: reveal.headers['x-request-id'] }),
      );
      expect(log.text).not.toContain(secret);
    });

    it('rotates a secret, keeps the previous one for about 24 hours and reveals the new one', async () => {
      const a = await newTenant(stack);
      const { webhook, secret } = await createWebhook(stack, a, 'https://hooks.example.com/rotate');
      const rotated = await stack.http().post(`/webhooks/${webhook.id}/secret/rotate`).set(a.auth).expect(200);
      expect(rotated.body).toEqual({ secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]{43}=$/), previousSecretExpiresAt: expect.any(String) });
      expect(rotated.body.secret).not.toBe(secret);
      const ahead = Date.parse(rotated.body.previousSecretExpiresAt) - Date.now();
      expect(ahead).toBeGreaterThan(24 * 3600_000 - 60_000);
      expect(ahead).toBeLessThanOrEqual(24 * 3600_000);
      const revealed = await stack.http().get(`/webhooks/${webhook.id}/secret`).set(a.auth).expect(200);
      expect(revealed.body).toEqual({ secret: rotated.body.secret });
      const got = await stack.http().get(`/webhooks/${webhook.id}`).set(a.auth).expect(200);
      expect(JSON.stringify(got.body)).not.toContain(rotated.body.secret);
    });

    /** The webhook's stored secrets, as the worker reads them to sign. */
    async function storedSecrets(webhookId: string) {
      const [row] = await stack.api.get(PrismaService).$queryRaw<Array<{ id: string; secretCiphertext: string; previousSecrets: Array<{ ciphertext: string; expiresAt: string }> }>>`
        SELECT id, secret_ciphertext AS "secretCiphertext", previous_secrets AS "previousSecrets" FROM webhooks WHERE id = ${webhookId}`;
      return row;
    }

    it('stores every secret that concurrent rotations hand out, each signing until its own expiry', async () => {
      const key = stack.api.get<BellhopConfig>(BELLHOP_CONFIG).secretsKey;
      const a = await newTenant(stack);
      const { webhook, secret: original } = await createWebhook(stack, a, 'https://hooks.example.com/rotate-race');
      const answers = await Promise.all(Array.from({ length: 10 }, () => stack.http().post(`/webhooks/${webhook.id}/secret/rotate`).set(a.auth)));
      expect(answers.map((r) => r.status)).toEqual(Array(10).fill(200));
      const handedOut = answers.map((r) => r.body.secret as string);
      expect(new Set(handedOut).size).toBe(10);

      // Every secret handed out signs: one as the current secret, the rest and the original as
      // previous ones, newest first, so the original (rotated out first) comes last.
      const row = await storedSecrets(webhook.id);
      const valid = validSecrets(row, key);
      expect([...valid].sort()).toEqual([original, ...handedOut].sort());
      expect(valid[valid.length - 1]).toBe(original);
      const revealed = await stack.http().get(`/webhooks/${webhook.id}/secret`).set(a.auth).expect(200);
      expect(revealed.body.secret).toBe(valid[0]);
      // Each answer's previousSecretExpiresAt is the stored expiry of the secret that it replaced.
      expect(row.previousSecrets.map((e) => e.expiresAt).sort()).toEqual(answers.map((r) => r.body.previousSecretExpiresAt as string).sort());
      for (const entry of row.previousSecrets) {
        const ahead = Date.parse(entry.expiresAt) - Date.now();
        expect(ahead).toBeGreaterThan(24 * 3600_000 - 60_000);
        expect(ahead).toBeLessThanOrEqual(24 * 3600_000);
      }
      // A day later only the current secret signs.
      expect(validSecrets(row, key, new Date(Date.now() + 24 * 3600_000 + 1))).toEqual([valid[0]]);
      const log = await stack.http().get(`/organizations/${a.organizationId}/audit-log`).set(a.auth).expect(200);
      expect(log.body.entries.filter((e: { action: string }) => e.action === 'webhook.secret_rotated')).toHaveLength(10);

      // The next rotation drops an entry whose day is over and keeps the others.
      await stack.api.get(PrismaService).$executeRaw`
        UPDATE webhooks SET previous_secrets = jsonb_set(previous_secrets, '{9,expiresAt}', '"2000-01-01T00:00:00.000Z"') WHERE id = ${webhook.id}`;
      const last = await stack.http().post(`/webhooks/${webhook.id}/secret/rotate`).set(a.auth).expect(200);
      const after = await storedSecrets(webhook.id);
      expect(after.previousSecrets).toHaveLength(10);
      expect(validSecrets(after, key)).toEqual([last.body.secret, ...valid.slice(0, 10)]);
    });
  });
});
