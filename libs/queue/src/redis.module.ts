import { Global, Inject, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { redisConnectionOptions } from './connection';

/** A shared ioredis connection for non-blocking commands (health, rate limits, counters). */
export const REDIS = Symbol('REDIS');

/** How often one connection may log that Redis is failing: ioredis reports every reconnection attempt. */
export const REDIS_ERROR_LOG_INTERVAL_MS = 10_000;

/**
 * Logs a connection's errors at warn, at most once per `intervalMs`, with how many were left out
 * since the last one. Without an 'error' listener ioredis prints "[ioredis] Unhandled error event"
 * for every failed reconnection while Redis is down; logging each of them would flood the log just
 * the same. The connection reconnects on its own, so there is nothing else to do here.
 */
export function logRedisErrors(connection: Pick<Redis, 'on'>, logger: Logger, msg: string, intervalMs = REDIS_ERROR_LOG_INTERVAL_MS): void {
  let loggedAt = -Infinity;
  let leftOut = 0;
  connection.on('error', (err: Error) => {
    const now = Date.now();
    if (now - loggedAt < intervalMs) {
      leftOut++;
      return;
    }
    logger.warn({ msg, error: err.message, ...(leftOut > 0 ? { errorsNotLogged: leftOut } : {}) });
    loggedAt = now;
    leftOut = 0;
  });
}

function createSharedRedis(config: BellhopConfig): Redis {
  const redis = new Redis({ ...redisConnectionOptions(config.redisUrl), maxRetriesPerRequest: 2, connectionName: 'bellhop', enableOfflineQueue: true });
  logRedisErrors(redis, new Logger('Redis'), 'shared Redis connection failing; reconnecting');
  return redis;
}

@Injectable()
class RedisCloser implements OnApplicationShutdown {
  constructor(@Inject(REDIS) private readonly redis: Redis) {}
  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

@Global()
@Module({
  providers: [
    {
      provide: REDIS,
      inject: [BELLHOP_CONFIG],
      useFactory: createSharedRedis,
    },
    RedisCloser,
  ],
  exports: [REDIS],
})
export class RedisModule {}
