import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { InFlightLimiter, LocalInFlightLimiter, RedisInFlightLimiter } from './in-flight-limiter';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each([
  ['LocalInFlightLimiter', () => ({ limiter: new LocalInFlightLimiter() as InFlightLimiter, close: async () => undefined })],
  [
    'RedisInFlightLimiter (real Redis)',
    () => {
      const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
      const prefix = `bellhop-unit-${randomBytes(4).toString('hex')}`;
      return {
        limiter: new RedisInFlightLimiter(redis, prefix) as InFlightLimiter,
        close: async () => {
          const keys = await redis.keys(`${prefix}:*`);
          if (keys.length) await redis.del(...keys);
          await redis.quit();
        },
      };
    },
  ],
])('%s', (_name, make) => {
  let subject: ReturnType<typeof make>;
  beforeEach(() => {
    subject = make();
  });
  afterEach(() => subject.close());

  it('gives out at most `limit` slots per webhook', async () => {
    const { limiter } = subject;
    expect(await limiter.acquire('wh_a', 'dlv_1', 2, 10_000)).toBe(true);
    expect(await limiter.acquire('wh_a', 'dlv_2', 2, 10_000)).toBe(true);
    expect(await limiter.acquire('wh_a', 'dlv_3', 2, 10_000)).toBe(false);
    // Another webhook has its own slots.
    expect(await limiter.acquire('wh_b', 'dlv_4', 2, 10_000)).toBe(true);
    await limiter.release('wh_a', 'dlv_1');
    expect(await limiter.acquire('wh_a', 'dlv_3', 2, 10_000)).toBe(true);
  });

  it('lets the same delivery take its slot again', async () => {
    const { limiter } = subject;
    expect(await limiter.acquire('wh_a', 'dlv_1', 1, 10_000)).toBe(true);
    expect(await limiter.acquire('wh_a', 'dlv_1', 1, 10_000)).toBe(true);
  });

  it('frees the slot of a holder that never released it once its time is up', async () => {
    const { limiter } = subject;
    expect(await limiter.acquire('wh_a', 'dlv_crashed', 1, 100)).toBe(true);
    expect(await limiter.acquire('wh_a', 'dlv_2', 1, 10_000)).toBe(false);
    await sleep(150);
    expect(await limiter.acquire('wh_a', 'dlv_2', 1, 10_000)).toBe(true);
  });
});
