import { fetchDocument, resolve } from './support/openapi-walk';
import { Stack, startStack } from './support/stack';
import { newTenant, Tenant } from './support/tenant';

const SERVER_ID = /^req_[0-9a-f]{32}$/;

interface AuditEntry {
  action: string;
  target: { type: string; id: string };
  requestId: string | null;
  clientRequestId: string | null;
}

/**
 * The request id is always the server's own: the X-Request-Id answer header, the error body's
 * requestId and the audit entry's requestId. A caller's X-Request-Id is kept beside it, as
 * clientRequestId, when it is printable ASCII of at most 128 characters, and dropped otherwise.
 */
describe('request ids', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ worker: false });
  });
  afterAll(() => stack?.stop());

  /** Renames the tenant's project (an audited change), sending `clientId` as X-Request-Id when given. */
  async function rename(tenant: Tenant, name: string, clientId?: string) {
    let req = stack.http().patch(`/projects/${tenant.projectId}`).set(tenant.auth);
    if (clientId !== undefined) req = req.set('X-Request-Id', clientId);
    const res = await req.send({ name });
    expect(res.status).toBe(200);
    return res.headers['x-request-id'] as string;
  }

  async function auditLog(tenant: Tenant): Promise<AuditEntry[]> {
    const res = await stack.http().get(`/organizations/${tenant.organizationId}/audit-log`).set(tenant.auth).expect(200);
    return res.body.entries as AuditEntry[];
  }

  it("answers with its own request id and audits the caller's X-Request-Id as clientRequestId", async () => {
    const tenant = await newTenant(stack, 'Ids');
    const serverId = await rename(tenant, 'first', 'client-trace-0001');
    expect(serverId).toMatch(SERVER_ID);

    const entries = await auditLog(tenant);
    expect(entries[0]).toMatchObject({ action: 'project.updated', target: { type: 'project', id: tenant.projectId }, requestId: serverId, clientRequestId: 'client-trace-0001' });
    expect(entries.map((e) => e.requestId)).not.toContain('client-trace-0001');
  });

  it("cannot make an audit entry carry another request's id", async () => {
    const tenant = await newTenant(stack, 'Ids');
    const first = await rename(tenant, 'first');
    // The second request names the first one's id as its own.
    const second = await rename(tenant, 'second', first);
    expect(second).toMatch(SERVER_ID);
    expect(second).not.toBe(first);

    const entries = await auditLog(tenant);
    expect(entries.slice(0, 2).map((e) => [e.requestId, e.clientRequestId])).toEqual([
      [second, first],
      [first, null],
    ]);
    const ids = entries.map((e) => e.requestId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it.each([
    ['129 characters', 'x'.repeat(129)],
    ['a tab', 'tab\tinside'],
    ['a character outside ASCII', 'caf\u00e9'],
  ])('drops an X-Request-Id with %s', async (_, clientId) => {
    const tenant = await newTenant(stack, 'Ids');
    const serverId = await rename(tenant, 'odd', clientId);
    expect(serverId).toMatch(SERVER_ID);
    const [entry] = await auditLog(tenant);
    expect(entry).toMatchObject({ requestId: serverId, clientRequestId: null });
  });

  it('keeps the longest allowed X-Request-Id whole, and records null without one', async () => {
    const tenant = await newTenant(stack, 'Ids');
    const longest = `${'0123456789'.repeat(12)}-~ !"#$%`.slice(0, 128);
    expect(longest).toHaveLength(128);
    await rename(tenant, 'long', longest);
    const plain = await rename(tenant, 'plain');
    const entries = await auditLog(tenant);
    expect(entries.slice(0, 2).map((e) => e.clientRequestId)).toEqual([null, longest]);
    expect(entries[0].requestId).toBe(plain);
  });

  it("carries the server's id, not the caller's, in every error body, whatever raised it", async () => {
    const tenant = await newTenant(stack, 'Ids');
    const answers = [
      // validation (422)
      await stack.http().patch(`/projects/${tenant.projectId}`).set(tenant.auth).set('X-Request-Id', 'err-validation').send({ name: '' }),
      // malformed JSON, refused by the body parser before any route (400)
      await stack.http().post('/projects').set(tenant.auth).set('X-Request-Id', 'err-parser').set('Content-Type', 'application/json').send('{"name":'),
      // no route (404)
      await stack.http().get('/no-such-route').set(tenant.auth).set('X-Request-Id', 'err-route'),
      // authentication (401)
      await stack.http().get('/projects').set('Authorization', 'Bearer nope').set('X-Request-Id', 'req_0123456789abcdef0123456789abcdef'),
    ];
    expect(answers.map((r) => r.status)).toEqual([422, 400, 404, 401]);
    for (const res of answers) {
      expect(res.headers['x-request-id']).toMatch(SERVER_ID);
      expect(res.body.requestId).toBe(res.headers['x-request-id']);
    }
    expect(answers[3].body.requestId).not.toBe('req_0123456789abcdef0123456789abcdef');
  });

  it('describes clientRequestId in the OpenAPI document of the audit log', async () => {
    const doc = await fetchDocument(stack);
    const op = (doc.paths['/organizations/{orgId}/audit-log'] as Record<string, { responses?: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }> }>).get;
    const list = resolve(doc, op.responses?.['200']?.content?.['application/json']?.schema ?? null);
    const entry = resolve(doc, list?.properties?.entries?.items ?? null);
    expect(Object.keys(entry?.properties ?? {})).toEqual(expect.arrayContaining(['requestId', 'clientRequestId']));
    expect(entry?.properties?.clientRequestId).toMatchObject({ type: 'string', nullable: true });
  });
});
