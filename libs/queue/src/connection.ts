/** Where and how to connect: the part of ioredis's (and BullMQ's) options that REDIS_URL sets. */
export interface RedisConnection {
  host?: string;
  port?: number;
  path?: string;
  family?: number;
  username?: string;
  password?: string;
  db: number;
  tls?: Record<string, never>;
}

/**
 * ioredis options from REDIS_URL, for every connection Bellhop opens (BullMQ's and the shared one):
 *
 * - `redis://[user:password@]host[:port][/db]`, and `rediss://` for TLS;
 * - `unix:///path/to/redis.sock[?db=N&username=U&password=P]` for a Unix socket: on one box, a
 *   socket costs Redis and Bellhop less per command than loopback TCP (no TCP stack on either side).
 *
 * Throws on any other form, so that a typo is a boot error rather than a connection to a default.
 */
export function redisConnectionOptions(redisUrl: string): RedisConnection {
  let url: URL;
  try {
    url = new URL(redisUrl);
  } catch {
    throw new Error(`REDIS_URL is not a URL: expected redis://host:port, rediss://host:port or unix:///path/to/redis.sock`);
  }
  const decoded = (value: string | null | undefined) => (value ? decodeURIComponent(value) : undefined);
  if (url.protocol === 'unix:' || url.protocol === 'redis+unix:') {
    if (!url.pathname || url.pathname === '/') throw new Error('REDIS_URL: a unix: URL needs the socket path, as in unix:///var/run/redis/redis.sock');
    const db = url.searchParams.get('db');
    if (db !== null && !/^\d+$/.test(db)) throw new Error(`REDIS_URL: db must be a database number, got "${db}"`);
    return {
      path: decodeURIComponent(url.pathname),
      username: decoded(url.searchParams.get('username')) ?? decoded(url.username),
      password: decoded(url.searchParams.get('password')) ?? decoded(url.password),
      db: db === null ? 0 : Number(db),
    };
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new Error(`REDIS_URL: unsupported scheme "${url.protocol}" (redis:, rediss: or unix:)`);
  }
  const db = url.pathname.length > 1 ? url.pathname.slice(1) : '0';
  if (!/^\d+$/.test(db)) throw new Error(`REDIS_URL: the path must be a database number, got "/${db}"`);
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: Number(url.port || 6379),
    username: decoded(url.username),
    password: decoded(url.password),
    db: Number(db),
    tls: url.protocol === 'rediss:' ? {} : undefined,
    // `?family=6` for a name that resolves to IPv6 only, as ioredis's own URL parsing allows.
    ...(url.searchParams.get('family') ? { family: Number(url.searchParams.get('family')) } : {}),
  };
}
