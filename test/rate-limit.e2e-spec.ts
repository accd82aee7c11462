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
