import { runApp } from '@bellhop/observability';
import { createWorkerApp } from './worker.app';

// SIGTERM/SIGINT close the app: the processor stops taking jobs and lets attempts in flight finish first.
runApp('bellhop-worker', () => createWorkerApp(), (config) => ({
  port: config.workerPort,
  started: `Bellhop worker running (concurrency ${config.workerConcurrency}); health and metrics on http://${config.host}:${config.workerPort}`,
}));
