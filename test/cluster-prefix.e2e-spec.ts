import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Redis } from 'ioredis';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { TEST_REDIS_URL } from './support/env';
import { documented } from './support/payloads';
import { Receiver } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { createWebhook, eventually, newTenant, type Tenant } from './support/tenant';

// The slot function of Redis Cluster, as ioredis's cluster client computes it (it ships with ioredis).
const clusterKeySlot = require('cluster-key-slot') as (key: string) => number;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function bellwetherVerify(rawBody: Buffer, header: string, secret: string): boolean {
  const expected = 'sha256=' + createHmac('sha256', secret).update(rawBody).digest('hex');
  return expected.length === header.length && timingSafeEqual(Buffer.from(expected), Buffer.from(header));
}

/** Every key whose name matches `pattern` (SCAN, so that a Redis shared with other tests is not blocked). */
async function scan(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

/**
 * QUEUE_PREFIX as a Redis Cluster hash tag, on the one local Redis: everything works as under a
 * plain prefix, and every key the run leaves behind, BullMQ's and Bellhop's own (rate limits,
 * in-flight caps), hashes to the tag's one slot, which is what lets a cluster run BullMQ's and
 * Bellhop's multi-key scripts at all.
 */
describe('a hash-tagged QUEUE_PREFIX (Redis Cluster)', () => {
  const tag = `bh${randomBytes(4).toString('hex')}`;
  const prefix = `{${tag}}`;
  let stack: Stack;
  let receiver: Receiver;
  let redis: Redis;
  let tenant: Tenant;

  beforeAll(async () => {
    redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
    receiver = await new Receiver().start();
    stack = await startStack({ queuePrefix: prefix, env: { PUBLISH_RATE_LIMIT: '4/1s', MAX_IN_FLIGHT_PER_WEBHOOK: '1' } });
    tenant = await newTenant(stack, 'Clustered');
  });

  afterAll(async () => {
    await stack?.stop();
    await receiver?.stop();
    if (redis) {
      // The stop removed the queue; the counters of the limits would only expire.
      const left = await scan(redis, `${prefix}*`);
      if (left.length) await redis.del(...left);
      await redis.quit();
    }
  });

  it('runs under the prefix it was given', () => {
    expect(stack.queuePrefix).toBe(prefix);
  });

  it('delivers signed events one at a time under the webhook cap, and refuses a publish over the limit', async () => {
    const { webhook, secret } = await createWebhook(stack, tenant, `${receiver.url}/hook`);
    const inFlightKey = `${prefix}:inflight:${webhook.id}`;
    // Each request is held a moment, so that the other deliveries meet the cap; meanwhile the
    // webhook's slot set in Redis, under the tagged prefix, holds the attempt being made.
    let holding = 0;
    let mostHeld = 0;
    const slotsHeld: Array<Promise<number>> = [];
    receiver.responder = (_req, _index, res) => {
      holding += 1;
      mostHeld = Math.max(mostHeld, holding);
      slotsHeld.push(redis.zcard(inFlightKey));
      setTimeout(() => {
        holding -= 1;
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok');
      }, 150);
    };

    const events = Array.from({ length: 4 }, (_, n) => ({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected', { n }) }));
    await stack.http().post(`/projects/${tenant.projectId}/events/batch`).set(tenant.auth).send({ events }).expect(202);
    // The organization's window of 4 events is spent: the next publish is refused, then taken once it passes.
    const one = { event: 'baseline.drift_detected', data: documented('baseline.drift_detected', { n: 4 }) };
    const refused = await stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send(one).expect(429);
    expect(refused.body.code).toBe('rate_limited');
    const retryAfter = Number(refused.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    await sleep(retryAfter * 1000);
    await stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send(one).expect(202);
    // The publish counters last one window of a second: looked at now, before they expire.
    const counters = await scan(redis, `${prefix}:ratelimit:publish:*`);
    expect(counters).toContain(`${prefix}:ratelimit:publish:${tenant.organizationId}`);
    expect(counters.filter((key) => clusterKeySlot(key) !== clusterKeySlot(tag))).toEqual([]);

    await receiver.waitFor(5);
    for (const req of receiver.requests) {
      expect(bellwetherVerify(req.body, String(req.headers['x-bellwether-signature']), secret)).toBe(true);
      const verified = new StandardWebhook(secret).verify(req.body.toString('utf8'), {
        'webhook-id': String(req.headers['webhook-id']),
        'webhook-timestamp': String(req.headers['webhook-timestamp']),
        'webhook-signature': String(req.headers['webhook-signature']),
      });
      expect(verified).toEqual(JSON.parse(req.body.toString('utf8')));
    }
    expect(receiver.requests.map((req) => JSON.parse(req.body.toString('utf8')).data.n).sort()).toEqual([0, 1, 2, 3, 4]);
    expect(mostHeld).toBe(1);
    expect(await Promise.all(slotsHeld)).toEqual([1, 1, 1, 1, 1]);
    expect(clusterKeySlot(inFlightKey)).toBe(clusterKeySlot(tag));

    await eventually(async () => {
      const res = await stack.http().get(`/webhooks/${webhook.id}/deliveries`).set(tenant.auth).expect(200);
      const deliveries = res.body.deliveries as Array<{ status: string }>;
      return deliveries.length === 5 && deliveries.every((d) => d.status === 'succeeded') ? true : undefined;
    });
  });

  it('counts failed logins under the prefix as well', async () => {
    await stack.http().post('/auth/login').send({ email: tenant.email, password: 'not the password' }).expect(401);
  });

  it('leaves every key of the run in the one slot of its hash tag', async () => {
    const keys = await scan(redis, `${prefix}*`);
    // BullMQ's queue and each kind of Bellhop's own keys are there to be checked.
    // (The publish counters, of a one-second window, were checked while they lasted.)
    for (const family of [':delivery:', ':ratelimit:api:', ':ratelimit:auth:', ':ratelimit:login:']) {
      expect({ family, found: keys.some((key) => key.startsWith(prefix + family)) }).toEqual({ family, found: true });
    }
    const slot = clusterKeySlot(tag);
    expect(keys.filter((key) => clusterKeySlot(key) !== slot)).toEqual([]);
    // And nothing of the run was written outside the prefix.
    expect((await scan(redis, `*${tag}*`)).filter((key) => !key.startsWith(`${prefix}:`))).toEqual([]);
  });
});
