import type { Redis } from 'ioredis';
import { Batcher } from '@bellhop/database';
import { execPipeline } from '@bellhop/queue';

/**
 * Caps how many attempts are in flight at once, across every worker process: to one webhook, and
 * of one organization. Open-source BullMQ has no per-group fairness, so a slow or flooded endpoint,
 * or a tenant with many of them, would otherwise take every worker slot and starve the others.
 */
export interface InFlightLimiter {
  /**
   * Takes a slot of the webhook and one of the organization for this holder, both or neither:
   * 'held', or which cap was full (the organization's is looked at first). Taking again what the
   * holder already has succeeds and renews the lease.
   */
  acquire(holder: SlotHolder, limits: SlotLimits): Promise<SlotGrant>;
  /** Gives both slots back; nothing happens for slots the holder does not have. */
  release(holder: SlotHolder): Promise<void>;
}

/** Whose slots an attempt takes. */
export interface SlotHolder {
  webhookId: string;
  organizationId: string;
  /** This job's hold on the slots, unique per job and worker process. */
  member: string;
}

export interface SlotLimits {
  perWebhook: number;
  perOrganization: number;
  /** The lease: a holder that never gives its slots back (a killed worker) loses them after this. */
  ttlMs: number;
}

export type SlotGrant = 'held' | 'webhook_full' | 'organization_full';

export const IN_FLIGHT_LIMITER = Symbol('IN_FLIGHT_LIMITER');

/*
 * One sorted set per webhook and one per organization: member = the job's hold, score = when the
 * slot expires. Expired slots (a worker killed mid-attempt) are dropped when a set looks full,
 * before counting again, so a crash never takes a slot for longer than the lease; below the cap
 * they cost nothing, and the key itself expires with the last lease. Its expiry is only ever
 * pushed out (NX sets it on a key without one, GT lengthens it): a worker with a shorter lease
 * (another DELIVERY_TIMEOUT) must not make the key, and the longer leases in it, vanish early. Redis's own clock is used so
 * that workers' clock skew does not matter. Both caps are checked and both slots taken in one
 * script, so an attempt costs one round trip and a job never holds one slot while it waits for
 * the other. KEYS: webhook, organization. ARGV: member, webhook limit, organization limit, ttl.
 * Returns 1 (both taken), 0 (the webhook is full), 2 (the organization is full).
 */
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function room(key, limit)
  if redis.call('ZCARD', key) < limit then return true end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return redis.call('ZCARD', key) < limit or redis.call('ZSCORE', key, ARGV[1]) ~= false
end
if not room(KEYS[2], tonumber(ARGV[3])) then return 2 end
if not room(KEYS[1], tonumber(ARGV[2])) then return 0 end
local ttl = tonumber(ARGV[4])
local function take(key)
  redis.call('ZADD', key, now + ttl, ARGV[1])
  redis.call('PEXPIRE', key, ttl, 'NX')
  redis.call('PEXPIRE', key, ttl, 'GT')
