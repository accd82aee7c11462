import { Logger } from 'nestjs-pino';
import { BELLHOP_CONFIG, ConfigError, loadConfig, type BellhopConfig } from '@bellhop/config';
import { createWorkerApp } from './worker.app';

async function main(): Promise<void> {
  try {
    loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`bellhop-worker: configuration error: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }
  const app = await createWorkerApp();
  const config = app.get<BellhopConfig>(BELLHOP_CONFIG);
  const logger = app.get(Logger);
  for (const warning of config.warnings) logger.warn(warning);
  // SIGTERM/SIGINT close the app: the processor stops taking jobs and lets attempts in flight finish first.
  app.enableShutdownHooks();
  await app.listen(config.workerPort, config.host);
  logger.log(`Bellhop worker running (concurrency ${config.workerConcurrency}); health and metrics on http://${config.host}:${config.workerPort}`);
}

main().catch((err: Error) => {
  console.error(`bellhop-worker: failed to start: ${err.stack ?? err.message}`);
  process.exit(1);
});
