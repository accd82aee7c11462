import { isIPv4, isIPv6 } from 'node:net';
import { ExecutionContext, Inject, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ThrottlerException, ThrottlerGuard, ThrottlerModule, ThrottlerStorage } from '@nestjs/throttler';
import type { ThrottlerLimitDetail } from '@nestjs/throttler/dist/throttler.guard.interface';
import type { ThrottlerStorageRecord } from '@nestjs/throttler/dist/throttler-storage-record.interface';
import { Redis } from 'ioredis';
import type { Request } from 'express';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Batcher, PrismaService } from '@bellhop/database';
import { AppError, ipv6Groups, isId } from '@bellhop/domain';
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

/** The Redis key of a named limit's counter for `key`; `<it>:blocked` is set while the key is over its limit. */
export function throttlerKey(prefix: string, name: string, key: string): string {
  return `${prefix}:ratelimit:${name}:${key}`;
}

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
    const base = throttlerKey(this.config.queuePrefix, name, key);
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
// Deliveries to inbound sources come from GitHub's and GitLab's addresses, which every tenant's
// sources share: no per-address request limit, but the organization's event budget and, per
// source and address, failed verifications (SourceFailureLimiter).
const UNLIMITED = /^\/(health|metrics|docs|ingest\/)/;
const PUBLISH_ROUTE = 'bellhop:publish-route';
const reflector = new Reflector();

