import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { InFlightLimiter, LocalInFlightLimiter, RedisInFlightLimiter, type SlotHolder, type SlotLimits } from './in-flight-limiter';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const holder = (member: string, webhookId = 'wh_a', organizationId = 'org_a'): SlotHolder => ({ webhookId, organizationId, member });
const limits = (perWebhook: number, perOrganization: number, ttlMs = 10_000): SlotLimits => ({ perWebhook, perOrganization, ttlMs });

describe.each([
  ['LocalInFlightLimiter', () => ({ limiter: new LocalInFlightLimiter() as InFlightLimiter, close: async () => undefined })],
  [
    'RedisInFlightLimiter (real Redis)',
    () => {
      const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
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

  it('gives out at most `perWebhook` slots per webhook', async () => {
    const { limiter } = subject;
    expect(await limiter.acquire(holder('dlv_1'), limits(2, 10))).toBe('held');
    expect(await limiter.acquire(holder('dlv_2'), limits(2, 10))).toBe('held');
    expect(await limiter.acquire(holder('dlv_3'), limits(2, 10))).toBe('webhook_full');
    // Another webhook has its own slots.
    expect(await limiter.acquire(holder('dlv_4', 'wh_b'), limits(2, 10))).toBe('held');
    await limiter.release(holder('dlv_1'));
    expect(await limiter.acquire(holder('dlv_3'), limits(2, 10))).toBe('held');
  });

  it('gives out at most `perOrganization` slots per organization, whichever its webhooks', async () => {
    const { limiter } = subject;
    expect(await limiter.acquire(holder('dlv_1', 'wh_a'), limits(10, 2))).toBe('held');
    expect(await limiter.acquire(holder('dlv_2', 'wh_b'), limits(10, 2))).toBe('held');
    expect(await limiter.acquire(holder('dlv_3', 'wh_c'), limits(10, 2))).toBe('organization_full');
    // Another organization has its own slots.
    expect(await limiter.acquire(holder('dlv_4', 'wh_d', 'org_b'), limits(10, 2))).toBe('held');
    await limiter.release(holder('dlv_2', 'wh_b'));
    expect(await limiter.acquire(holder('dlv_3', 'wh_c'), limits(10, 2))).toBe('held');
  });

  it('takes both slots or neither', async () => {
    const { limiter } = subject;
    // wh_a is full: the refused holder took no slot of its organization.
    expect(await limiter.acquire(holder('dlv_1', 'wh_a'), limits(1, 2))).toBe('held');
    expect(await limiter.acquire(holder('dlv_2', 'wh_a'), limits(1, 2))).toBe('webhook_full');
    expect(await limiter.acquire(holder('dlv_3', 'wh_b'), limits(1, 2))).toBe('held');
    // The organization is full: the refused holder took no slot of wh_c...
    expect(await limiter.acquire(holder('dlv_4', 'wh_c'), limits(1, 2))).toBe('organization_full');
    // ...so another organization's job to the same webhook gets it.
    expect(await limiter.acquire(holder('dlv_5', 'wh_c', 'org_b'), limits(1, 2))).toBe('held');
  });

  it('says the organization is full when both caps are', async () => {
    const { limiter } = subject;
    expect(await limiter.acquire(holder('dlv_1'), limits(1, 1))).toBe('held');
    expect(await limiter.acquire(holder('dlv_2'), limits(1, 1))).toBe('organization_full');
  });

  it('lets the same holder take its slots again', async () => {
    const { limiter } = subject;
    expect(await limiter.acquire(holder('dlv_1'), limits(1, 1))).toBe('held');
    expect(await limiter.acquire(holder('dlv_1'), limits(1, 1))).toBe('held');
  });

  it('frees the slots of a holder that never released them once its time is up', async () => {
    const { limiter } = subject;
    expect(await limiter.acquire(holder('dlv_crashed', 'wh_a'), limits(2, 2, 100))).toBe('held');
    // A live holder taken after it keeps both sets in place: the crashed slots go by their own lease.
    expect(await limiter.acquire(holder('dlv_live', 'wh_a'), limits(2, 2))).toBe('held');
    expect(await limiter.acquire(holder('dlv_2', 'wh_a'), limits(2, 5))).toBe('webhook_full');
    expect(await limiter.acquire(holder('dlv_3', 'wh_b'), limits(5, 2))).toBe('organization_full');
    await sleep(150);
    expect(await limiter.acquire(holder('dlv_2', 'wh_a'), limits(2, 3))).toBe('held');
    expect(await limiter.acquire(holder('dlv_3', 'wh_b'), limits(5, 3))).toBe('held');
    // The live holder still has its slots: the organization is full again.
    expect(await limiter.acquire(holder('dlv_4', 'wh_c'), limits(5, 3))).toBe('organization_full');
  });

  it('ignores the release of slots that are not held', async () => {
    const { limiter } = subject;
    await limiter.release(holder('dlv_never'));
    expect(await limiter.acquire(holder('dlv_1'), limits(1, 1))).toBe('held');
    await limiter.release(holder('dlv_other'));
    expect(await limiter.acquire(holder('dlv_2'), limits(1, 1))).toBe('organization_full');
  });
});

describe('RedisInFlightLimiter shared by worker processes (real Redis)', () => {
  const prefix = `bellhop-unit-${randomBytes(4).toString('hex')}`;
  // Two workers: two connections, one queue prefix.
  const connections = [new Redis(REDIS_URL, { maxRetriesPerRequest: 1 }), new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })];
  const [one, two] = connections.map((redis) => new RedisInFlightLimiter(redis, prefix));

  afterAll(async () => {
    const keys = await connections[0].keys(`${prefix}:*`);
    if (keys.length) await connections[0].del(...keys);
    await Promise.all(connections.map((redis) => redis.quit()));
  });

  it('counts both workers against one organization cap', async () => {
    expect(await one.acquire(holder('dlv_1', 'wh_1', 'org_shared'), limits(10, 3))).toBe('held');
    expect(await one.acquire(holder('dlv_2', 'wh_2', 'org_shared'), limits(10, 3))).toBe('held');
    expect(await two.acquire(holder('dlv_3', 'wh_3', 'org_shared'), limits(10, 3))).toBe('held');
    expect(await two.acquire(holder('dlv_4', 'wh_4', 'org_shared'), limits(10, 3))).toBe('organization_full');
    expect(await one.acquire(holder('dlv_5', 'wh_5', 'org_shared'), limits(10, 3))).toBe('organization_full');
    // A release by one worker is room for the other.
    await one.release(holder('dlv_1', 'wh_1', 'org_shared'));
    expect(await two.acquire(holder('dlv_4', 'wh_4', 'org_shared'), limits(10, 3))).toBe('held');
  });

  it('gives out no more than the cap when many holders of two workers race for it', async () => {
    const grants = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? one : two).acquire(holder(`dlv_race_${i}`, `wh_race_${i}`, 'org_race'), limits(10, 7))),
    );
    expect(grants.filter((g) => g === 'held')).toHaveLength(7);
    expect(grants.filter((g) => g === 'organization_full')).toHaveLength(33);
    // Neither cap's set holds a refused holder.
    expect(await connections[0].zcard(`${prefix}:inflight-org:org_race`)).toBe(7);
    const webhookSlots = await Promise.all(grants.map((_, i) => connections[0].zcard(`${prefix}:inflight:wh_race_${i}`)));
    expect(webhookSlots.reduce((a, b) => a + b, 0)).toBe(7);
  });

  it('lets both keys expire with the lease', async () => {
    expect(await one.acquire(holder('dlv_lease', 'wh_lease', 'org_lease'), limits(1, 1, 200))).toBe('held');
    const ttls = await Promise.all([connections[0].pttl(`${prefix}:inflight:wh_lease`), connections[0].pttl(`${prefix}:inflight-org:org_lease`)]);
    for (const ttl of ttls) {
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(200);
    }
  });

  it('keeps the keys as long as their longest lease when a worker with a shorter lease takes a slot', async () => {
    // A worker with a long DELIVERY_TIMEOUT holds a slot; one with a short lease takes the other.
    expect(await one.acquire(holder('dlv_long', 'wh_long', 'org_mixed'), limits(1, 2, 60_000))).toBe('held');
    expect(await two.acquire(holder('dlv_short', 'wh_long', 'org_mixed'), limits(2, 2, 100))).toBe('held');
    await sleep(200);
    // The short lease is over, the long one is not: one slot is free, the other still taken.
    expect(await connections[0].zrange(`${prefix}:inflight-org:org_mixed`, '0', '-1')).toContain('dlv_long');
    expect(await connections[0].zrange(`${prefix}:inflight:wh_long`, '0', '-1')).toContain('dlv_long');
    expect(await one.acquire(holder('dlv_3', 'wh_3', 'org_mixed'), limits(1, 2, 60_000))).toBe('held');
    expect(await one.acquire(holder('dlv_4', 'wh_4', 'org_mixed'), limits(1, 2, 60_000))).toBe('organization_full');
    expect(await connections[0].pttl(`${prefix}:inflight-org:org_mixed`)).toBeGreaterThan(50_000);
  });
});
