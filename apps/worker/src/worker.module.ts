import { DynamicModule, Global, Module } from '@nestjs/common';
import { BELLHOP_CONFIG, BellhopConfigModule, type BellhopConfig } from '@bellhop/config';
import { DatabaseModule } from '@bellhop/database';
import { DeliveryEngineModule, DeliveryQueueModule, QueueMetrics, RetentionPurger, type DeliveryEngineOptions } from '@bellhop/delivery';
import { HealthModule, MetricsModule, loggerModule } from '@bellhop/observability';
import { RedisModule } from '@bellhop/queue';
import { configuredDeliveryProcessor } from './delivery.processor';

/** Provides a configuration given in code (tests) instead of the one BellhopConfigModule reads from the environment. */
@Global()
@Module({})
class GivenConfigModule {
  static with(config: BellhopConfig): DynamicModule {
    return { module: GivenConfigModule, global: true, providers: [{ provide: BELLHOP_CONFIG, useValue: config }], exports: [BELLHOP_CONFIG] };
  }
}

export interface WorkerModuleOptions {
  /** Use this configuration instead of reading the environment (the same values BellhopConfigModule would read). */
  givenConfig?: boolean;
  engine?: DeliveryEngineOptions;
}

/**
 * The worker: consumes the delivery queue, sweeps for lost deliveries, purges the history past each
 * project's retention (every RETENTION_INTERVAL), and serves /health, /health/ready and /metrics
 * (with the queue's and the backlog's gauges) on WORKER_PORT. Built from the configuration because the BullMQ
 * worker options (concurrency, lock duration) are part of the processor's class decoration.
 */
@Module({})
export class WorkerModule {
  static forRoot(config: BellhopConfig, options: WorkerModuleOptions = {}): DynamicModule {
    return {
      module: WorkerModule,
      imports: [
        options.givenConfig ? GivenConfigModule.with(config) : BellhopConfigModule,
        loggerModule('worker'),
        DatabaseModule,
        RedisModule,
        DeliveryQueueModule,
        DeliveryEngineModule.forRoot(options.engine),
        HealthModule,
        MetricsModule,
      ],
      providers: [configuredDeliveryProcessor(config), RetentionPurger, QueueMetrics],
    };
  }
}
