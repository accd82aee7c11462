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

/** A Redis Cluster to reach through a seed node (REDIS_CLUSTER=true): ioredis discovers the other nodes from it. */
export interface RedisClusterConnection {
  seed: { host: string; port: number };
  /** The options of every node connection: credentials, TLS, address family (always database 0). */
  nodeOptions: Omit<RedisConnection, 'host' | 'port' | 'path' | 'db'>;
}

/** The query options REDIS_URL may carry, as ioredis's own URL parsing takes them. */
const TCP_QUERY = ['db', 'username', 'password', 'family'];
/** A socket has no address family. */
const SOCKET_QUERY = ['db', 'username', 'password'];

/**
 * ioredis options from REDIS_URL, for every connection Bellhop opens to a single Redis (BullMQ's
 * and the shared one):
 *
 * - `redis://[user:password@]host[:port][/db][?db=N&username=U&password=P&family=4|6]`, and
 *   `rediss://` for TLS;
 * - `unix:///path/to/redis.sock[?db=N&username=U&password=P]` for a Unix socket: on one box, a
 *   socket costs Redis and Bellhop less per command than loopback TCP (no TCP stack on either side).
 *
 * Throws on any other form, and on a query option it does not know, so that a typo is a boot
 * error rather than a connection to a default (`?db=3` read as nothing would land on database 0).
 */
export function redisConnectionOptions(redisUrl: string): RedisConnection {
  const url = parse(redisUrl);
  if (url.protocol === 'unix:' || url.protocol === 'redis+unix:') {
    // `unix://var/run/redis.sock` reads as the host "var" and the path "/run/redis.sock": a socket
    // URL has no host, so the path starts right after the scheme's `//`.
    if (url.host) {
      throw new Error(`REDIS_URL: a unix: URL has no host, but "${url.host}" was given: write the socket's absolute path after unix://, as in unix:///var/run/redis/redis.sock (three slashes)`);
    }
    if (!url.pathname || url.pathname === '/') throw new Error('REDIS_URL: a unix: URL needs the socket path, as in unix:///var/run/redis/redis.sock');
    if (!url.pathname.startsWith('/')) throw new Error(`REDIS_URL: the socket path must be absolute, as in unix:///var/run/redis/redis.sock; got "${url.pathname}"`);
    const query = queryOptions(url, SOCKET_QUERY, 'a unix: URL');
    return {
      path: decodeURIComponent(url.pathname),
      username: query.username,
      password: query.password,
      db: query.db === undefined ? 0 : database(query.db, `?db=${query.db}`),
    };
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new Error(`REDIS_URL: unsupported scheme "${url.protocol}" (redis:, rediss: or unix:)`);
  }
  const query = queryOptions(url, TCP_QUERY, 'a redis: URL');
  const inPath = url.pathname.length > 1 ? url.pathname.slice(1) : undefined;
  if (inPath !== undefined && query.db !== undefined) {
    throw new Error(`REDIS_URL names the database twice, as the path "/${inPath}" and as ?db=${query.db}: keep one`);
  }
  const username = once('username', decoded(url.username), query.username);
  const password = once('password', decoded(url.password), query.password);
  const family = query.family;
  if (family !== undefined && family !== '4' && family !== '6') throw new Error(`REDIS_URL: family must be 4 or 6, got "${family}"`);
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: Number(url.port || 6379),
    username,
    password,
    db: inPath !== undefined ? database(inPath, `the path "/${inPath}"`) : query.db !== undefined ? database(query.db, `?db=${query.db}`) : 0,
    tls: url.protocol === 'rediss:' ? {} : undefined,
    // `?family=6` for a name that resolves to IPv6 only, as ioredis's own URL parsing allows.
    ...(family !== undefined ? { family: Number(family) } : {}),
  };
}

/**
 * REDIS_URL read as a seed node of a Redis Cluster (REDIS_CLUSTER=true): `redis://` or `rediss://`
 * with credentials and `?family=`, as for one Redis. A cluster has database 0 only, and its nodes
 * announce themselves by TCP address, so a database other than 0 and a Unix socket are refused.
 */
export function redisClusterOptions(redisUrl: string): RedisClusterConnection {
  const protocol = parse(redisUrl).protocol;
  if (protocol !== 'redis:' && protocol !== 'rediss:') {
    throw new Error(`REDIS_URL: with REDIS_CLUSTER=true it names a seed node of the cluster, redis://host:port or rediss://host:port, not a "${protocol}" URL (cluster nodes are reached over TCP)`);
  }
  const { host, port, db, ...nodeOptions } = redisConnectionOptions(redisUrl);
  if (db !== 0) throw new Error(`REDIS_URL: Redis Cluster has only database 0, but database ${db} was given (REDIS_CLUSTER=true)`);
  return { seed: { host: host!, port: port! }, nodeOptions };
}

function parse(redisUrl: string): URL {
  try {
    return new URL(redisUrl);
  } catch {
    throw new Error(`REDIS_URL is not a URL: expected redis://host:port, rediss://host:port or unix:///path/to/redis.sock`);
  }
}

function decoded(value: string): string | undefined {
  return value ? decodeURIComponent(value) : undefined;
}

/** The URL's query options (decoded by URLSearchParams), each given at most once, and only those in `allowed`. */
function queryOptions(url: URL, allowed: string[], what: string): Partial<Record<string, string>> {
  const options: Partial<Record<string, string>> = {};
  for (const [name, value] of url.searchParams) {
    if (!allowed.includes(name)) {
      throw new Error(`REDIS_URL: unknown option "?${name}=" (${what} takes ${allowed.map((option) => `?${option}=`).join(', ')})`);
    }
    if (name in options) throw new Error(`REDIS_URL gives "?${name}=" twice: keep one`);
    options[name] = value;
  }
  // An empty credential is no credential, as in the user-info part.
  for (const name of ['username', 'password']) if (options[name] === '') delete options[name];
  return options;
}

/** A credential given in the user-info part or in the query, not both. */
function once(name: string, inUserInfo: string | undefined, inQuery: string | undefined): string | undefined {
  if (inUserInfo !== undefined && inQuery !== undefined) throw new Error(`REDIS_URL gives the ${name} twice, before the host and as ?${name}=: keep one`);
  return inUserInfo ?? inQuery;
}

function database(text: string, where: string): number {
  if (!/^\d{1,9}$/.test(text)) throw new Error(`REDIS_URL: ${where} must be a database number`);
  return Number(text);
}
