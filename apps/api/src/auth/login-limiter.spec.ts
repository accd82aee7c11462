import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { BellhopConfig } from '@bellhop/config';
import { AppError } from '@bellhop/domain';
import { LoginLimiter } from './login-limiter';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('LoginLimiter (real Redis)', () => {
  let redis: Redis;
  const prefix = `bellhop-unit-${randomBytes(4).toString('hex')}`;
  const limiter = (limit: number, windowMs = 60_000) =>
    new LoginLimiter(redis, { queuePrefix: prefix, authRateLimit: { limit, windowMs } } as BellhopConfig);
  const email = () => `ada-${randomBytes(4).toString('hex')}@example.com`;
  const wrong = async () => null;
  const right = async () => ({ id: 'usr_1' });

  beforeAll(() => {
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  });

  async function refusal(attempt: Promise<unknown>): Promise<AppError> {
    const err = await attempt.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ status: 429, code: 'rate_limited' });
    return err as AppError;
  }

  it('refuses an account’s logins, without running the check, once its window holds `limit` failures', async () => {
    const logins = limiter(3);
    const account = email();
    for (let i = 0; i < 3; i++) expect(await logins.attempt(account, wrong)).toBeNull();
    const check = jest.fn(right);
    const err = await refusal(logins.attempt(account, check));
    expect(check).not.toHaveBeenCalled();
    expect(err.retryAfterSeconds).toBeGreaterThan(0);
    expect(err.retryAfterSeconds).toBeLessThanOrEqual(60);
    // Spelled differently, the same account; another account has its own budget.
    await refusal(logins.attempt(` ${account.toUpperCase()} `, right));
    expect(await logins.attempt(email(), right)).toEqual({ id: 'usr_1' });
  });

  it('counts neither successes nor checks that throw, and a success does not clear earlier failures', async () => {
    const logins = limiter(3);
    const account = email();
    expect(await logins.attempt(account, wrong)).toBeNull();
    expect(await logins.attempt(account, wrong)).toBeNull();
    for (let i = 0; i < 5; i++) expect(await logins.attempt(account, right)).toEqual({ id: 'usr_1' });
    await expect(logins.attempt(account, () => Promise.reject(new Error('busy')))).rejects.toThrow('busy');
    // Two failures so far: one more is allowed, then the account is refused.
    expect(await logins.attempt(account, wrong)).toBeNull();
    await refusal(logins.attempt(account, right));
  });

  it('lets no more than `limit` concurrent guesses be checked', async () => {
    const logins = limiter(4);
    const account = email();
    let checked = 0;
    const slowWrong = async () => {
      checked++;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return null;
    };
    const results = await Promise.allSettled(Array.from({ length: 12 }, () => logins.attempt(account, slowWrong)));
    expect(checked).toBe(4);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(4);
    expect(results.filter((r) => r.status === 'rejected' && (r.reason as AppError).code === 'rate_limited')).toHaveLength(8);
  });

  it('lets the account in again once the window has passed', async () => {
    const logins = limiter(2, 300);
    const account = email();
    await logins.attempt(account, wrong);
    await logins.attempt(account, wrong);
    await refusal(logins.attempt(account, right));
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(await logins.attempt(account, right)).toEqual({ id: 'usr_1' });
  });

  it('gives a success back only to the window that counted it', async () => {
    // Windows of their own: the first short, so that a check outlasts it; the second long, so that
    // nothing expires while it is checked.
    const own = `${prefix}-late`;
    const short = new LoginLimiter(redis, { queuePrefix: own, authRateLimit: { limit: 3, windowMs: 200 } } as BellhopConfig);
    const long = new LoginLimiter(redis, { queuePrefix: own, authRateLimit: { limit: 3, windowMs: 60_000 } } as BellhopConfig);
    const account = email();
    let finish!: () => void;
    const checking = new Promise<void>((resolve) => (finish = resolve));
    const slow = short.attempt(account, async () => {
      await checking;
      return { id: 'usr_1' };
    });
    // The slow success's window ends while it is checked; the next one fills with failures.
    while ((await redis.keys(`${own}:*`)).length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    while ((await redis.keys(`${own}:*`)).length > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    for (let i = 0; i < 3; i++) expect(await long.attempt(account, wrong)).toBeNull();
    finish();
    expect(await slow).toEqual({ id: 'usr_1' });
    // Its give-back made no room in the new window.
    await refusal(long.attempt(account, wrong));
    const keys = await redis.keys(`${own}:*`);
    await redis.del(...keys);
  });

  it('keeps emails out of Redis key names', async () => {
    const logins = limiter(3);
    const account = email();
    await logins.attempt(account, wrong);
    const keys = await redis.keys(`${prefix}:*`);
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) expect(key).toMatch(new RegExp(`^${prefix}:ratelimit:login:[0-9a-f]{64}$`));
  });
});
