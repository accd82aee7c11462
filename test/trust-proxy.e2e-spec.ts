import { Stack, startStack } from './support/stack';

/**
 * TRUST_PROXY decides who may name the client in X-Forwarded-For, and so whose address every
 * per-address limit counts. supertest connects from 127.0.0.1; failed authentication is limited
 * per address (AUTH_RATE_LIMIT, 3 here), so a fresh bucket for each forwarded address shows the
 * header was believed.
 */
describe('TRUST_PROXY', () => {
  /** Failed attempts, each claiming its own client address in X-Forwarded-For. */
  async function spoofedFailures(stack: Stack, count: number): Promise<number[]> {
    const statuses: number[] = [];
    for (let i = 0; i < count; i++) {
      const res = await stack.http().get('/projects').set('X-Forwarded-For', `198.51.100.${i + 1}`).set('Authorization', `Bearer junk-${i}`);
      statuses.push(res.status);
    }
    return statuses;
  }

  describe('false', () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await startStack({ worker: false, env: { TRUST_PROXY: 'false', AUTH_RATE_LIMIT: '3/1m' } });
    });
    afterAll(() => stack?.stop());

    it('ignores X-Forwarded-For: every failure counts against the connecting address', async () => {
      expect(await spoofedFailures(stack, 5)).toEqual([401, 401, 401, 429, 429]);
    });
  });

  describe('a CIDR range holding the proxy', () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await startStack({ worker: false, env: { TRUST_PROXY: '10.0.0.0/8, 127.0.0.0/8', AUTH_RATE_LIMIT: '3/1m' } });
    });
    afterAll(() => stack?.stop());

    it('takes the client address from X-Forwarded-For sent by that proxy', async () => {
      expect(await spoofedFailures(stack, 5)).toEqual([401, 401, 401, 401, 401]);
      // Each named address has its own budget, kept whatever the proxy.
      const again = [];
      for (let i = 0; i < 3; i++) again.push((await stack.http().get('/projects').set('X-Forwarded-For', '198.51.100.1').set('Authorization', 'Bearer junk')).status);
      expect(again).toEqual([401, 401, 429]);
    });
  });
});
