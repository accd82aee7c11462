import { Redis } from 'ioredis';
import { redisClusterOptions, redisConnectionOptions } from './connection';

const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('redisConnectionOptions', () => {
  it('reads host, port, credentials, database and TLS from redis: and rediss: URLs', () => {
    expect(redisConnectionOptions('redis://127.0.0.1:6379')).toMatchObject({ host: '127.0.0.1', port: 6379, db: 0, tls: undefined });
    expect(redisConnectionOptions('rediss://app:p%40ss@cache.internal:6380/3')).toMatchObject({ host: 'cache.internal', port: 6380, username: 'app', password: 'p@ss', db: 3, tls: {} });
    expect(redisConnectionOptions('redis://[::1]:6379?family=6')).toMatchObject({ host: '::1', port: 6379, family: 6 });
  });

  it('reads the database, credentials and address family from the query of redis: URLs, as ioredis itself did', () => {
    expect(redisConnectionOptions('redis://cache:6379?db=3')).toMatchObject({ host: 'cache', port: 6379, db: 3 });
    expect(redisConnectionOptions('rediss://cache:6380?username=app&password=p%40ss&family=4')).toMatchObject({ username: 'app', password: 'p@ss', family: 4, db: 0, tls: {} });
    expect(redisConnectionOptions('redis://cache/2?family=6')).toMatchObject({ db: 2, family: 6 });
    // No query, no family: ioredis's default (either) stands.
    expect(redisConnectionOptions('redis://cache')).not.toHaveProperty('family');
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
    ['a query database that is not a number', 'redis://cache?db=x'],
    ['a negative database', 'redis://cache?db=-1'],
  ])('refuses %s', (_what, url) => {
    expect(() => redisConnectionOptions(url)).toThrow(/REDIS_URL/);
  });

  it.each([
    ['an option it does not know', 'redis://cache:6379?tls=true', /unknown option "\?tls=".*\?db=, \?username=, \?password=, \?family=/],
    ['a misspelt option', 'rediss://cache:6380?passwrd=x', /unknown option "\?passwrd="/],
    ['an address family other than 4 or 6', 'redis://cache?family=5', /family must be 4 or 6, got "5"/],
    ['an address family that is not a number', 'redis://cache?family=ipv6', /family must be 4 or 6/],
    ['the database both as the path and in the query', 'redis://cache/1?db=3', /database twice/],
    ['an option given twice', 'redis://cache?db=1&db=2', /"\?db=" twice/],
    ['the password both before the host and in the query', 'redis://:a@cache?password=b', /password twice/],
    ['an option a socket has no use for', 'unix:///tmp/r.sock?family=6', /unknown option "\?family=".*unix:/],
    ['an option a socket does not know', 'unix:///tmp/r.sock?timeout=5', /unknown option "\?timeout="/],
  ])('refuses %s, saying what it takes', (_what, url, message) => {
    expect(() => redisConnectionOptions(url)).toThrow(message);
  });

  it('refuses a unix: URL with a host, which would move the socket path', () => {
    // Two slashes: "var" is the host, and the path would be /run/redis.sock.
    expect(() => redisConnectionOptions('unix://var/run/redis.sock')).toThrow(/unix: URL has no host, but "var" was given.*unix:\/\/\/var\/run\/redis\/redis\.sock/);
    expect(() => redisConnectionOptions('unix://localhost/tmp/r.sock')).toThrow(/no host/);
    expect(() => redisConnectionOptions('redis+unix://var/run/redis.sock')).toThrow(/no host/);
    // One slash or three: no host.
    expect(redisConnectionOptions('unix:/tmp/r.sock')).toMatchObject({ path: '/tmp/r.sock' });
    expect(redisConnectionOptions('redis+unix:///tmp/r.sock?db=1')).toMatchObject({ path: '/tmp/r.sock', db: 1 });
  });

  // Against a real Redis: the TCP form here; the socket form where the server listens on one.
  it('connects with what it returns', async () => {
    const redis = new Redis({ ...redisConnectionOptions(TEST_REDIS_URL), lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      expect(await redis.ping()).toBe('PONG');
    } finally {
      redis.disconnect();
    }
  });

  it('lands on the database ?db= names', async () => {
    const url = new URL(TEST_REDIS_URL);
    url.pathname = '';
    url.searchParams.set('db', '3');
    const redis = new Redis({ ...redisConnectionOptions(url.toString()), lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      expect(String(await redis.client('INFO'))).toMatch(/ db=3 /);
    } finally {
      redis.disconnect();
    }
  });
});

describe('redisClusterOptions', () => {
  it('reads the seed node, and the credentials, TLS and address family every node connection takes', () => {
    expect(redisClusterOptions('redis://10.0.0.5:7000')).toEqual({ seed: { host: '10.0.0.5', port: 7000 }, nodeOptions: { username: undefined, password: undefined, tls: undefined } });
    expect(redisClusterOptions('rediss://app:s3cret@cluster.internal:6380/0?family=6')).toEqual({
      seed: { host: 'cluster.internal', port: 6380 },
      nodeOptions: { username: 'app', password: 's3cret', tls: {}, family: 6 },
    });
  });

  it.each([
    ['a Unix socket', 'unix:///tmp/r.sock', /seed node.*not a "unix:" URL/],
    ['a database other than 0', 'redis://10.0.0.5:7000/2', /only database 0/],
    ['a database other than 0 in the query', 'redis://10.0.0.5:7000?db=1', /only database 0/],
    ['an unknown option, as without a cluster', 'redis://10.0.0.5:7000?readOnly=true', /unknown option/],
  ])('refuses %s', (_what, url, message) => {
    expect(() => redisClusterOptions(url)).toThrow(message);
  });
});
