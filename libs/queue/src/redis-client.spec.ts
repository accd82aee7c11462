import { lookup } from 'node:dns';
import { Cluster, Redis } from 'ioredis';
import { createRedisClient, duplicateRedisClient, queueConnection } from './redis-client';

// Nothing here connects (lazyConnect, or options only): test/cluster-prefix.e2e-spec.ts runs the
// apps against a real cluster node.
describe('createRedisClient', () => {
  it('makes a plain client for one Redis, with the settings given', () => {
    const client = createRedisClient({ redisUrl: 'redis://cache:6379/2' }, { connectionName: 'bellhop', maxRetriesPerRequest: 2, lazyConnect: true });
    try {
      expect(client).toBeInstanceOf(Redis);
      expect((client as Redis).options).toMatchObject({ host: 'cache', port: 6379, db: 2, connectionName: 'bellhop', maxRetriesPerRequest: 2 });
    } finally {
      client.disconnect();
    }
  });

  it('makes a cluster client seeded with REDIS_URL under REDIS_CLUSTER, the credentials and settings on every node', () => {
    const client = createRedisClient(
      { redisUrl: 'redis://app:s3cret@10.0.0.5:7000', redisCluster: true },
      { connectionName: 'bellhop', maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: true },
    );
    try {
      expect(client).toBeInstanceOf(Cluster);
      const cluster = client as Cluster;
      expect(cluster.options).toMatchObject({ enableOfflineQueue: true, lazyConnect: true });
      expect(cluster.options.redisOptions).toEqual({ username: 'app', password: 's3cret', tls: undefined, connectionName: 'bellhop', maxRetriesPerRequest: 2 });
      expect((cluster as unknown as { startupNodes: unknown[] }).startupNodes).toEqual([{ host: '10.0.0.5', port: 7000 }]);
      // Plain connections only, without TLS: nodes are reached at the addresses they announce.
      expect(cluster.options.dnsLookup).toBe(lookup);
    } finally {
      client.disconnect();
    }
  });

  it('reaches TLS cluster nodes by name', () => {
    const client = createRedisClient({ redisUrl: 'rediss://cluster.internal:6380', redisCluster: true }, { lazyConnect: true });
    try {
      const cluster = client as Cluster;
      expect(cluster.options.redisOptions).toMatchObject({ tls: {} });
      const resolved = jest.fn();
      cluster.options.dnsLookup!('cluster.internal', resolved);
      expect(resolved).toHaveBeenCalledWith(null, 'cluster.internal');
    } finally {
      client.disconnect();
    }
  });
});

describe('duplicateRedisClient', () => {
  it('gives a plain client another connection like it, under its own name', () => {
    const client = createRedisClient({ redisUrl: 'redis://cache:6379/2' }, { connectionName: 'bellhop', maxRetriesPerRequest: 2, lazyConnect: true });
    const copy = duplicateRedisClient(client, 'bellhop-test-attempts');
    try {
      expect(copy).toBeInstanceOf(Redis);
      expect((copy as Redis).options).toMatchObject({ host: 'cache', db: 2, connectionName: 'bellhop-test-attempts', maxRetriesPerRequest: 2 });
    } finally {
      client.disconnect();
      copy.disconnect();
    }
  });

  it('gives a cluster client another cluster client with the same seed and node options, under its own name', () => {
    const client = createRedisClient({ redisUrl: 'redis://app:s3cret@10.0.0.5:7000', redisCluster: true }, { connectionName: 'bellhop', maxRetriesPerRequest: 2, lazyConnect: true });
    const copy = duplicateRedisClient(client, 'bellhop-test-attempts');
    try {
      expect(copy).toBeInstanceOf(Cluster);
      // ioredis's Cluster.duplicate({ connectionName }) would have read the object as seed nodes and kept the old name.
      expect((copy as Cluster).options.redisOptions).toEqual({ username: 'app', password: 's3cret', tls: undefined, connectionName: 'bellhop-test-attempts', maxRetriesPerRequest: 2 });
      expect((copy as unknown as { startupNodes: unknown[] }).startupNodes).toEqual([{ host: '10.0.0.5', port: 7000 }]);
    } finally {
      client.disconnect();
      copy.disconnect();
    }
  });
});

describe('queueConnection', () => {
  it("is one Redis's options, for BullMQ to open its connections from", () => {
    expect(queueConnection({ redisUrl: 'redis://cache:6379/1' })).toEqual({ host: 'cache', port: 6379, db: 1, username: undefined, password: undefined, tls: undefined, maxRetriesPerRequest: null });
  });

  it('is a cluster client under REDIS_CLUSTER, without a retry limit per request (BullMQ blocks on it)', () => {
    // It connects at once (BullMQ waits for it): to an address that never answers, closed at once.
    const connection = queueConnection({ redisUrl: 'redis://192.0.2.1:7000', redisCluster: true });
    (connection as Cluster).on('error', () => undefined);
    try {
      expect(connection).toBeInstanceOf(Cluster);
      expect((connection as Cluster).options.redisOptions).toMatchObject({ maxRetriesPerRequest: null, connectionName: 'bellhop-queue' });
    } finally {
      (connection as Cluster).disconnect();
    }
  });
});