/**
 * Marks a publish route: limited per organization by PublishRateLimiter (PUBLISH_RATE_LIMIT, a
 * batch counting its items), and per credential by the `publish` limit instead of `api`.
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
 * have limits of their own: events per organization (PublishRateLimiter), and requests per
 * credential (`publish`), so that requests refused before their events are counted (an unknown
 * project, an invalid body, a replay) are not free.
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
        // PUBLISH_RATE_LIMIT's number as requests per window for each credential: a request that
        // publishes carries at least one event, so a client publishing meets the events budget first.
        name: 'publish',
        limit: config.publishRateLimit.limit,
        ttl: config.publishRateLimit.windowMs,
        skipIf: (context: ExecutionContext) => reflector.get<boolean>(PUBLISH_ROUTE, context.getHandler()) !== true,
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

  /**
   * Takes `events` from the organization's budget, all or none; none fit: 429 with Retry-After
   * until the window ends. More events than a whole window holds: 422, as no wait would help.
   */
  async admit(organizationId: string, events: number, res: Response): Promise<PublishAdmission> {
    const { limit, windowMs } = this.config.publishRateLimit;
    const budget = `${limit} events per ${windowMs / 1000}s for each organization`;
    if (events > limit) {
      throw new AppError('validation_failed', `A batch may publish at most ${limit} new events (the publish limit is ${budget}); this one has ${events}: send smaller batches`, [
        { path: '/events', message: `at most ${limit} new events` },
      ]);
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

/** The named limit for failed verifications of deliveries to an inbound source. */
export const SOURCE_FAILURES = 'sourcefail';

/** The named limit for deliveries accepted by an inbound source (INGEST_RATE_LIMIT). */
export const SOURCE_INGESTS = 'ingest';

/**
 * Bodies of one source read at once by one process: GitHub and GitLab deliver a hook's events one
 * after another, so more than this at a time is a flood, refused before it costs a 5 MiB read.
 */
export const MAX_CONCURRENT_INGEST_READS = 8;

/**
 * Of those, bodies read at once from one client address (IPv6 by /64): one address holding slow
 * bodies cannot take all of a source's reads and lock its real deliveries out.
 */
export const MAX_CONCURRENT_INGEST_READS_PER_ADDRESS = 2;

const TOO_MANY_FAILURES = 'Too many failed verifications for this source from your address: retry after the Retry-After delay';

/** The source id of an /ingest path (`/<sourceId>`, percent-decoded), or undefined when it cannot name a source. */
function ingestSourceId(path: string): string | undefined {
  const segment = /^\/([^/]+)\/?$/.exec(path)?.[1];
  if (segment === undefined) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    return undefined;
  }
  return isId('source', decoded) ? decoded : undefined;
}

/**
 * Failed verifications (a bad or missing signature or token) of deliveries to an inbound source,
 * per source and client address (IPv6 by /64), with AUTH_RATE_LIMIT's budget, in Redis so that
 * replicas share it. Past the budget a failure is answered 429 instead of 401, as BearerGuard does:
 * a delivery that verifies is never refused for its address's failures, since GitHub sends every
 * customer's hooks from a small shared pool of addresses, and anyone who knows a source's URL could
 * otherwise lock its real deliveries out. What bounds the cost of a flood of bad signatures is
 * `gate`: at most MAX_CONCURRENT_INGEST_READS bodies of a source are read at once per process.
 * Unknown source ids count as failed authentication of the address (AuthFailureLimiter); an
 * address over that budget is refused unknown ids at the gate.
 */
@Injectable()
export class SourceFailureLimiter {
  /** Bodies being read, by source id and by `<sourceId>:<address>` (this process only). */
  private readonly reading = new Map<string, number>();

  constructor(
    @Inject(ThrottlerStorage) private readonly storage: ThrottlerStorage,
    @Inject(REDIS) private readonly redis: Redis,
    private readonly prisma: PrismaService,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {}

  private static key(sourceId: string, req: Request): string {
    return `${sourceId}:${addressKey(clientAddress(req))}`;
  }

  /** Counts a failed verification; returns the error to answer with: 429 once over budget, else `unauthenticated`. */
  async failed(sourceId: string, req: Request, res: Response, unauthenticated: Error): Promise<Error> {
    const { limit, windowMs } = this.config.authRateLimit;
    const record = await this.storage.increment(SourceFailureLimiter.key(sourceId, req), windowMs, limit, windowMs, SOURCE_FAILURES);
    if (!record.isBlocked) return unauthenticated;
    return rateLimited(res, record.timeToBlockExpire * 1000, TOO_MANY_FAILURES);
  }

  /**
   * Express middleware for `/ingest/<sourceId>`, mounted ahead of the body reader, so that what it
   * refuses is never read: a path that is not one well-formed source id (404), a body of a source
   * that already has MAX_CONCURRENT_INGEST_READS being read, or MAX_CONCURRENT_INGEST_READS_PER_ADDRESS
   * from the same address (429, Retry-After 1), and an address over its failed-authentication budget asking for a
   * source that does not exist (looked up only then; a source that exists is still served, since
   * GitHub's addresses meet deleted sources too). Redis failing lets the request through: the
   * publish budget, checked later, needs Redis too.
   */
  gate(): (req: Request, res: Response & { on(event: 'close', listener: () => void): unknown }, next: (err?: unknown) => void) => void {
    return (req, res, next) => {
      // Keyed on the id as the handler decodes it (`%73rc_…` is the same source); a path that can
      // name no source is answered 404 at once, never read, and takes no slot.
      const sourceId = ingestSourceId(req.path);
      if (sourceId === undefined) return next(AppError.notFound('Source'));
      const client = SourceFailureLimiter.key(sourceId, req);
      const reading = this.reading.get(sourceId) ?? 0;
      const readingForClient = this.reading.get(client) ?? 0;
      if (reading >= MAX_CONCURRENT_INGEST_READS || readingForClient >= MAX_CONCURRENT_INGEST_READS_PER_ADDRESS) {
        return next(rateLimited(res, 1000, 'Too many deliveries to this source at once: retry after the Retry-After delay'));
      }
      this.reading.set(sourceId, reading + 1);
      this.reading.set(client, readingForClient + 1);
      let released = false;
      // The slot is held until the body is read, or the request ends without it (ingestBody
      // answers a body that is not read by its deadline).
      const release = () => {
        if (released) return;
        released = true;
        for (const key of [sourceId, client]) {
          const left = (this.reading.get(key) ?? 1) - 1;
          if (left > 0) this.reading.set(key, left);
          else this.reading.delete(key);
        }
      };
      req.once('end', release);
      res.on('close', release);
      this.redis
        .pttl(throttlerKey(this.config.queuePrefix, AUTH_FAILURES, addressKey(clientAddress(req))) + ':blocked')
        .then(async (address) => {
          if (address > 0 && (await this.prisma.source.count({ where: { id: sourceId } })) === 0) {
            return rateLimited(res, address, 'Too many failed attempts from your address: retry after the Retry-After delay');
          }
          return undefined;
        })
        .then(next, () => next());
    };
  }
}

/**
 * Deliveries accepted per inbound source (INGEST_RATE_LIMIT), in Redis so that replicas share it:
 * a captured GitLab token or GitHub body, replayed with fresh delivery ids, cannot publish faster
 * than this. Taken only for a delivery that verifies and is new: a redelivery takes nothing.
 */
@Injectable()
export class IngestRateLimiter {
  constructor(
    @Inject(ThrottlerStorage) private readonly storage: ThrottlerStorage,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {}

  /** Takes one delivery from the source's budget; none left: 429 with Retry-After until the window ends. */
  async admit(sourceId: string, res: Response): Promise<void> {
    const { limit, windowMs } = this.config.ingestRateLimit;
    const record = await this.storage.increment(sourceId, windowMs, limit, windowMs, SOURCE_INGESTS);
    if (record.isBlocked) {
      throw rateLimited(res, record.timeToBlockExpire * 1000, `Delivery limit of this source reached (${limit} per ${windowMs / 1000}s): retry after the Retry-After delay`);
    }
  }
}
