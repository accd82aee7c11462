import { ApiTokenVerifier } from '../apps/api/src/auth/api-tokens.service';
import { Stack, startStack } from './support/stack';
import { newTenant } from './support/tenant';

describe('rate limits', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ worker: false, env: { RATE_LIMIT: '20/1m', AUTH_RATE_LIMIT: '6/1m' } });
  });
  afterAll(() => stack?.stop());

  it('answers a burst at twice the per-token limit with 429 and Retry-After, in the error shape', async () => {
    const tenant = await newTenant(stack);
    const statuses: number[] = [];
    let limited: { headers: Record<string, string>; body: any } | undefined;
    for (let i = 0; i < 40; i++) {
      const res = await stack.http().get('/projects').set(tenant.auth);
      statuses.push(res.status);
      if (res.status === 429 && !limited) limited = res;
    }
    // newTenant spent one request of this token (creating the project).
    expect(statuses.filter((s) => s === 200)).toHaveLength(19);
    expect(statuses.filter((s) => s === 429)).toHaveLength(21);
    expect(Number(limited!.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited!.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(limited!.body).toEqual({ statusCode: 429, code: 'rate_limited', error: expect.any(String), details: [], requestId: expect.stringMatching(/^req_/) });

    // Another token has its own budget.
    const other = await newTenant(stack, 'Other');
    await stack.http().get('/projects').set(other.auth).expect(200);
  });

  // `trust proxy` is 'loopback' and supertest connects from 127.0.0.1: X-Forwarded-For names the
  // client, so each test acts from its own addresses and leaves the others' budgets alone.
  async function signup(from: string) {
    const email = `rl-${Math.random().toString(36).slice(2)}@example.com`;
    const res = await stack.http().post('/auth/signup').set('X-Forwarded-For', from).send({ email, password: 'correct horse battery', name: 'Limited' }).expect(201);
    return { token: res.body.session.token as string, organizationId: res.body.organization.id as string, email };
  }

  function expectLimited(res: { status: number; headers: Record<string, string>; body: unknown }) {
    expect(res.status).toBe(429);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(res.body).toEqual({ statusCode: 429, code: 'rate_limited', error: expect.any(String), details: [], requestId: expect.stringMatching(/^req_/) });
  }

  it('counts every spelling of the same bearer token in one bucket, and other credentials in their own', async () => {
    const from = '198.51.100.10';
    const { token, organizationId, email } = await signup(from);
    // A second credential of the same user: an API token (one request of the session's budget).
    const created = await stack
      .http()
      .post(`/organizations/${organizationId}/api-tokens`)
      .set('X-Forwarded-For', from)
      .set('Authorization', `Bearer ${token}`)
      .send({ name: 'ci', role: 'admin' })
      .expect(201);
    const variants = [`Bearer ${token}`, `bearer ${token}`, `BEARER ${token}`, `Bearer  ${token}`, `Bearer ${token}  `, `bEaReR \t${token}`];
    const statuses: number[] = [];
    for (let i = 0; i < 19; i++) {
      const res = await stack.http().get('/projects').set('X-Forwarded-For', from).set('Authorization', variants[i % variants.length]);
      statuses.push(res.status);
    }
    expect(statuses).toEqual(Array(19).fill(200));
    for (const variant of variants) expectLimited(await stack.http().get('/projects').set('X-Forwarded-For', from).set('Authorization', variant));

    // The API token and a second session of the same user, from the same address, have their own.
    await stack.http().get('/projects').set('X-Forwarded-For', from).set('Authorization', `Bearer ${created.body.token}`).expect(200);
    await stack.http().get('/projects').set('X-Forwarded-For', from).set('Authorization', `BEARER  ${created.body.token}`).expect(200);
    const login = await stack.http().post('/auth/login').set('X-Forwarded-For', from).send({ email, password: 'correct horse battery' }).expect(200);
    await stack.http().get('/projects').set('X-Forwarded-For', from).set('Authorization', `Bearer ${login.body.session.token}`).expect(200);
  });

  it('limits failed authentication per address, and never refuses a valid credential from that address', async () => {
    const verify = jest.spyOn(stack.api.get(ApiTokenVerifier), 'verify');
    try {
      const from = '203.0.113.7';
      const junk = (i: number) => [`Bearer bht_${'x'.repeat(40)}${i}`, `bearer junk-${i}`, `BEARER  eyJ.junk.${i}`, `Basic ${i}`, ''][i % 5];
      const statuses: number[] = [];
      let limited: any;
      for (let i = 0; i < 20; i++) {
        const req = stack.http().get('/projects').set('X-Forwarded-For', from);
        const res = await (junk(i) ? req.set('Authorization', junk(i)) : req);
        statuses.push(res.status);
        if (res.status === 429) limited ??= res;
      }
      // AUTH_RATE_LIMIT is 6/1m: six failures are answered 401, then the address is blocked.
      expect(statuses).toEqual([...Array(6).fill(401), ...Array(14).fill(429)]);
      expectLimited(limited);
      // Only API-token-shaped junk reaches the token lookup (one indexed query each): 0, 5, 10 and 15.
      expect(verify).toHaveBeenCalledTimes(4);
      // A valid session from the blocked address still gets in: clients behind one address share it.
      const valid = await signup('203.0.113.99');
      await stack.http().get('/projects').set('X-Forwarded-For', from).set('Authorization', `Bearer ${valid.token}`).expect(200);

      // Another address is not affected.
      await stack.http().get('/projects').set('X-Forwarded-For', '203.0.113.8').set('Authorization', 'Bearer junk').expect(401);
    } finally {
      verify.mockRestore();
    }
  });

  it('groups IPv6 clients by their /64', async () => {
    for (let i = 0; i < 6; i++) {
      const from = i % 2 ? '2001:db8:aa:1::1' : `2001:db8:aa:1:${i}:ffff:abcd:9`;
      await stack.http().get('/projects').set('X-Forwarded-For', from).set('Authorization', `Bearer junk-${i}`).expect(401);
    }
    expectLimited(await stack.http().get('/projects').set('X-Forwarded-For', '2001:db8:aa:1:ffff::1').set('Authorization', 'Bearer junk'));
    await stack.http().get('/projects').set('X-Forwarded-For', '2001:db8:aa:2::1').set('Authorization', 'Bearer junk').expect(401);
  });

  it('limits login attempts per client address', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await stack.http().post('/auth/login').send({ email: 'nobody@example.com', password: 'wrong password!' });
      statuses.push(res.status);
    }
    expect(statuses).toContain(429);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(6);
  });
});
