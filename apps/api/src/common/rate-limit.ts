import { isIPv4, isIPv6 } from 'node:net';
import { ExecutionContext, Inject, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ThrottlerException, ThrottlerGuard, ThrottlerModule, ThrottlerStorage } from '@nestjs/throttler';
import type { ThrottlerLimitDetail } from '@nestjs/throttler/dist/throttler.guard.interface';
import type { ThrottlerStorageRecord } from '@nestjs/throttler/dist/throttler-storage-record.interface';
import { Redis } from 'ioredis';
import type { Request } from 'express';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Batcher } from '@bellhop/database';
import { AppError } from '@bellhop/domain';
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
const PUBLISH_ROUTE = 'bellhop:publish-route';
const reflector = new Reflector();

/**
 * Marks a publish route: limited per organization by PublishRateLimiter (PUBLISH_RATE_LIMIT, a
 * batch counting its items), not by the per-credential `api` limit.
 */
export const PublishRoute = () => SetMetadata(PUBLISH_ROUTE, true);

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
 * The client's address as Express resolved it with TRUST_PROXY (api.app.ts; loopback by default):
 * only a trusted proxy may name the client in X-Forwarded-For; anyone else is their socket address.
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
 * authentication is limited per address by AuthFailureLimiter, inside BearerGuard. Publish routes
 * are limited per organization instead, by PublishRateLimiter.
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
          return UNLIMITED.test(req.path) || AUTH_ROUTES.has(context.getHandler().name) || reflector.get<boolean>(PUBLISH_ROUTE, context.getHandler()) === true;
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
function rateLimited(res: Response, retryAfterMs: number, message?: string): Error {
  res.setHeader('Retry-After', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
  return message === undefined ? new ThrottlerException() : new AppError('rate_limited', message);
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

/**
 * Takes `events` from the organization's window if they all fit, else nothing. The window starts
 * with its first event and is named by the Redis time it started, so that events handed back late
 * (PublishAdmission.release) go back to the window that counted them, never to the next one.
 * Answers [1, window] when taken, [0, ms until the window ends] when not.
 */
const ADMIT = `
local used = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local events = tonumber(ARGV[1])
if used + events > tonumber(ARGV[2]) then return { 0, redis.call('PTTL', KEYS[1]) } end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'n', events, 'w', now[1] .. '.' .. now[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('HINCRBY', KEYS[1], 'n', events)
end
return { 1, redis.call('HGET', KEYS[1], 'w') }
`;

/** Hands `events` back to the window that took them, if it is still the current one. */
const RELEASE = `
if redis.call('HGET', KEYS[1], 'w') == ARGV[2] then redis.call('HINCRBY', KEYS[1], 'n', -tonumber(ARGV[1])) end
return 0
`;

interface Admit {
  key: string;
  events: number;
}

type PublishRedis = Redis & {
  bellhopPublishAdmit(key: string, events: number, limit: number, windowMs: number): Promise<[0 | 1, number | string]>;
  bellhopPublishRelease(key: string, events: number, window: string): Promise<number>;
};

/** Events taken from an organization's publish budget; those that turn out not to be new are handed back. */
export interface PublishAdmission {
  /** Hands back events that were not published after all: replays of an earlier publish, or a failed write. */
  release(events: number): Promise<void>;
}

/**
 * PUBLISH_RATE_LIMIT: events per window for each organization, whichever credential publishes,
 * counted in Redis so that API replicas share the budget. A batch is taken whole or refused whole.
 * Publish routes call it once the request is known to be valid and in scope (an unknown project,
 * a body that fails validation cost nothing), before anything is written.
 */
@Injectable()
export class PublishRateLimiter {
  /** Admissions of publishes that arrive together go to Redis in one pipelined round trip. */
  private readonly admits = new Batcher<Admit, [0 | 1, number | string]>((admits) => this.admitMany(admits), { maxBatch: 500 });

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {
    if (!('bellhopPublishAdmit' in redis)) redis.defineCommand('bellhopPublishAdmit', { numberOfKeys: 1, lua: ADMIT });
    if (!('bellhopPublishRelease' in redis)) redis.defineCommand('bellhopPublishRelease', { numberOfKeys: 1, lua: RELEASE });
  }

  /** Takes `events` from the organization's budget, all or none; none fit: 429 with Retry-After until the window ends. */
  async admit(organizationId: string, events: number, res: Response): Promise<PublishAdmission> {
    const { limit, windowMs } = this.config.publishRateLimit;
    const budget = `${limit} events per ${windowMs / 1000}s for each organization`;
    if (events > limit) {
      // It would never fit: say so, rather than have the client wait for a window that cannot take it.
      throw rateLimited(res, windowMs, `A batch of ${events} events is more than the publish limit (${budget}) allows: send smaller batches`);
    }
    const key = `${this.config.queuePrefix}:ratelimit:publish:${organizationId}`;
    const [taken, value] = await this.admits.run({ key, events });
    if (!taken) throw rateLimited(res, Number(value) > 0 ? Number(value) : windowMs, `Publish limit reached (${budget}): retry after the Retry-After delay`);
    const window = String(value);
    return {
      release: async (released: number) => {
        if (released > 0) await (this.redis as PublishRedis).bellhopPublishRelease(key, Math.min(released, events), window);
      },
    };
  }

  private async admitMany(admits: Admit[]): Promise<Array<[0 | 1, number | string]>> {
    const { limit, windowMs } = this.config.publishRateLimit;
    const pipeline = this.redis.pipeline();
    for (const admit of admits) void (pipeline as unknown as PublishRedis).bellhopPublishAdmit(admit.key, admit.events, limit, windowMs);
    return (await execPipeline(pipeline)) as Array<[0 | 1, number | string]>;
  }
}
