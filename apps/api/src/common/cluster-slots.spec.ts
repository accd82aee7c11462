import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Redis } from 'ioredis';
import type { BellhopConfig } from '@bellhop/config';
import { RedisInFlightLimiter, TestAttemptAnnouncer } from '@bellhop/delivery';
import { LoginLimiter } from '../auth/login-limiter';
import { PublishRateLimiter, RedisThrottlerStorage } from './rate-limit';

// The slot function of Redis Cluster, as ioredis's cluster client computes it (it ships with ioredis).
const clusterKeySlot = require('cluster-key-slot') as (key: string) => number;

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROOT = join(__dirname, '../../../..');

/**
 * The files that run Redis scripts or pipelines of their own (BullMQ's are BullMQ's), each
 * exercised by `useEveryScript` below. A file that starts doing so fails the source check until it
 * is added here and its calls are exercised too.
 */
const COVERED = ['apps/api/src/auth/login-limiter.ts', 'apps/api/src/common/rate-limit.ts', 'libs/delivery/src/in-flight-limiter.ts'];

interface Sent {
  /** The script's defineCommand name, or the command's own (`zrem`, `publish`). */
  name: string;
  keys: string[];
}

/**
 * A client that records every command it sends, pipelined or not, with the keys ioredis finds in
 * it: the same keys ioredis's cluster client routes by, so a script call whose keys span slots
 * would be refused there (CROSSSLOT), and so would a pipeline spanning nodes.
 */
function recordingRedis(): { redis: Redis; sent: Sent[]; scripts: Map<string, string> } {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const sent: Sent[] = [];
  const scripts = new Map<string, string>(); // sha1 of the script → its name
  const define = redis.defineCommand.bind(redis);
  redis.defineCommand = (name, definition) => {
    scripts.set(createHash('sha1').update(definition.lua).digest('hex'), name);
    define(name, definition);
  };
  const send = redis.sendCommand.bind(redis) as (...args: unknown[]) => unknown;
  (redis as unknown as { sendCommand: (...args: unknown[]) => unknown }).sendCommand = (...args: unknown[]) => {
    const command = args[0] as { name: string; args: unknown[]; getKeys(): Array<string | Buffer> };
    const script = ['evalsha', 'eval'].includes(command.name) ? String(command.args[0]) : undefined;
    const name = script === undefined ? command.name : (scripts.get(script) ?? scripts.get(createHash('sha1').update(script).digest('hex')) ?? command.name);
    // A channel is no key (PUBLISH reaches every node of a cluster), but it is kept under the
    // prefix all the same, so that installations sharing a Redis never hear each other.
    const keys = command.name === 'publish' ? [String(command.args[0])] : command.getKeys().map(String);
    if (keys.length > 0) sent.push({ name, keys });
    return send(...args);
  };
  return { redis, sent, scripts };
}

/** Every script and pipelined command Bellhop runs itself, through the classes that run them. */
async function useEveryScript(redis: Redis, prefix: string): Promise<void> {
  const config = {
    queuePrefix: prefix,
    authRateLimit: { limit: 2, windowMs: 60_000 },
    publishRateLimit: { limit: 10, windowMs: 60_000 },
  } as BellhopConfig;
  const res = { setHeader: () => undefined };

  const throttler = new RedisThrottlerStorage(redis, config);
  // Twice over a limit of 1, so that the script sets the blocked key as well.
  await throttler.increment('token:tok_1', 60_000, 1, 60_000, 'api');
  await throttler.increment('token:tok_1', 60_000, 1, 60_000, 'api');
  await throttler.increment('ip6:2001:db8:0:0::/64', 60_000, 5, 60_000, 'authfail');

  const publishes = new PublishRateLimiter(redis, config);
  const admission = await publishes.admit('org_a', 3, res);
  await admission.release(1);
  await Promise.all([publishes.admit('org_b', 1, res), publishes.admit('org_c', 2, res)]);

  const logins = new LoginLimiter(redis, config);
  await logins.attempt('ada@example.com', async () => null);
  await logins.attempt('ada@example.com', async () => ({ id: 'usr_1' }));

  const inFlight = new RedisInFlightLimiter(redis, prefix);
  const limits = { perWebhook: 1, perOrganization: 5, ttlMs: 60_000 };
  const first = { webhookId: 'wh_1', organizationId: 'org_a', member: 'job-1' };
  const second = { webhookId: 'wh_1', organizationId: 'org_a', member: 'job-2' };
  const elsewhere = { webhookId: 'wh_2', organizationId: 'org_b', member: 'job-3' };
  // Taken together, so that they share one pipeline across webhooks and organizations.
  expect(await Promise.all([inFlight.acquire(first, limits), inFlight.acquire(second, limits), inFlight.acquire(elsewhere, limits)])).toEqual(['held', 'webhook_full', 'held']);
  await Promise.all([inFlight.release(first), inFlight.release(elsewhere)]);

  await new TestAttemptAnnouncer(redis, config).recorded('dlv_1');
}

