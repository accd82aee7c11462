import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { Redis } from 'ioredis';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { AppError } from '@bellhop/domain';
import { REDIS } from '@bellhop/queue';

/**
 * Takes one attempt of an account's budget: refused ([milliseconds left in the window, '']) once the
 * window holds `limit` failures, else counted ([0, window]). The window starts at its first attempt
 * and is named by the Redis time it started, so that an attempt given back late (a check that
 * outlasted its window) goes back to the window that counted it, never to the next one.
 */
const TAKE = `
local hits = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if hits >= tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then return { ttl, '' } end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return { tonumber(ARGV[2]), '' }
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'n', 1, 'w', now[1] .. '.' .. now[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('HINCRBY', KEYS[1], 'n', 1)
end
return { 0, redis.call('HGET', KEYS[1], 'w') }
`;

/** Gives back an attempt that did not fail, to the window that counted it if that is still the current one. */
const GIVE_BACK = `
if redis.call('HGET', KEYS[1], 'w') == ARGV[1] and tonumber(redis.call('HGET', KEYS[1], 'n')) > 0 then
  redis.call('HINCRBY', KEYS[1], 'n', -1)
end
return 0
`;

type LoginLimiterRedis = Redis & {
  bellhopTakeLogin(key: string, limit: number, windowMs: number): Promise<[number, string]>;
  bellhopGiveBackLogin(key: string, window: string): Promise<number>;
};

/**
 * Failed logins per account (AUTH_RATE_LIMIT's limit and window, in Redis so that replicas share
 * it). The per-address limit alone does not stop guessing one account's password from many
 * addresses; this does: once an account's window holds `limit` failures, its logins are answered
 * 429 without the password being checked, whoever sends them, until the window passes.
 *
 * Every attempt takes its place in the budget before the password is checked and gives it back
 * unless the check failed, so concurrent guesses cannot all slip in before the first is counted.
 * A successful login does not clear earlier failures: that would let an attacker who knows one
 * password interleave it with guesses. Unknown emails are counted the same way, so the answers
 * say nothing about which accounts exist. The key is a hash of the normalised email: Redis holds
 * no addresses.
 */
@Injectable()
export class LoginLimiter {
  private readonly redis: LoginLimiterRedis;

  constructor(
    @Inject(REDIS) redis: Redis,
    @Inject(BELLHOP_CONFIG) private readonly config: BellhopConfig,
  ) {
    if (!('bellhopTakeLogin' in redis)) {
      redis.defineCommand('bellhopTakeLogin', { numberOfKeys: 1, lua: TAKE });
      redis.defineCommand('bellhopGiveBackLogin', { numberOfKeys: 1, lua: GIVE_BACK });
    }
    this.redis = redis as unknown as LoginLimiterRedis;
  }

  /**
   * Runs `check` (the password verification: the user, or null when it failed) within the
   * account's budget of failures. Throws 429 with Retry-After, without running it, when the budget
   * is spent. A failed check stays counted; one that succeeds or throws (the hashers busy, the
   * database down) is given back.
   */
  async attempt<T>(email: string, check: () => Promise<T | null>): Promise<T | null> {
    const key = this.key(email);
    const { limit, windowMs } = this.config.authRateLimit;
    const [retryAfterMs, window] = await this.redis.bellhopTakeLogin(key, limit, windowMs);
    if (retryAfterMs > 0) throw AppError.rateLimited(retryAfterMs, 'Too many failed logins for this account, try again later');
    let failed = false;
    try {
      const result = await check();
      failed = result === null;
      return result;
    } finally {
      // A lost give-back costs the account one attempt of this window, not the login.
      if (!failed) await this.redis.bellhopGiveBackLogin(key, window).catch(() => undefined);
    }
  }

  private key(email: string): string {
    const digest = createHash('sha256').update(email.trim().toLowerCase()).digest('hex');
    return `${this.config.queuePrefix}:ratelimit:login:${digest}`;
  }
}
