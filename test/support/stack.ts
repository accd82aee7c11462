import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { INestApplication } from '@nestjs/common';
import { Queue } from 'bullmq';
import { Cluster } from 'ioredis';
import { Client } from 'pg';
import request from 'supertest';
import { createApiApp } from '../../apps/api/src/api.app';
import { createWorkerApp } from '../../apps/worker/src/worker.app';
import { BELLHOP_CONFIG, type BellhopConfig } from '@bellhop/config';
import { queueConnection } from '@bellhop/queue';
import { TEST_DATABASE_URL, TEST_REDIS_URL } from './env';

export interface StackOptions {
  /** Extra settings, as environment variables. */
  env?: Record<string, string>;
  /** Boot the worker too (default true). */
  worker?: boolean;
  /**
   * Run on this existing database (one from createDatabaseFromTemplate) instead of a fresh copy,
   * and leave it in place on stop: a test that restarts the stack with other settings keeps its
   * rows. The test drops it.
   */
  databaseUrl?: string;
  /** Also listen on 127.0.0.1 (a free port), for clients that need a real URL, such as the spawned CLI. */
  listen?: boolean;
  /** QUEUE_PREFIX instead of a random `bhtest<hex>` (such as a `{hash tag}`); keep it unique per run, as the stop removes its queue. */
  queuePrefix?: string;
}

export interface Stack {
  api: INestApplication;
  worker: INestApplication | null;
  http: () => ReturnType<typeof request>;
  /** The API's base URL when started with `listen: true`, else null. */
  url: string | null;
  queuePrefix: string;
  /** This file's own database. */
  databaseUrl: string;
  stop: () => Promise<void>;
}

/**
 * The real API and worker, in this process, on the test database and real Redis, each test file
 * with its own queue prefix so files never take each other's jobs.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const name = `bhtest${randomBytes(4).toString('hex')}`;
  const queuePrefix = options.queuePrefix ?? name;
  // Each test file gets its own copy of the migrated test database: the worker's sweeper takes
  // every due delivery it finds, so files must not see each other's rows.
  const databaseUrl = options.databaseUrl ?? (await createDatabaseFromTemplate(name));
  Object.assign(process.env, {
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: queuePrefix,
    ALLOW_HTTP_DESTINATIONS: 'true',
    ALLOW_PRIVATE_DESTINATIONS: 'true',
    RETRY_SCHEDULE: '100ms,200ms,300ms,400ms',
    DELIVERY_TIMEOUT: '3s',
    SWEEP_INTERVAL: '1s',
    WORKER_CONCURRENCY: '20',
    LOG_LEVEL: 'error',
    // Tests hammer the API from one address and token, and publish in bulk; the rate-limit tests
    // set their own limits.
    RATE_LIMIT: '100000/1m',
    PUBLISH_RATE_LIMIT: '1000000/1s',
    AUTH_RATE_LIMIT: '100000/1m',
    // The fuzz walk creates many organizations with one user; the limit's own test sets it low.
    MAX_ORGANIZATIONS_PER_USER: '1000',
    PORT: '0',
    WORKER_PORT: '0',
    ...options.env,
  });
  const api = await createApiApp();
  // The stop cleans up where the apps ran (a test may name another Redis, or a cluster).
  const redis = api.get<BellhopConfig>(BELLHOP_CONFIG);
  if (options.listen) await api.listen(0, '127.0.0.1');
  else await api.init();
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
    databaseUrl,
    http: () => request(server),
    url: options.listen ? `http://127.0.0.1:${(server.address() as AddressInfo).port}` : null,
    stop: async () => {
      await worker?.close();
      await api.close();
      await obliterate(queuePrefix, redis);
      if (!options.databaseUrl) await dropDatabase(databaseUrl);
    },
  };
}

async function admin<T>(work: (client: Client) => Promise<T>): Promise<T> {
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = '/postgres';
  const client = new Client({ connectionString: url.toString() });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A fresh copy of the migrated test database (fast: Postgres copies the template's files). */
export async function createDatabaseFromTemplate(name: string): Promise<string> {
  const template = new URL(TEST_DATABASE_URL).pathname.slice(1);
  await admin((client) => client.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`));
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropDatabase(databaseUrl: string): Promise<void> {
  const name = new URL(databaseUrl).pathname.slice(1);
  await admin(async (client) => {
    await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
    await client.query(`DROP DATABASE IF EXISTS "${name}"`);
  });
}

/** Removes the test file's queue keys from Redis, connecting as the apps did (REDIS_URL parsed by redisConnectionOptions, or a cluster client). */
async function obliterate(prefix: string, redis: Pick<BellhopConfig, 'redisUrl' | 'redisCluster'>): Promise<void> {
  const connection = queueConnection(redis);
  const queue = new Queue('delivery', { prefix, connection });
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close();
  if (connection instanceof Cluster) await connection.quit().catch(() => connection.disconnect());
}
