import { BullModule } from '@nestjs/bullmq';
import { Module } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { QUEUE_CONNECTION, Queues, type QueueConnection } from '@bellhop/queue';
import { DeliveryStore } from './delivery.store';
import { DeliveryDispatcher } from './dispatcher';
import { TestAttemptAnnouncer } from './test-attempts';

/**
 * The delivery queue on Redis under QUEUE_PREFIX, the dispatcher that feeds it, and the store that
 * owns every delivery's state (the API's retry and delete go through it too), and the announcer
 * of test deliveries' changes for `?wait=true` (the worker's attempts, and both sides' cancellations).
 * Needs the global REDIS and QUEUE_CONNECTION (RedisModule).
 */
@Module({
  imports: [
    BullModule.forRootAsync({
      inject: [BELLHOP_CONFIG, QUEUE_CONNECTION],
      // RedisModule's: one Redis's options, or the cluster client BullMQ's queues share (REDIS_CLUSTER).
      useFactory: (config: BellhopConfig, connection: QueueConnection) => ({ prefix: config.queuePrefix, connection }),
    }),
    BullModule.registerQueue({ name: Queues.delivery }),
  ],
  providers: [DeliveryDispatcher, DeliveryStore, TestAttemptAnnouncer],
  exports: [DeliveryDispatcher, DeliveryStore, TestAttemptAnnouncer, BullModule],
})
export class DeliveryQueueModule {}
