import { createHash } from 'node:crypto';
import { ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { ThrottlerGuard, ThrottlerModule, ThrottlerStorage } from '@nestjs/throttler';
import type { ThrottlerLimitDetail } from '@nestjs/throttler/dist/throttler.guard.interface';
import type { ThrottlerStorageRecord } from '@nestjs/throttler/dist/throttler-storage-record.interface';
import { Redis } from 'ioredis';
import type { Request } from 'express';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Batcher } from '@bellhop/database';
import { REDIS, execPipeline } from '@bellhop/queue';

/**
 * Fixed-window counters in Redis, so limits hold across API replicas. One script per check: count
 * the hit, and once over the limit, block the key for the block duration.
 */
const INCREMENT = `
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if hits > tonumber(ARGV[2]) and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
end
return { hits, ttl, redis.call('PTTL', KEYS[2]) }
`;

interface Hit {
  base: string;
  ttl: number;
  limit: number;
  blockDuration: number;
}

type RateLimitRedis = Redis & { bellhopRateLimit(key: string, blockedKey: string, ttl: number, limit: number, block: number): Promise<[number, number, number]> };

@Injectable()
export class RedisThrottlerStorage implements ThrottlerStorage {
  /** Hits of requests that arrive together are counted in one pipelined round trip. */
  private readonly hits = new Batcher<Hit, [number, number, number]>((hits) => this.countMany(hits), { maxBatch: 500 });

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {
    // Sent as EVALSHA, falling back to EVAL once after a Redis restart.
    if (!('bellhopRateLimit' in redis)) redis.defineCommand('bellhopRateLimit', { numberOfKeys: 2, lua: INCREMENT });
  }

  async increment(key: string, ttl: number, limit: number, blockDuration: number, name: string): Promise<ThrottlerStorageRecord> {
    const base = `${this.config.queuePrefix}:ratelimit:${name}:${key}`;
    const [hits, ttlMs, blockMs] = await this.hits.run({ base, ttl, limit, blockDuration: blockDuration || ttl });
    return {
      totalHits: hits,
      timeToExpire: Math.max(0, Math.ceil(ttlMs / 1000)),
      isBlocked: blockMs > 0,
      timeToBlockExpire: blockMs > 0 ? Math.ceil(blockMs / 1000) : 0,
    };
  }

  private async countMany(hits: Hit[]): Promise<Array<[number, number, number]>> {
    const pipeline = this.redis.pipeline();
    for (const hit of hits) void (pipeline as unknown as RateLimitRedis).bellhopRateLimit(hit.base, `${hit.base}:blocked`, hit.ttl, hit.limit, hit.blockDuration);
    return (await execPipeline(pipeline)) as Array<[number, number, number]>;
  }
}

const AUTH_ROUTES = new Set(['signup', 'login']);
const UNLIMITED = /^\/(health|metrics|docs)/;

function clientAddress(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}

/** Per token (a hash of the bearer credential) on the API, per address on login and signup. */
export const rateLimitModule = ThrottlerModule.forRootAsync({
  inject: [BELLHOP_CONFIG, REDIS],
  useFactory: (config: BellhopConfig, redis: Redis) => ({
    storage: new RedisThrottlerStorage(redis, config),
    errorMessage: 'Too many requests, slow down',
    generateKey: (_context: ExecutionContext, tracker: string, name: string) => `${name}:${tracker}`,
    throttlers: [
      {
        name: 'api',
        limit: config.rateLimit.limit,
        ttl: config.rateLimit.windowMs,
        skipIf: (context: ExecutionContext) => {
          const req = context.switchToHttp().getRequest<Request>();
          return UNLIMITED.test(req.path) || AUTH_ROUTES.has(context.getHandler().name);
        },
        getTracker: (req: Record<string, any>) => {
          const header = (req as Request).headers.authorization;
          return header ? 'token:' + createHash('sha256').update(header).digest('hex').slice(0, 32) : 'ip:' + clientAddress(req as Request);
        },
      },
      {
        name: 'auth',
        limit: config.authRateLimit.limit,
        ttl: config.authRateLimit.windowMs,
        skipIf: (context: ExecutionContext) => !AUTH_ROUTES.has(context.getHandler().name),
        getTracker: (req: Record<string, any>) => 'ip:' + clientAddress(req as Request),
      },
    ],
  }),
});

/** The throttler guard, answering with the standard Retry-After whichever named limit was hit. */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  protected override async throwThrottlingException(context: ExecutionContext, detail: ThrottlerLimitDetail): Promise<void> {
    const res = context.switchToHttp().getResponse<{ setHeader(name: string, value: string): void }>();
    res.setHeader('Retry-After', String(Math.max(1, detail.timeToBlockExpire)));
    return super.throwThrottlingException(context, detail);
  }
}
