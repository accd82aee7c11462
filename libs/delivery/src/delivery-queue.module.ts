import { BullModule } from '@nestjs/bullmq';
import { Module } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Queues } from '@bellhop/queue';
import { DeliveryStore } from './delivery.store';
import { DeliveryDispatcher } from './dispatcher';
import { TestAttemptAnnouncer } from './test-attempts';

/**
 * The delivery queue on Redis under QUEUE_PREFIX, the dispatcher that feeds it, and the store that
 * owns every delivery's state (the API's retry and delete go through it too), and the announcer
 * of test deliveries' changes for `?wait=true` (the worker's attempts, and both sides' cancellations).
 * Needs the global REDIS (RedisModule).
 */
@Module({
  imports: [
    BullModule.forRootAsync({
      inject: [BELLHOP_CONFIG],
      useFactory: (config: BellhopConfig) => {
        const url = new URL(config.redisUrl);
        return {
          prefix: config.queuePrefix,
          connection: {
            host: url.hostname,
            port: Number(url.port || 6379),
            username: url.username ? decodeURIComponent(url.username) : undefined,
            password: url.password ? decodeURIComponent(url.password) : undefined,
            db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
            tls: url.protocol === 'rediss:' ? {} : undefined,
            maxRetriesPerRequest: null,
          },
        };
      },
    }),
    BullModule.registerQueue({ name: Queues.delivery }),
  ],
  providers: [DeliveryDispatcher, DeliveryStore, TestAttemptAnnouncer],
  exports: [DeliveryDispatcher, DeliveryStore, TestAttemptAnnouncer, BullModule],
})
export class DeliveryQueueModule {}