end
take(KEYS[1])
take(KEYS[2])
return 1
`;

const GRANTS: Record<number, SlotGrant> = { 1: 'held', 0: 'webhook_full', 2: 'organization_full' };

type RedisWithAcquire = Redis & {
  bellhopAcquireSlots(webhookKey: string, organizationKey: string, member: string, perWebhook: number, perOrganization: number, ttlMs: number): Promise<number>;
};

interface SlotRequest {
  holder: SlotHolder;
  limits: SlotLimits;
}

/**
 * The shared limiter, on the worker's Redis under QUEUE_PREFIX. Takes and releases of concurrent
 * attempts share one pipelined round trip.
 */
export class RedisInFlightLimiter implements InFlightLimiter {
  private readonly redis: RedisWithAcquire;
  private readonly acquires = new Batcher<SlotRequest, SlotGrant>((requests) => this.acquireMany(requests), { maxBatch: 500 });
  private readonly releases = new Batcher<SlotHolder, void>((holders) => this.releaseMany(holders), { maxBatch: 500 });

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    if (!(redis as unknown as Partial<RedisWithAcquire>).bellhopAcquireSlots) {
      redis.defineCommand('bellhopAcquireSlots', { numberOfKeys: 2, lua: ACQUIRE });
    }
    this.redis = redis as unknown as RedisWithAcquire;
  }

  /** The webhook's set keeps the name it had when it was the only shared cap. */
  private webhookKey(webhookId: string): string {
    return `${this.prefix}:inflight:${webhookId}`;
  }

  private organizationKey(organizationId: string): string {
    return `${this.prefix}:inflight-org:${organizationId}`;
  }

  acquire(holder: SlotHolder, limits: SlotLimits): Promise<SlotGrant> {
    return this.acquires.run({ holder, limits: { ...limits, ttlMs: Math.max(1, Math.ceil(limits.ttlMs)) } });
  }

  release(holder: SlotHolder): Promise<void> {
    return this.releases.run(holder);
  }

  private async acquireMany(requests: SlotRequest[]): Promise<SlotGrant[]> {
    const pipeline = this.redis.pipeline();
    const scripted = pipeline as unknown as Pick<RedisWithAcquire, 'bellhopAcquireSlots'>;
    for (const { holder: h, limits: l } of requests) {
      void scripted.bellhopAcquireSlots(this.webhookKey(h.webhookId), this.organizationKey(h.organizationId), h.member, l.perWebhook, l.perOrganization, l.ttlMs);
    }
    return (await execPipeline(pipeline)).map((reply) => {
      const grant = GRANTS[reply as number];
      if (!grant) throw new Error(`unexpected answer of the in-flight limiter: ${String(reply)}`);
      return grant;
    });
  }

  private async releaseMany(holders: SlotHolder[]): Promise<void[]> {
    const pipeline = this.redis.pipeline();
    for (const h of holders) pipeline.zrem(this.webhookKey(h.webhookId), h.member).zrem(this.organizationKey(h.organizationId), h.member);
    await execPipeline(pipeline);
    return holders.map(() => undefined);
  }
}

/** Slots of one cap: member → when its lease ends. */
class LeasedSlots {
  private readonly slots = new Map<string, Map<string, number>>();

  /** Whether the member has, or could take, a slot of the group; drops expired leases first. */
  hasRoom(group: string, member: string, limit: number, now: number): boolean {
    const held = this.slots.get(group);
    if (!held) return true;
    for (const [m, expires] of held) if (expires <= now) held.delete(m);
    return held.has(member) || held.size < limit;
  }

  take(group: string, member: string, expires: number): void {
    const held = this.slots.get(group) ?? new Map<string, number>();
    held.set(member, expires);
    this.slots.set(group, held);
  }

  release(group: string, member: string): void {
    const held = this.slots.get(group);
    if (!held) return;
    held.delete(member);
    if (held.size === 0) this.slots.delete(group);
  }

  held(group: string): number {
    return this.slots.get(group)?.size ?? 0;
  }
}

/** The same caps within one process: for tests, and for a single-process install without a shared Redis. */
export class LocalInFlightLimiter implements InFlightLimiter {
  private readonly webhooks = new LeasedSlots();
  private readonly organizations = new LeasedSlots();

  async acquire(holder: SlotHolder, limits: SlotLimits): Promise<SlotGrant> {
    const now = Date.now();
    if (!this.organizations.hasRoom(holder.organizationId, holder.member, limits.perOrganization, now)) return 'organization_full';
    if (!this.webhooks.hasRoom(holder.webhookId, holder.member, limits.perWebhook, now)) return 'webhook_full';
    this.webhooks.take(holder.webhookId, holder.member, now + limits.ttlMs);
    this.organizations.take(holder.organizationId, holder.member, now + limits.ttlMs);
    return 'held';
  }

  async release(holder: SlotHolder): Promise<void> {
    this.webhooks.release(holder.webhookId, holder.member);
    this.organizations.release(holder.organizationId, holder.member);
  }

  /** Slots held for a webhook right now (tests). */
  held(webhookId: string): number {
    return this.webhooks.held(webhookId);
  }

  /** Slots held for an organization right now (tests). */
  heldByOrganization(organizationId: string): number {
    return this.organizations.held(organizationId);
  }
}
