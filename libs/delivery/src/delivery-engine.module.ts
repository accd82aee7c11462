import { DynamicModule, Module, Provider } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { REDIS } from '@bellhop/queue';
import { DeliveryQueueModule } from './delivery-queue.module';
import { DELIVERY_SERVICE_OPTIONS, DeliveryService, DeliveryServiceOptions, REPLAYS_OF_THIS_WORKER } from './delivery.service';
import { HttpSender } from './http-sender';
import { IN_FLIGHT_LIMITER, RedisInFlightLimiter } from './in-flight-limiter';
import { OperationalRelay } from './operational-relay';
import { StatsCompactor } from './stats-compactor';
import { REPLAY_DRIVER_OPTIONS, ReplayDriver, ReplayDriverOptions } from './replay-driver';
import { SWEEPER_OPTIONS, Sweeper, SweeperOptions } from './sweeper';

export interface DeliveryEngineOptions {
  service?: DeliveryServiceOptions;
  sweeper?: SweeperOptions;
  replays?: ReplayDriverOptions;
}

const providers: Provider[] = [
  {
    provide: HttpSender,
    inject: [BELLHOP_CONFIG],
    useFactory: (config: BellhopConfig) =>
      new HttpSender({
        timeoutMs: config.deliveryTimeoutMs,
        allowPrivate: config.allowPrivateDestinations,
        // A worker never has more requests in flight than its concurrency, so none waits for a connection.
        connectionsPerOrigin: config.workerConcurrency,
      }),
  },
  {
    provide: IN_FLIGHT_LIMITER,
    inject: [REDIS, BELLHOP_CONFIG],
    useFactory: (redis: Redis, config: BellhopConfig) => new RedisInFlightLimiter(redis, config.queuePrefix),
  },
  DeliveryService,
  Sweeper,
  ReplayDriver,
  { provide: REPLAYS_OF_THIS_WORKER, useExisting: ReplayDriver },
  OperationalRelay,
  StatsCompactor,
];

/**
 * The worker side of delivery: the HTTP sender, the in-flight caps (per webhook and per organization, across workers), the attempt logic,
 * the sweeper, the replay driver, the relay of operational events, and the stats compactor (it announces recorded test attempts through DeliveryQueueModule's TestAttemptAnnouncer). Needs the global BELLHOP_CONFIG, PrismaService (DatabaseModule) and REDIS (RedisModule).
 */
@Module({
  imports: [DeliveryQueueModule],
  providers,
  exports: [DeliveryService, Sweeper, ReplayDriver, OperationalRelay, StatsCompactor, HttpSender, IN_FLIGHT_LIMITER],
})
export class DeliveryEngineModule {
  static forRoot(options: DeliveryEngineOptions = {}): DynamicModule {
    return {
      module: DeliveryEngineModule,
      providers: [
        { provide: DELIVERY_SERVICE_OPTIONS, useValue: options.service ?? {} },
        { provide: SWEEPER_OPTIONS, useValue: options.sweeper ?? {} },
        { provide: REPLAY_DRIVER_OPTIONS, useValue: options.replays ?? {} },
      ],
    };
  }
}
