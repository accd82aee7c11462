import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { ConfigError } from '@bellhop/config';
import { startApp } from '@bellhop/observability';
import { createApiApp } from '../apps/api/src/api.app';
import { createWorkerApp } from '../apps/worker/src/worker.app';
import { documented } from './support/payloads';
import { freePort } from './support/processes';
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

interface ClusterNode {
  url: string;
  stop: () => Promise<void>;
}

/**
 * A Redis Cluster of one node that owns every slot, on a port and in a directory of its own. It
 * answers as any cluster does: a multi-key command or script whose keys are in different slots is
 * refused (CROSSSLOT), and a client in cluster mode learns the slots from it (CLUSTER SLOTS).
 */
async function startClusterNode(): Promise<ClusterNode> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'bellhop-cluster-'));
  const server: ChildProcess = spawn(
    'redis-server',
    [
      ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
      ...['--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf')],
      // Alone, a node learns no address of its own to announce (CLUSTER SLOTS would name none,
      // and a cluster client would find no node to send anything to).
      ...['--cluster-announce-ip', '127.0.0.1'],
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  // A crashed or interrupted run must not leave the server behind.
  const kill = () => server.kill('SIGKILL');
  process.once('exit', kill);
  const stop = async () => {
    process.off('exit', kill);
    server.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const admin = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  // Refused until the server listens: each try fails, and is tried again.
  admin.on('error', () => undefined);
  try {
    await eventually(() => admin.connect().then(() => true), 10_000, 100);
    await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    await eventually(async () => (/cluster_state:ok/.test(String(await admin.call('CLUSTER', 'INFO'))) ? true : undefined), 10_000, 100);
  } catch (err) {
    await stop();
    throw err;
  } finally {
    admin.disconnect();
  }
  return { url: `redis://127.0.0.1:${port}`, stop };
}

/** How many CLUSTER SLOTS the node has answered: each cluster client asks when it connects. */
async function clusterSlotsCalls(redis: Redis): Promise<number> {
  const stats = String(await redis.info('commandstats'));
  return Number(/^cmdstat_cluster\|slots:calls=(\d+)/m.exec(stats)?.[1] ?? 0);
}

/**
 * REDIS_CLUSTER=true against a real cluster node, with QUEUE_PREFIX as a hash tag: everything works
 * as on one Redis, through cluster clients (the shared connection, the ?wait=true subscriber,
 * BullMQ's queue and worker), and every key the run leaves behind, BullMQ's and Bellhop's own
 * (rate limits, in-flight caps), hashes to the tag's one slot, which is what lets a cluster run
 * BullMQ's and Bellhop's multi-key scripts at all.
 */
describe('Redis Cluster (REDIS_CLUSTER=true, a hash-tagged QUEUE_PREFIX)', () => {
  const tag = `bh${randomBytes(4).toString('hex')}`;
  const prefix = `{${tag}}`;
  let node: ClusterNode;
  let stack: Stack;
  let receiver: Receiver;
  /** A plain connection to the node, to look at what the run wrote. */
  let redis: Redis;
  let tenant: Tenant;

  beforeAll(async () => {
    node = await startClusterNode();
    redis = new Redis(node.url, { maxRetriesPerRequest: 1 });
    receiver = await new Receiver().start();
    stack = await startStack({ queuePrefix: prefix, env: { REDIS_URL: node.url, REDIS_CLUSTER: 'true', PUBLISH_RATE_LIMIT: '4/1s', MAX_IN_FLIGHT_PER_WEBHOOK: '1' } });
    tenant = await newTenant(stack, 'Clustered');
  });

  afterAll(async () => {
    await stack?.stop();
    await receiver?.stop();
    await redis?.quit();
    // The server goes, and its keys and files with it.
    await node?.stop();
  });

  it('runs under the prefix it was given, through cluster clients', async () => {
    expect(stack.queuePrefix).toBe(prefix);
    // Each of the apps' connections is a cluster client that asked the node for its slots: the
    // shared one, the queue's (BullMQ's queue shares it, its worker duplicates it twice) and the
    // API's subscriber.
    expect(await clusterSlotsCalls(redis)).toBeGreaterThanOrEqual(6);
    const names = String(await redis.client('LIST'))
      .split('\n')
      .map((line) => / name=(\S*)/.exec(line)?.[1]);
    expect(names).toEqual(expect.arrayContaining(['bellhop', 'bellhop-queue', 'bellhop-test-attempts']));
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

  it("wakes a ?wait=true request by the worker's announcement through the cluster", async () => {
    const { TestAttemptWaiters } = await import('../apps/api/src/deliveries/test-attempt-waiters');
    // No periodic look within the test's time: only the announcement can end the wait early.
    jest.replaceProperty(stack.api.get(TestAttemptWaiters).options, 'recheckMs', 30_000);
    receiver.responder = () => ({ status: 200, body: 'ok' });
    const { webhook } = await createWebhook(stack, tenant, `${receiver.url}/wait`);
    const before = receiver.requests.length;
    const res = await stack.http().post(`/webhooks/${webhook.id}/test?wait=true`).set(tenant.auth).send({}).expect(200);
    const answeredAt = Date.now();
    expect(res.body.delivery).toMatchObject({ webhookId: webhook.id, test: true, status: 'succeeded', attempts: 1 });
    expect(answeredAt - receiver.requests[before].at).toBeLessThan(1_000);
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

/**
 * Without a hash tag in QUEUE_PREFIX, every multi-key script would be refused by a cluster
 * (CROSSSLOT) at its first use: both apps refuse to start instead, before connecting to anything.
 */
describe('REDIS_CLUSTER=true without a hash tag in QUEUE_PREFIX', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const name of Object.keys(process.env)) delete process.env[name];
    Object.assign(process.env, saved);
  });

  it.each([
    ['bellhop-api', createApiApp],
    ['bellhop-worker', () => createWorkerApp()],
  ])('stops %s at boot, naming both settings', async (name, create) => {
    // A URL nothing listens on: the boot must stop before it would matter.
    Object.assign(process.env, { NODE_ENV: 'test', LOG_LEVEL: 'error', REDIS_URL: `redis://127.0.0.1:${await freePort()}`, REDIS_CLUSTER: 'true', QUEUE_PREFIX: `bh${randomBytes(4).toString('hex')}` });
    const built = jest.fn(create);
    const started = Date.now();
    const boot = startApp(name, built, (config) => ({ port: config.port, started: 'started' }), []);
    await expect(boot).rejects.toThrow(ConfigError);
    await expect(boot).rejects.toThrow(/^REDIS_CLUSTER=true needs QUEUE_PREFIX to hold a Redis Cluster hash tag, such as \{bellhop\}.*got "bh[0-9a-f]{8}"/);
    expect(built).not.toHaveBeenCalled();
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
