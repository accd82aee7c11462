import { randomBytes } from 'node:crypto';
import { INestApplication } from '@nestjs/common';
import { Queue } from 'bullmq';
import request from 'supertest';
import { createApiApp } from '../../apps/api/src/api.app';
import { createWorkerApp } from '../../apps/worker/src/worker.app';
import { TEST_DATABASE_URL, TEST_REDIS_URL } from './env';

export interface StackOptions {
  /** Extra settings, as environment variables. */
  env?: Record<string, string>;
  /** Boot the worker too (default true). */
  worker?: boolean;
}

export interface Stack {
  api: INestApplication;
  worker: INestApplication | null;
  http: () => ReturnType<typeof request>;
  queuePrefix: string;
  stop: () => Promise<void>;
}

/**
 * The real API and worker, in this process, on the test database and real Redis, each test file
 * with its own queue prefix so files never take each other's jobs.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const queuePrefix = `bhtest${randomBytes(4).toString('hex')}`;
  Object.assign(process.env, {
    NODE_ENV: 'test',
    DATABASE_URL: TEST_DATABASE_URL,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: queuePrefix,
    ALLOW_HTTP_DESTINATIONS: 'true',
    ALLOW_PRIVATE_DESTINATIONS: 'true',
    RETRY_SCHEDULE: '100ms,200ms,300ms,400ms',
    DELIVERY_TIMEOUT: '3s',
    SWEEP_INTERVAL: '1s',
    WORKER_CONCURRENCY: '20',
    LOG_LEVEL: 'error',
    // Tests hammer the API from one address and token; the rate-limit test sets its own limits.
    RATE_LIMIT: '100000/1m',
    AUTH_RATE_LIMIT: '100000/1m',
    PORT: '0',
    WORKER_PORT: '0',
    ...options.env,
  });
  const api = await createApiApp();
  await api.init();
  let worker: INestApplication | null = null;
  if (options.worker !== false) {
    worker = await createWorkerApp();
    await worker.listen(0, '127.0.0.1');
  }
  const server = api.getHttpServer();
  return {
    api,
    worker,
    queuePrefix,
    http: () => request(server),
    stop: async () => {
      await worker?.close();
      await api.close();
      await obliterate(queuePrefix);
    },
  };
}

/** Removes the test file's queue keys from Redis. */
async function obliterate(prefix: string): Promise<void> {
  const url = new URL(TEST_REDIS_URL);
  const queue = new Queue('delivery', { prefix, connection: { host: url.hostname, port: Number(url.port || 6379) } });
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close();
}
