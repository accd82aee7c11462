import { createHmac, randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { describeAnswer, errorShapeProblem } from './support/openapi-walk';
import { Stack, startStack } from './support/stack';
import { newTenant, Tenant } from './support/tenant';

/** Known to this file only, so that it can sign tokens exactly as the server would. */
const JWT_SECRET = `bellhop-e2e-auth-${randomBytes(24).toString('hex')}`;

type Claims = Record<string, unknown>;

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A JWT built by hand: base64url(header).base64url(payload).signature. */
function jwt(payload: Claims, options: { alg?: string; secret?: string; hash?: 'sha256' | 'sha512' | null } = {}): string {
  const alg = options.alg ?? 'HS256';
  const head = `${b64url({ alg, typ: 'JWT' })}.${b64url(payload)}`;
  const hash = options.hash === undefined ? 'sha256' : options.hash;
  if (hash === null) return `${head}.`;
  return `${head}.${createHmac(hash, options.secret ?? JWT_SECRET).update(head).digest('base64url')}`;
}

function claimsOf(token: string): Claims {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as Claims;
}

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

describe('authentication', () => {
  let stack: Stack;
  let tenant: Tenant;
  let claims: Claims;

  beforeAll(async () => {
    stack = await startStack({ worker: false, env: { JWT_SECRET, RATE_LIMIT: '1000000/1m', AUTH_RATE_LIMIT: '1000000/1m' } });
  });
  afterAll(() => stack?.stop());
  beforeEach(async () => {
    tenant = await newTenant(stack);
    claims = claimsOf(tenant.token);
  });

  async function expect401(auth: Record<string, string>, label: string) {
    for (const path of ['/auth/me', `/projects/${tenant.projectId}`]) {
      const res = await stack.http().get(path).set(auth);
      expect(describeAnswer(`${label}: GET ${path}`, res)).toMatch(/-> 401 /);
      expect(res.body.code).toBe('unauthenticated');
      expect(errorShapeProblem(res)).toBeNull();
    }
  }

  describe('session tokens', () => {
    it('issues sessions with the pinned claims: sub, sid, issuer, audience and expiry', () => {
      expect(JSON.parse(Buffer.from(tenant.token.split('.')[0], 'base64url').toString('utf8'))).toMatchObject({ alg: 'HS256' });
      expect(claims).toMatchObject({ sub: tenant.userId, sid: expect.stringMatching(/^ses_/), iss: 'bellhop', aud: 'bellhop-api', exp: expect.any(Number) });
    });

    it('accepts a token signed here with the right secret and claims, so the forgeries below fail for their flaw alone', async () => {
      const now = Math.floor(Date.now() / 1000);
      const res = await stack.http().get('/auth/me').set(bearer(jwt({ sub: claims.sub, sid: claims.sid, iss: 'bellhop', aud: 'bellhop-api', iat: now, exp: now + 600 })));
      expect(describeAnswer('own token', res)).toMatch(/-> 200 /);
      expect(res.body.user.id).toBe(tenant.userId);
    });

    const now = () => Math.floor(Date.now() / 1000);
    const good = (c: Claims): Claims => ({ sub: c.sub, sid: c.sid, iss: 'bellhop', aud: 'bellhop-api', iat: now(), exp: now() + 600 });

    it.each<[string, (c: Claims) => string]>([
      ['alg "none" with no signature', (c) => jwt(good(c), { alg: 'none', hash: null })],
      ['alg "None" with no signature', (c) => jwt(good(c), { alg: 'None', hash: null })],
      ['alg "none" with an HS256 signature', (c) => jwt(good(c), { alg: 'none' })],
      ['HS256 with no signature', (c) => jwt(good(c), { hash: null })],
      ['another secret', (c) => jwt(good(c), { secret: 'an-entirely-different-secret-of-32-bytes!' })],
      ['the development default secret', (c) => jwt(good(c), { secret: 'bellhop-development-jwt-secret-do-not-use-in-production' })],
      ['the wrong issuer', (c) => jwt({ ...good(c), iss: 'evil' })],
      ['no issuer', (c) => jwt({ ...good(c), iss: undefined })],
      ['the wrong audience', (c) => jwt({ ...good(c), aud: 'bellhop-admin' })],
      ['no audience', (c) => jwt({ ...good(c), aud: undefined })],
      ['an expiry in the past', (c) => jwt({ ...good(c), iat: now() - 3600, exp: now() - 60 })],
      ['a not-before in the future', (c) => jwt({ ...good(c), nbf: now() + 3600 })],
      ['HS512 with the right secret', (c) => jwt(good(c), { alg: 'HS512', hash: 'sha512' })],
      ['HS512 header over an HS256 signature', (c) => jwt(good(c), { alg: 'HS512' })],
      ['RS256 header over an HMAC signature', (c) => jwt(good(c), { alg: 'RS256' })],
      ['an unknown session id', (c) => jwt({ ...good(c), sid: 'ses_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T' })],
      ['no session id', (c) => jwt({ ...good(c), sid: undefined })],
      ['a numeric subject', (c) => jwt({ ...good(c), sub: 42 })],
    ])('refuses a session token with %s (401)', async (label, forge) => {
      await expect401(bearer(forge(claims)), label);
    });

    it("refuses a tampered payload: the real signature over another user's id", async () => {
      const other = await newTenant(stack, 'Other');
      const [head, , signature] = tenant.token.split('.');
      const tampered = `${head}.${b64url({ ...claims, sub: other.userId })}.${signature}`;
      await expect401(bearer(tampered), 'tampered sub');
      const extended = `${head}.${b64url({ ...claims, exp: (claims.exp as number) + 86400 })}.${signature}`;
      await expect401(bearer(extended), 'tampered exp');
    });

    it("refuses a correctly signed token that pairs one user with another user's session", async () => {
      const other = await newTenant(stack, 'Other');
      const otherClaims = claimsOf(other.token);
      const now = Math.floor(Date.now() / 1000);
      await expect401(bearer(jwt({ sub: tenant.userId, sid: otherClaims.sid, iss: 'bellhop', aud: 'bellhop-api', iat: now, exp: now + 600 })), 'session swap');
    });

    it('refuses a session at once after logout, also when re-signed by hand', async () => {
      await stack.http().get('/auth/me').set(tenant.auth).expect(200);
      await stack.http().post('/auth/logout').set(tenant.auth).expect(204);
      await expect401(tenant.auth, 'after logout');
      const now = Math.floor(Date.now() / 1000);
      await expect401(bearer(jwt({ sub: claims.sub, sid: claims.sid, iss: 'bellhop', aud: 'bellhop-api', iat: now, exp: now + 600 })), 're-signed after logout');
    });
  });

  describe('API tokens', () => {
    async function createToken(role: 'owner' | 'admin' | 'member' = 'admin') {
      const res = await stack.http().post(`/organizations/${tenant.organizationId}/api-tokens`).set(tenant.auth).send({ name: 'ci', role }).expect(201);
      expect(res.body).toEqual({
        apiToken: { id: expect.stringMatching(/^tok_/), name: 'ci', role, createdAt: expect.any(String), lastUsedAt: null, expiresAt: null },
        token: expect.stringMatching(/^bht_/),
      });
      return { id: res.body.apiToken.id as string, token: res.body.token as string };
    }

    it('refuses a token after its expiresAt (401), and refuses an expiresAt in the past or malformed (422)', async () => {
      const tokens = `/organizations/${tenant.organizationId}/api-tokens`;
      const soon = new Date(Date.now() + 1500).toISOString();
      const res = await stack.http().post(tokens).set(tenant.auth).send({ name: 'short', role: 'admin', expiresAt: soon }).expect(201);
      expect(res.body.apiToken.expiresAt).toBe(soon);
      await stack.http().get(`/projects/${tenant.projectId}`).set(bearer(res.body.token)).expect(200);
      await new Promise((resolve) => setTimeout(resolve, 1700));
      await expect401(bearer(res.body.token), 'expired token');
      for (const expiresAt of [new Date(Date.now() - 1000).toISOString(), 'tomorrow', '2026-13-01T00:00:00Z', 42, null]) {
        const bad = await stack.http().post(tokens).set(tenant.auth).send({ name: 'bad', role: 'admin', expiresAt });
        expect(describeAnswer(`expiresAt ${JSON.stringify(expiresAt)}`, bad)).toMatch(/-> 422 /);
      }
    });

    it("caps a token at its creator's current role, and ends it when the creator leaves", async () => {
      // A team organization with a second user, an admin, who makes an admin token.
      await stack.http().patch(`/organizations/${tenant.organizationId}`).set(tenant.auth).send({ plan: 'team' }).expect(200);
      const grace = await newTenant(stack, 'Grace');
      const graceUser = (await stack.http().get('/auth/me').set(grace.auth).expect(200)).body.user;
      await stack.http().post(`/organizations/${tenant.organizationId}/members`).set(tenant.auth).send({ email: graceUser.email, role: 'admin' }).expect(201);
      const made = await stack.http().post(`/organizations/${tenant.organizationId}/api-tokens`).set(grace.auth).send({ name: 'grace-ci', role: 'admin' }).expect(201);
      const token = bearer(made.body.token);
      const webhook = { url: 'https://example.com/hook', events: ['baseline.uploaded'] };
      await stack.http().post(`/projects/${tenant.projectId}/webhooks`).set(token).send(webhook).expect(201);
      // A token made by that token follows the same user.
      const child = await stack.http().post(`/organizations/${tenant.organizationId}/api-tokens`).set(token).send({ name: 'child', role: 'member' }).expect(201);
      // Grace is demoted to member: her admin token acts as a member token (reads yes, webhook changes no).
      await stack.http().patch(`/organizations/${tenant.organizationId}/members/${graceUser.id}`).set(tenant.auth).send({ role: 'member' }).expect(200);
      await stack.http().get(`/projects/${tenant.projectId}/webhooks`).set(token).expect(200);
      await stack.http().post(`/projects/${tenant.projectId}/webhooks`).set(token).send(webhook).expect(403);
      // Made admin again, the token is admin again: its own role is the ceiling.
      await stack.http().patch(`/organizations/${tenant.organizationId}/members/${graceUser.id}`).set(tenant.auth).send({ role: 'owner' }).expect(200);
      await stack.http().post(`/projects/${tenant.projectId}/webhooks`).set(token).send(webhook).expect(201);
      const me = await stack.http().get('/organizations').set(token).expect(200);
      expect(me.body.organizations[0].role).toBe('admin');
      // Grace leaves: her tokens go with her.
      await stack.http().delete(`/organizations/${tenant.organizationId}/members/${graceUser.id}`).set(tenant.auth).expect(204);
      await expect401(token, "token of a creator who left");
      await expect401(bearer(child.body.token), "token made by a token whose creator left");
    });

    it('refuses a revoked API token at once', async () => {
      const { id, token } = await createToken();
      await stack.http().get(`/projects/${tenant.projectId}`).set(bearer(token)).expect(200);
      await stack.http().delete(`/api-tokens/${id}`).set(tenant.auth).expect(204);
      await expect401(bearer(token), 'revoked token');
      const again = await stack.http().delete(`/api-tokens/${id}`).set(tenant.auth);
      expect(again.status).toBe(404);
      const list = await stack.http().get(`/organizations/${tenant.organizationId}/api-tokens`).set(tenant.auth).expect(200);
      expect(list.body.apiTokens.map((t: { id: string }) => t.id)).not.toContain(id);
    });

    it('refuses a token that only looks like one of ours', async () => {
      const { token } = await createToken();
      await expect401(bearer(token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A')), 'last character changed');
      await expect401(bearer(token + 'x'), 'one character more');
      await expect401(bearer(token.slice(0, 20)), 'prefix only');
    });

    it('sets lastUsedAt once the token is used', async () => {
      const { id, token } = await createToken();
      const before = await stack.http().get(`/organizations/${tenant.organizationId}/api-tokens`).set(tenant.auth).expect(200);
      expect(before.body.apiTokens.find((t: { id: string }) => t.id === id).lastUsedAt).toBeNull();
      const usedAt = Date.now();
      await stack.http().get('/projects').set(bearer(token)).expect(200);
      const after = await stack.http().get(`/organizations/${tenant.organizationId}/api-tokens`).set(tenant.auth).expect(200);
      const lastUsedAt = after.body.apiTokens.find((t: { id: string }) => t.id === id).lastUsedAt as string;
      expect(lastUsedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(Math.abs(Date.parse(lastUsedAt) - usedAt)).toBeLessThan(10_000);
    });

    it('shows the token once: never in the list, the audit log or the database', async () => {
      const { id, token } = await createToken();
      await stack.http().get('/projects').set(bearer(token)).expect(200);
      const list = await stack.http().get(`/organizations/${tenant.organizationId}/api-tokens`).set(tenant.auth).expect(200);
      expect(list.body.apiTokens).toEqual([{ id, name: 'ci', role: 'admin', createdAt: expect.any(String), lastUsedAt: expect.any(String), expiresAt: null }]);
      expect(list.text).not.toContain(token);
      const audit = await stack.http().get(`/organizations/${tenant.organizationId}/audit-log`).set(tenant.auth).expect(200);
      expect(audit.body.entries.map((e: { action: string }) => e.action)).toContain('api_token.created');
      expect(audit.text).not.toContain(token);
      const me = await stack.http().get('/auth/me').set(bearer(token)).expect(200);
      expect(JSON.stringify(me.body)).not.toContain(token);

      const db = new Client({ connectionString: stack.databaseUrl });
      await db.connect();
      try {
        const rows = await db.query('SELECT * FROM api_tokens WHERE id = $1', [id]);
        expect(rows.rows).toHaveLength(1);
        const stored = JSON.stringify(rows.rows[0]);
        expect(stored).not.toContain(token);
        expect(stored).not.toContain(token.slice(20));
      } finally {
        await db.end();
      }
    });
  });
});
