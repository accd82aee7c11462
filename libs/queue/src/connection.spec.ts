import { Redis } from 'ioredis';
import { redisConnectionOptions } from './connection';

describe('redisConnectionOptions', () => {
  it('reads host, port, credentials, database and TLS from redis: and rediss: URLs', () => {
    expect(redisConnectionOptions('redis://127.0.0.1:6379')).toMatchObject({ host: '127.0.0.1', port: 6379, db: 0, tls: undefined });
    expect(redisConnectionOptions('rediss://app:p%40ss@cache.internal:6380/3')).toMatchObject({ host: 'cache.internal', port: 6380, username: 'app', password: 'p@ss', db: 3, tls: {} });
    expect(redisConnectionOptions('redis://[::1]:6379?family=6')).toMatchObject({ host: '::1', port: 6379, family: 6 });
  });

  it('reads a Unix socket path, database and credentials from unix: URLs', () => {
    expect(redisConnectionOptions('unix:///var/run/redis/redis.sock')).toEqual({ path: '/var/run/redis/redis.sock', username: undefined, password: undefined, db: 0 });
    expect(redisConnectionOptions('unix:///tmp/r.sock?db=2&password=s%3Dcret')).toMatchObject({ path: '/tmp/r.sock', db: 2, password: 's=cret' });
  });

  it.each([
    ['not a URL', 'localhost:6379'],
    ['another scheme', 'http://127.0.0.1:6379'],
    ['a database that is not a number', 'redis://127.0.0.1:6379/cache'],
    ['a socket without a path', 'unix://'],
    ['a socket database that is not a number', 'unix:///tmp/r.sock?db=x'],
  ])('refuses %s', (_what, url) => {
    expect(() => redisConnectionOptions(url)).toThrow(/REDIS_URL/);
  });

  // Against a real Redis: the TCP form here; the socket form where the server listens on one.
  it('connects with what it returns', async () => {
    const redis = new Redis({ ...redisConnectionOptions(process.env.TEST_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'), lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      expect(await redis.ping()).toBe('PONG');
    } finally {
      redis.disconnect();
    }
  });
});
