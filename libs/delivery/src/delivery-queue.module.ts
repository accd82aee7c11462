import { BullModule } from '@nestjs/bullmq';
import { Module } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { Queues, redisConnectionOptions } from '@bellhop/queue';
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
        return {
          prefix: config.queuePrefix,
          connection: {
            ...redisConnectionOptions(config.redisUrl),
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
