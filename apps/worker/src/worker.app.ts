import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Logger } from 'nestjs-pino';
import { loadConfig, type BellhopConfig } from '@bellhop/config';
import type { DeliveryEngineOptions } from '@bellhop/delivery';
import { WorkerModule } from './worker.module';

export interface CreateWorkerAppOptions {
  /** A configuration to use instead of the environment's (tests). */
  config?: BellhopConfig;
  /** Overrides of the delivery engine's defaults (per-webhook cap, auto-disable, sweeper). */
  engine?: DeliveryEngineOptions;
}

/**
 * Builds the worker application, not yet listening: main.ts listens on WORKER_PORT, tests boot
 * it in-process. The BullMQ worker starts taking jobs as soon as the app is initialised.
 */
export async function createWorkerApp(options: CreateWorkerAppOptions = {}): Promise<INestApplication> {
  // Importing @bellhop/config has already loaded a .env file, so this reads what BellhopConfigModule reads.
  const config = options.config ?? loadConfig();
  const app = await NestFactory.create(WorkerModule.forRoot(config, { givenConfig: options.config !== undefined, engine: options.engine }), {
    bufferLogs: true,
    abortOnError: false,
  });
  app.useLogger(app.get(Logger));
  return app;
}
