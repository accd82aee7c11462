import { Global, Inject, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { createRedisClient, queueConnection, type QueueConnection, type RedisClient } from './redis-client';

/**
 * A shared ioredis connection for non-blocking commands (health, rate limits, counters): a plain
 * client, or a cluster client under REDIS_CLUSTER=true (see RedisClient).
 */
export const REDIS = Symbol('REDIS');

/** BullMQ's `connection` (see queueConnection): options for one Redis, or the one cluster client that queues share. */
export const QUEUE_CONNECTION = Symbol('QUEUE_CONNECTION');

/** How often one connection may log that Redis is failing: ioredis reports every reconnection attempt. */
export const REDIS_ERROR_LOG_INTERVAL_MS = 10_000;

/**
 * Logs a connection's errors at warn, at most once per `intervalMs`, with how many were left out
 * since the last one. Without an 'error' listener ioredis prints "[ioredis] Unhandled error event"
 * for every failed reconnection while Redis is down; logging each of them would flood the log just
 * the same. The connection reconnects on its own, so there is nothing else to do here.
 */
export function logRedisErrors(connection: Pick<RedisClient, 'on'>, logger: Logger, msg: string, intervalMs = REDIS_ERROR_LOG_INTERVAL_MS): void {
  let loggedAt = -Infinity;
  let leftOut = 0;
  connection.on('error', (err: Error) => {
    const now = Date.now();
    if (now - loggedAt < intervalMs) {
      leftOut++;
      return;
    }
    logger.warn({ msg, error: err.message, ...(leftOut > 0 ? { errorsNotLogged: leftOut } : {}) });
    loggedAt = now;
    leftOut = 0;
  });
}

function createSharedRedis(config: BellhopConfig): RedisClient {
  const redis = createRedisClient(config, { maxRetriesPerRequest: 2, connectionName: 'bellhop', enableOfflineQueue: true });
  logRedisErrors(redis, new Logger('Redis'), 'shared Redis connection failing; reconnecting');
  return redis;
}

function createQueueConnection(config: BellhopConfig): QueueConnection {
  const connection = queueConnection(config);
  // BullMQ listens too, but a cluster client reports node and slot-refresh failures of its own.
  if (connection instanceof Cluster) logRedisErrors(connection, new Logger('Redis'), 'queue Redis Cluster connection failing; reconnecting');
  return connection;
}

/**
 * Closes the shared connection, and the queues' cluster client (BullMQ leaves a client it was
 * given open). A global module's hooks run after those of the modules that use it, so the queues
 * are closed by then.
 */
@Injectable()
class RedisCloser implements OnApplicationShutdown {
  constructor(
    @Inject(REDIS) private readonly redis: RedisClient,
    @Inject(QUEUE_CONNECTION) private readonly queue: QueueConnection,
  ) {}
  async onApplicationShutdown(): Promise<void> {
    const clients = this.queue instanceof Cluster ? [this.redis, this.queue] : [this.redis];
    await Promise.all(clients.map((client) => client.quit().catch(() => client.disconnect())));
  }
}

@Global()
@Module({
  providers: [
    {
      provide: REDIS,
      inject: [BELLHOP_CONFIG],
      useFactory: createSharedRedis,
    },
    {
      provide: QUEUE_CONNECTION,
      inject: [BELLHOP_CONFIG],
      useFactory: createQueueConnection,
    },
    RedisCloser,
  ],
  exports: [REDIS, QUEUE_CONNECTION],
})
export class RedisModule {}
