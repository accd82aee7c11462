import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { redisClusterOptions, redisConnectionOptions, type RedisConnection } from './connection';

/** Where Bellhop's Redis is: REDIS_URL, and whether it names a seed node of a Redis Cluster (REDIS_CLUSTER). */
export interface RedisTarget {
  redisUrl: string;
  redisCluster?: boolean;
}

/**
 * A connection to the one Redis, or to a Redis Cluster: ioredis's two clients take the same
 * commands, scripts and pipelines; the cluster client sends each to the node that owns its keys.
 */
export type RedisClient = Redis | Cluster;

/** What a connection sets beside where it goes. */
export type ConnectionSettings = Pick<RedisOptions, 'connectionName' | 'maxRetriesPerRequest' | 'enableOfflineQueue' | 'lazyConnect'>;

/** A connection to where `target` says: a Cluster client seeded with REDIS_URL under REDIS_CLUSTER=true, else a plain one. */
export function createRedisClient(target: RedisTarget, settings: ConnectionSettings): RedisClient {
  if (!target.redisCluster) return new Redis({ ...redisConnectionOptions(target.redisUrl), ...settings });
  const { seed, nodeOptions } = redisClusterOptions(target.redisUrl);
  // The offline queue and lazy connecting are the cluster client's own; the rest applies to each
  // node's connection.
  const { enableOfflineQueue, lazyConnect, ...perNode } = settings;
  return new Cluster([seed], {
    redisOptions: { ...nodeOptions, ...perNode },
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
    // Over TLS, reach a node by the name it is known by rather than the address it resolves to,
    // so that its certificate can match (as ioredis advises for managed clusters with TLS).
    ...(nodeOptions.tls ? { dnsLookup: (address: string, callback: (err: Error | null, address: string) => void) => callback(null, address) } : {}),
  });
}

/**
 * Another connection like `client`, under its own name (for a subscriber: a connection in
 * subscriber mode runs no other command). A cluster client's duplicate takes its node options
 * whole, not merged, so they are passed in full.
 */
export function duplicateRedisClient(client: RedisClient, connectionName: string): RedisClient {
  if (client instanceof Cluster) return client.duplicate([], { redisOptions: { ...client.options.redisOptions, connectionName } });
  return client.duplicate({ connectionName });
}

/**
 * BullMQ's `connection`. For one Redis, its options: each Queue and Worker opens its own
 * connections from them. For a cluster, one Cluster client (BullMQ takes no cluster options):
 * queues share it, and workers duplicate it for their own and blocking connections; its owner
 * closes it (see RedisModule). Blocking commands must wait as long as they need, hence no retry
 * limit per request.
 */
export type QueueConnection = (RedisConnection & { maxRetriesPerRequest: null }) | Cluster;

export function queueConnection(target: RedisTarget): QueueConnection {
  if (!target.redisCluster) return { ...redisConnectionOptions(target.redisUrl), maxRetriesPerRequest: null };
  return createRedisClient(target, { maxRetriesPerRequest: null, connectionName: 'bellhop-queue' }) as Cluster;
}
