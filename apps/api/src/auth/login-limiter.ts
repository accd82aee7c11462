import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { Redis } from 'ioredis';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { AppError } from '@bellhop/domain';
import { REDIS } from '@bellhop/queue';

/**
 * Takes one attempt of an account's budget: refused (the milliseconds left in the window) once the
 * window holds `limit` failures, else counted. The window starts at its first attempt.
 */
const TAKE = `
local hits = tonumber(redis.call('GET', KEYS[1]) or '0')
if hits >= tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then return ttl end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(ARGV[2])
end
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

/** Gives back an attempt that did not fail; never below zero (the window may have passed meanwhile). */
const GIVE_BACK = `
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 0
`;

type LoginLimiterRedis = Redis & {
  bellhopTakeLogin(key: string, limit: number, windowMs: number): Promise<number>;
  bellhopGiveBackLogin(key: string): Promise<number>;
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
    const retryAfterMs = await this.redis.bellhopTakeLogin(key, limit, windowMs);
    if (retryAfterMs > 0) throw AppError.rateLimited(retryAfterMs, 'Too many failed logins for this account, try again later');
    let failed = false;
    try {
      const result = await check();
      failed = result === null;
      return result;
    } finally {
      // A lost give-back costs the account one attempt of this window, not the login.
      if (!failed) await this.redis.bellhopGiveBackLogin(key).catch(() => undefined);
    }
  }

  private key(email: string): string {
    const digest = createHash('sha256').update(email.trim().toLowerCase()).digest('hex');
    return `${this.config.queuePrefix}:ratelimit:login:${digest}`;
  }
}
