import { Global, Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { Redis } from 'ioredis';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';

/** A shared ioredis connection for non-blocking commands (health, rate limits, counters). */
export const REDIS = Symbol('REDIS');

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
      useFactory: (config: BellhopConfig) =>
        new Redis(config.redisUrl, { maxRetriesPerRequest: 2, connectionName: 'bellhop', enableOfflineQueue: true }),
    },
    RedisCloser,
  ],
  exports: [REDIS],
})
export class RedisModule {}
