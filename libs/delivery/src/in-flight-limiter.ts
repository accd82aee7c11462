import type { Redis } from 'ioredis';
import { Batcher } from '@bellhop/database';
import { execPipeline } from '@bellhop/queue';

/**
 * Caps how many attempts to one webhook are in flight at once, across every worker process.
 * Open-source BullMQ has no per-group fairness, so a slow or flooded endpoint would otherwise
 * take every worker slot and starve the other tenants.
 */
export interface InFlightLimiter {
  /** Takes one of `limit` slots of the webhook for this delivery; false when all are taken. */
  acquire(webhookId: string, deliveryId: string, limit: number, ttlMs: number): Promise<boolean>;
  release(webhookId: string, deliveryId: string): Promise<void>;
}

export const IN_FLIGHT_LIMITER = Symbol('IN_FLIGHT_LIMITER');

/*
 * One sorted set per webhook: member = delivery id, score = when the slot expires. Expired slots
 * (a worker killed mid-attempt) are dropped before counting, so a crash never leaks a slot for
 * longer than the lease. Redis's own clock is used so that workers' clock skew does not matter.
 */
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ttl = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 1
end
return 0
`;

type RedisWithAcquire = Redis & {
  bellhopAcquireSlot(key: string, member: string, limit: number, ttlMs: number): Promise<number>;
};

interface SlotRequest {
  webhookId: string;
  deliveryId: string;
  limit: number;
  ttlMs: number;
}

/**
 * The shared limiter, on the worker's Redis under QUEUE_PREFIX. Takes and releases of concurrent
 * attempts share one pipelined round trip.
 */
export class RedisInFlightLimiter implements InFlightLimiter {
  private readonly redis: RedisWithAcquire;
  private readonly acquires = new Batcher<SlotRequest, boolean>((requests) => this.acquireMany(requests), { maxBatch: 500 });
  private readonly releases = new Batcher<Omit<SlotRequest, 'limit' | 'ttlMs'>, void>((requests) => this.releaseMany(requests), { maxBatch: 500 });

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    if (!(redis as unknown as Partial<RedisWithAcquire>).bellhopAcquireSlot) {
      redis.defineCommand('bellhopAcquireSlot', { numberOfKeys: 1, lua: ACQUIRE });
    }
    this.redis = redis as unknown as RedisWithAcquire;
  }

  private key(webhookId: string): string {
    return `${this.prefix}:inflight:${webhookId}`;
  }

  acquire(webhookId: string, deliveryId: string, limit: number, ttlMs: number): Promise<boolean> {
    return this.acquires.run({ webhookId, deliveryId, limit, ttlMs: Math.max(1, Math.ceil(ttlMs)) });
  }

  release(webhookId: string, deliveryId: string): Promise<void> {
    return this.releases.run({ webhookId, deliveryId });
  }

  private async acquireMany(requests: SlotRequest[]): Promise<boolean[]> {
    const pipeline = this.redis.pipeline();
    for (const r of requests) void (pipeline as unknown as RedisWithAcquire).bellhopAcquireSlot(this.key(r.webhookId), r.deliveryId, r.limit, r.ttlMs);
    return (await execPipeline(pipeline)).map((taken) => taken === 1);
  }

  private async releaseMany(requests: Array<Omit<SlotRequest, 'limit' | 'ttlMs'>>): Promise<void[]> {
    const pipeline = this.redis.pipeline();
    for (const r of requests) pipeline.zrem(this.key(r.webhookId), r.deliveryId);
    await execPipeline(pipeline);
    return requests.map(() => undefined);
  }
}

/** The same cap within one process: for tests, and for a single-process install without a shared Redis. */
export class LocalInFlightLimiter implements InFlightLimiter {
  private readonly slots = new Map<string, Map<string, number>>();

  async acquire(webhookId: string, deliveryId: string, limit: number, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    const held = this.slots.get(webhookId) ?? new Map<string, number>();
    for (const [member, expires] of held) if (expires <= now) held.delete(member);
    if (!held.has(deliveryId) && held.size >= limit) return false;
    held.set(deliveryId, now + ttlMs);
    this.slots.set(webhookId, held);
    return true;
  }

  async release(webhookId: string, deliveryId: string): Promise<void> {
    const held = this.slots.get(webhookId);
    if (!held) return;
    held.delete(deliveryId);
    if (held.size === 0) this.slots.delete(webhookId);
  }

  /** Slots held for a webhook right now (tests). */
  held(webhookId: string): number {
    return this.slots.get(webhookId)?.size ?? 0;
  }
}