/** The non-spec TypeScript files of the apps and libs, relative to the repository, with their text. */
function sourceFiles(): Array<{ file: string; source: string }> {
  const files: Array<{ file: string; source: string }> = [];
  for (const top of ['apps', 'libs']) {
    for (const entry of readdirSync(join(ROOT, top), { recursive: true, encoding: 'utf8' })) {
      if (!entry.endsWith('.ts') || entry.endsWith('.spec.ts') || entry.includes('generated')) continue;
      const file = relative(ROOT, join(ROOT, top, entry));
      files.push({ file, source: readFileSync(join(ROOT, file), 'utf8') });
    }
  }
  return files;
}

/** The names of the scripts the code defines (`defineCommand('bellhopX', ...)`). */
function scriptsInSource(): string[] {
  return sourceFiles()
    .flatMap(({ source }) => [...source.matchAll(/defineCommand\(\s*'([A-Za-z]+)'/g)].map((match) => match[1]))
    .sort();
}

describe('Redis keys on a cluster (one slot per installation)', () => {
  const clients: Redis[] = [];
  const prefixes: string[] = [];

  afterAll(async () => {
    for (const prefix of prefixes) {
      const keys = await clients[0].keys(`${prefix}:*`);
      if (keys.length) await clients[0].del(...keys);
    }
    await Promise.all(clients.map((client) => client.quit()));
  });

  async function run(prefix: string): Promise<{ sent: Sent[]; scripts: string[] }> {
    const { redis, sent, scripts } = recordingRedis();
    clients.push(redis);
    prefixes.push(prefix);
    await useEveryScript(redis, prefix);
    return { sent, scripts: [...scripts.values()] };
  }

  it('keeps every key of every script call and pipeline under a hash-tagged prefix in the one slot of its tag', async () => {
    const tag = `bhunit${randomBytes(4).toString('hex')}`;
    const prefix = `{${tag}}`;
    const { sent, scripts } = await run(prefix);

    // Every script in the code was defined and called here, and every call was seen with its keys:
    // a script added later fails this until useEveryScript calls it.
    expect(scripts.sort()).toEqual(scriptsInSource());
    expect([...new Set(sent.map((s) => s.name))].sort()).toEqual(expect.arrayContaining([...scripts, 'zrem', 'publish']));
    for (const { name, keys } of sent) {
      for (const key of keys) expect({ name, key, underPrefix: key.startsWith(`${prefix}:`) }).toEqual({ name, key, underPrefix: true });
      expect({ name, keys, slots: [...new Set(keys.map(clusterKeySlot))] }).toEqual({ name, keys, slots: [clusterKeySlot(tag)] });
    }
    // The two-key scripts really got two keys (a second key dropped would pass the check above trivially).
    expect(sent.filter((s) => s.name === 'bellhopAcquireSlots' || s.name === 'bellhopRateLimit').every((s) => s.keys.length === 2)).toBe(true);
  });

  it('keeps the key names of earlier versions under a plain prefix, so that an upgrade finds its counters', async () => {
    const prefix = `bhunit${randomBytes(4).toString('hex')}`;
    const { sent } = await run(prefix);
    const keys = new Set(sent.flatMap((s) => s.keys).map((key) => key.slice(prefix.length)));
    const login = createHash('sha256').update('ada@example.com').digest('hex');
    expect([...keys].sort()).toEqual(
      [
        ':inflight-org:org_a',
        ':inflight-org:org_b',
        ':inflight:wh_1',
        ':inflight:wh_2',
        `:ratelimit:login:${login}`,
        ':ratelimit:publish:org_a',
        ':ratelimit:publish:org_b',
        ':ratelimit:publish:org_c',
        ':ratelimit:api:token:tok_1',
        ':ratelimit:api:token:tok_1:blocked',
        ':ratelimit:authfail:ip6:2001:db8:0:0::/64',
        ':ratelimit:authfail:ip6:2001:db8:0:0::/64:blocked',
        ':test-attempts',
      ].sort(),
    );
  });

  it('knows every file that runs Redis scripts, transactions or pipelines: a new one must be exercised above', () => {
    // Where keys must share a slot; a lone command is routed by its own key and needs nothing.
    const running = sourceFiles()
      .filter(({ source }) => /defineCommand\(|\.pipeline\(|\.multi\(|\.(eval|evalsha|evalRo|evalshaRo|fcall|fcallRo)\(/.test(source))
      .map(({ file }) => file);
    expect(running.sort()).toEqual(COVERED);
    expect(scriptsInSource()).toEqual(['bellhopAcquireSlots', 'bellhopGiveBackLogin', 'bellhopPublishAdmit', 'bellhopPublishRelease', 'bellhopRateLimit', 'bellhopTakeLogin']);
  });
});
