import { isIPv4, isIPv6 } from 'node:net';
import { ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { ThrottlerException, ThrottlerGuard, ThrottlerModule, ThrottlerStorage } from '@nestjs/throttler';
import type { ThrottlerLimitDetail } from '@nestjs/throttler/dist/throttler.guard.interface';
import type { ThrottlerStorageRecord } from '@nestjs/throttler/dist/throttler-storage-record.interface';
import { Redis } from 'ioredis';
import type { Request } from 'express';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Batcher } from '@bellhop/database';
import { REDIS, execPipeline } from '@bellhop/queue';
import type { Principal } from '../auth/principal';

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

/**
 * The rate-limit key of a client address. IPv4 addresses (IPv4-mapped IPv6 ones too) count alone;
 * IPv6 addresses by their /64, the block one subscriber gets, so that rotating through it buys nothing.
 */
export function addressKey(address: string | undefined): string {
  if (!address) return 'ip:unknown';
  const bare = address.split('%')[0];
  if (isIPv4(bare)) return 'ip:' + bare;
  if (!isIPv6(bare)) return 'ip:unknown';
  const groups = ipv6Groups(bare);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `ip:${groups[6] >> 8}.${groups[6] & 0xff}.${groups[7] >> 8}.${groups[7] & 0xff}`;
  }
  return 'ip6:' + groups.slice(0, 4).map((g) => g.toString(16)).join(':') + '::/64';
}

/** The eight 16-bit groups of a valid IPv6 address (with `::` and a dotted IPv4 tail expanded). */
function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    text = text.slice(0, v4.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const front = head ? head.split(':') : [];
  const back = tail ? tail.split(':') : [];
  const middle = tail === undefined ? [] : Array<string>(8 - front.length - back.length).fill('0');
  return [...front, ...middle, ...back].map((g) => parseInt(g, 16));
}

/**
 * The client's address as Express resolved it. `trust proxy` is 'loopback' (api.app.ts): only a
 * proxy on this machine may name the client in X-Forwarded-For; anyone else is their socket address.
 */
export function clientAddress(req: Request): string | undefined {
  return req.ip ?? req.socket?.remoteAddress;
}

/** The key of a request's `api` bucket: its resolved credential, else its client address. */
export function requestKey(req: Request): string {
  const principal = req.user as Principal | undefined;
  if (principal?.type === 'api_token') return 'token:' + principal.id;
  if (principal?.type === 'user' && principal.sessionId) return 'session:' + principal.sessionId;
  return addressKey(clientAddress(req));
}

/** The named limit for failed authentication (a bad, unknown, expired or missing bearer token). */
export const AUTH_FAILURES = 'authfail';

/**
 * Per resolved credential (session id, API token id) on the API, per address on login and signup
 * and on public routes. RateLimitGuard runs after BearerGuard, so the credential is known; failed
 * authentication is limited per address by AuthFailureLimiter, inside BearerGuard.
 */
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
        getTracker: (req: Record<string, any>) => requestKey(req as Request),
      },
      {
        name: 'auth',
        limit: config.authRateLimit.limit,
        ttl: config.authRateLimit.windowMs,
        skipIf: (context: ExecutionContext) => !AUTH_ROUTES.has(context.getHandler().name),
        getTracker: (req: Record<string, any>) => addressKey(clientAddress(req as Request)),
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

type Response = { setHeader(name: string, value: string): void };

/** The 429 to throw (the error filter gives it the standard shape), with Retry-After set in whole seconds (at least 1). */
function rateLimited(res: Response, retryAfterMs: number): ThrottlerException {
  res.setHeader('Retry-After', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
  return new ThrottlerException();
}

/**
 * Failed authentication per client address (IPv6 by /64): past the budget, a failed attempt is
 * answered 429 instead of 401, so that guessing credentials from one address is slow. Budget:
 * AUTH_RATE_LIMIT's limit and window (the setting for credential guessing per address), counted
 * in its own bucket, in Redis so that replicas share it. A credential that proves valid is never
 * refused for its address's failures: clients behind one NAT or proxy share an address.
 */
@Injectable()
export class AuthFailureLimiter {
  constructor(
    @Inject(ThrottlerStorage) private readonly storage: ThrottlerStorage,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {}

  /** Counts a failed attempt; returns the error to answer with: 429 once over budget, else `unauthenticated`. */
  async failed(req: Request, res: Response, unauthenticated: Error): Promise<Error> {
    const key = addressKey(clientAddress(req));
    const { limit, windowMs } = this.config.authRateLimit;
    const record = await this.storage.increment(key, windowMs, limit, windowMs, AUTH_FAILURES);
    if (!record.isBlocked) return unauthenticated;
    return rateLimited(res, record.timeToBlockExpire * 1000);
  }
}
