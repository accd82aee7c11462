import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
// By path, not through @bellhop/domain's and @bellhop/queue's indexes: scripts load this file with
// plain ts-node, which knows no path aliases, and these modules need nothing but node:net.
import { ipv6Groups } from '../../domain/src/destination';
import { redisClusterOptions } from '../../queue/src/connection';
import { parseDuration, parseDurationList } from './duration';

export type Plan = 'free' | 'solo' | 'team';

/** Every setting of both apps, validated once at boot. Feature code reads this, never process.env. */
export interface BellhopConfig {
  env: 'production' | 'development' | 'test';
  databaseUrl: string;
  databasePoolSize: number;
  redisUrl: string;
  /** REDIS_URL names a seed node of a Redis Cluster (REDIS_CLUSTER): every connection is a cluster client. */
  redisCluster: boolean;
  queuePrefix: string;
  host: string;
  port: number;
  workerPort: number;
  jwtSecret: string;
  sessionTtlMs: number;
  /** Encrypts webhook secrets, and decrypts them (SECRETS_KEY). */
  secretsKey: Buffer;
  /** Keys being retired, tried for decryption only (SECRETS_KEY_PREVIOUS); see loadSecretsKeys. */
  previousSecretsKeys: Buffer[];
  defaultPlan: Plan;
  retryScheduleMs: number[];
  deliveryTimeoutMs: number;
  workerConcurrency: number;
  sweepIntervalMs: number;
  /** Attempts to one webhook in flight at once, across all workers. */
  maxInFlightPerWebhook: number;
  /** Attempts of one organization in flight at once, across all workers. */
  maxInFlightPerOrganization: number;
  /** How long a webhook may fail without a single success before it is disabled. */
  autoDisableAfterMs: number;
  /** Days of history (events, deliveries, attempts) a project keeps unless it says otherwise. */
  retentionDays: number;
  /** Organizations one user may own (counting the one made at signup). */
  maxOrganizationsPerUser: number;
  /** How often the worker deletes the history older than each project's retention. */
  retentionIntervalMs: number;
  allowHttpDestinations: boolean;
  allowPrivateDestinations: boolean;
  /** Origins a browser dashboard may call the API from; empty: no cross-origin access. */
  corsOrigins: string[];
  /** The API's public base URL, without a trailing slash: inbound source URLs are `<publicUrl>/ingest/<id>`. */
  publicUrl: string;
  bodyLimitBytes: number;
  logLevel: string;
  /** Requests per window for each API token or session, publishing aside. */
  rateLimit: RateLimit;
  /** Events per window for each organization through the publish routes (a batch counts its items). */
  publishRateLimit: RateLimit;
  /** Login and signup attempts per window for each client address. */
  authRateLimit: RateLimit;
  /** Deliveries accepted per window for each inbound source (a redelivery takes nothing). */
  ingestRateLimit: RateLimit;
  /** Express's `trust proxy`: which hops may name the client in X-Forwarded-For. */
  trustProxy: TrustProxy;
  /** Timeouts of the API's HTTP server and of the worker's health listener (see httpTimeouts). */
  httpTimeouts: HttpTimeouts;
  /** Logged at boot: development keys filled in for missing secrets, and risky production settings. */
  warnings: string[];
}

export interface RateLimit {
  limit: number;
  windowMs: number;
}

/** No proxy trusted (false), the nearest so many hops, or the proxies' addresses and CIDR ranges. */
export type TrustProxy = false | number | string[];

/** Node's http.Server timeouts, in milliseconds. */
export interface HttpTimeouts {
  /** requestTimeout: the whole request, headers and body, must arrive within it. */
  requestMs: number;
  /** headersTimeout: the request's headers must arrive within it. */
  headersMs: number;
  /** keepAliveTimeout: an idle kept-alive connection is closed after it. */
  keepAliveMs: number;
}

export class ConfigError extends Error {}

/** `600/1m`: so many requests (or, for publishing, events) per window. */
function rateLimit(env: Env, name: string, fallback: string): RateLimit {
  const raw = env[name] || fallback;
  const match = /^\s*(\d+)\s*\/\s*(\S+)\s*$/.exec(raw);
  if (!match) throw new ConfigError(`${name} must look like 600/1m (so many per window), got "${raw}"`);
  const limit = Number(match[1]);
  let windowMs: number;
  try {
    windowMs = parseDuration(match[2]);
  } catch (err) {
    throw new ConfigError(`${name}: ${(err as Error).message}`);
  }
  if (limit < 1 || windowMs < 1000) throw new ConfigError(`${name} needs at least 1 per window of at least 1s`);
  return { limit, windowMs };
}

type Env = Record<string, string | undefined>;

const PROXY_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

/**
 * TRUST_PROXY, in the forms of Express's `trust proxy` that name whom to believe: `false`, a hop
 * count, or addresses, CIDR ranges and Express's names for the loopback, link-local and unique-local
 * ranges. `true` and ranges so wide that a few of them cover everyone are refused: any client could
 * then choose its address, and with it a fresh budget of every per-address limit.
 */
function trustProxy(env: Env, name: string, fallback: string): TrustProxy {
  const raw = (env[name] ?? '').trim() || fallback;
  if (/^false$/i.test(raw)) return false;
  if (/^true$/i.test(raw)) {
    throw new ConfigError(`${name}=true would believe X-Forwarded-For from anyone, so any client could choose its address: name the proxies (addresses or CIDR ranges) or the number of proxy hops`);
  }
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    if (hops > 10) throw new ConfigError(`${name} as a hop count must be from 0 to 10, got "${raw}"`);
    return hops;
  }
  return raw.split(',').map((item) => {
    const entry = item.trim();
    if (PROXY_NAMES.includes(entry.toLowerCase())) return entry.toLowerCase();
    const [address, prefix, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const bits = family === 4 ? 32 : 128;
    if (!family || extra !== undefined || (prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= bits))) {
      throw new ConfigError(`${name}: "${entry}" is not an address, a CIDR range (10.0.0.0/8) or one of ${PROXY_NAMES.join(', ')}`);
    }
    if (prefix !== undefined && tooWide(address, family, Number(prefix))) {
      throw new ConfigError(
        `${name}: "${entry}" is wider than a /8 of IPv4 addresses or a /16 of IPv6 ones; a few such ranges cover every address, so any client could choose its address: name the proxies' own range`,
      );
    }
    return entry;
  });
}

/** IPv4-mapped IPv6 addresses (::ffff:a.b.c.d), in which dual-stack sockets report IPv4 clients. */
const MAPPED = 0xffffn << 32n;

/**
 * Whether a trusted range is wide enough that a handful of them cover everyone (0.0.0.0/1 with
 * 128.0.0.0/1, ::/1 with 8000::/1): IPv4 ranges wider than /8, IPv6 ranges wider than /16, and
 * IPv6 ranges that take in more than a /8 of IPv4-mapped addresses (::ffff:0:0/96, ::/80, ::/16).
 */
function tooWide(address: string, family: number, prefix: number): boolean {
  if (family === 4) return prefix < 8;
  if (prefix < 16) return true;
  const value = ipv6Value(address);
  // The range holds the whole mapped block, or lies inside it as an IPv4 range wider than /8.
  if (prefix <= 96) return value >> BigInt(128 - prefix) === MAPPED >> BigInt(128 - prefix);
  return value >> 32n === 0xffffn && prefix < 104;
}

/** A valid IPv6 address as a 128-bit number. */
function ipv6Value(address: string): bigint {
  return ipv6Groups(address).reduce((value, group) => (value << 16n) | BigInt(group), 0n);
}

/** Published development keys: used when a secret is missing outside production, refused in production. */
export const DEV_JWT_SECRET = 'bellhop-development-jwt-secret-do-not-use-in-production';
export const DEV_SECRETS_KEY = Buffer.alloc(32, 7);

/**
 * A key with fewer distinct bytes than this is refused in production as obviously low-entropy
 * (`xxxx…`, `passwordpassword…`, a repeated byte). 32 random bytes have about 30 distinct values,
 * a random 32-character hex or base64 string about 14 to 25: they are never near it.
 */
export const MIN_DISTINCT_KEY_BYTES = 8;

function distinctBytes(bytes: Buffer): number {
  return new Set(bytes).size;
}

/** Strict base64 (or base64url) of exactly 32 bytes: Buffer.from would silently skip stray characters. */
function base64Key(raw: string): Buffer | undefined {
  const text = raw.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  const canonical = bytes.toString('base64').replace(/=+$/, '');
  const given = text.replace(/=+$/, '').replace(/-/g, '+').replace(/_/g, '/');
  return bytes.length === 32 && canonical === given ? bytes : undefined;
}

/** Comma-separated origins (`https://dash.example.com`): scheme, host and port only. */
function origins(env: Env, name: string): string[] {
  const raw = (env[name] ?? '').trim();
  if (!raw) return [];
  return raw.split(',').map((item) => {
    const origin = item.trim();
    let parsed: URL;
    try {
      parsed = new URL(origin);
    } catch {
      throw new ConfigError(`${name}: "${origin}" is not an origin such as https://dashboard.example.com`);
    }
    if (!['http:', 'https:'].includes(parsed.protocol) || parsed.origin !== origin) {
      throw new ConfigError(`${name}: "${origin}" is not an origin such as https://dashboard.example.com (scheme, host and port only)`);
    }
    return origin;
  });
}

/**
 * PUBLIC_URL: where GitHub and GitLab reach this API (`https://hooks.example.com`, or under a path
 * behind a proxy), written into inbound source URLs. An http(s) URL without credentials, query or
 * fragment; a trailing slash is dropped.
 */
function publicUrl(env: Env, name: string, fallback: string): string {
  const raw = (env[name] ?? '').trim() || fallback;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name}: "${raw}" is not a URL such as https://bellhop.example.com`);
  }
  if (!['http:', 'https:'].includes(parsed.protocol) || parsed.username || parsed.password || parsed.search || parsed.hash) {
    throw new ConfigError(`${name}: "${raw}" must be an http:// or https:// URL without credentials, query or fragment, such as https://bellhop.example.com`);
  }
  return parsed.toString().replace(/\/+$/, '');
}

/**
 * QUEUE_PREFIX. Every Redis key Bellhop and BullMQ write starts with it, so on Redis Cluster a hash
 * tag in it (`{bellhop}`) puts them all in one slot, as BullMQ's scripts and Bellhop's own need.
 * Cluster hashes only the text between the first `{` and the next `}`, and the whole key when that
 * is empty: a stray, empty or second brace would spread the keys (or name another tag than the one
 * meant) without a word, so braces are allowed only as one non-empty tag. `:` is fine: BullMQ
 * finds a job's id after the last `:` of its key, and ids never contain one.
 */
function queuePrefix(env: Env, name: string, fallback: string): string {
  const raw = env[name] || fallback;
  if (!/[{}]/.test(raw)) return raw;
  if (raw.includes('{}')) {
    throw new ConfigError(`${name} has an empty hash tag {}, which Redis Cluster ignores (each key would be hashed whole, across slots): put a name inside the braces, such as {bellhop}; got "${raw}"`);
  }
  if (!/^[^{}]*\{[^{}]+\}[^{}]*$/.test(raw)) {
    throw new ConfigError(`${name} may hold braces only as one Redis Cluster hash tag, a name inside one pair of braces such as {bellhop}; got "${raw}"`);
  }
  return raw;
}

/**
 * REDIS_CLUSTER, checked with what it needs of REDIS_URL and QUEUE_PREFIX. BullMQ's scripts and
 * Bellhop's own touch several keys at once, which a cluster runs only when they are all in one
 * slot: without a hash tag in the prefix every such call would fail (CROSSSLOT), so the boot stops.
 */
function redisCluster(env: Env, redisUrl: string, prefix: string): boolean {
  if (!bool(env, 'REDIS_CLUSTER', false)) return false;
  if (!/\{[^{}]+\}/.test(prefix)) {
    throw new ConfigError(
      `REDIS_CLUSTER=true needs QUEUE_PREFIX to hold a Redis Cluster hash tag, such as {bellhop}, so that all of Bellhop's and BullMQ's keys are in one slot (their scripts use several keys at once); got "${prefix}"`,
    );
  }
  try {
    redisClusterOptions(redisUrl);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  return true;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

function duration(env: Env, name: string, fallback: string): number {
  try {
    return parseDuration(env[name] || fallback);
  } catch (err) {
    throw new ConfigError(`${name}: ${(err as Error).message}`);
  }
}

/**
 * HTTP_REQUEST_TIMEOUT, HTTP_HEADERS_TIMEOUT and HTTP_KEEPALIVE_TIMEOUT. Behind a proxy that reuses
 * connections, the keep-alive timeout must outlast the proxy's own idle timeout: otherwise the
 * server closes a connection just as the proxy sends a request on it, and the client gets a 502.
 * The headers timeout must exceed the keep-alive timeout (older Node versions counted a kept-alive
 * connection's idle time against it, and load balancers' guides still give the rule), and the
 * request timeout covers the headers, so it cannot be shorter than their timeout.
 */
function httpTimeouts(env: Env): HttpTimeouts {
  const within = (name: string, fallback: string) => {
    const ms = duration(env, name, fallback);
    // 0 means "never" to Node: a connection could then be held open for good by a slow client.
    if (ms < 1000 || ms > 3_600_000) throw new ConfigError(`${name} must be between 1s and 1h, got "${env[name]}"`);
    return ms;
  };
  const requestMs = within('HTTP_REQUEST_TIMEOUT', '30s');
  const headersMs = within('HTTP_HEADERS_TIMEOUT', '10s');
  const keepAliveMs = within('HTTP_KEEPALIVE_TIMEOUT', '5s');
  if (headersMs <= keepAliveMs) {
    throw new ConfigError(`HTTP_HEADERS_TIMEOUT (${headersMs} ms) must be longer than HTTP_KEEPALIVE_TIMEOUT (${keepAliveMs} ms): raise it along with the keep-alive timeout`);
  }
  if (requestMs < headersMs) {
    throw new ConfigError(`HTTP_REQUEST_TIMEOUT (${requestMs} ms) must be at least HTTP_HEADERS_TIMEOUT (${headersMs} ms): the request timeout covers the headers too`);
  }
  return { requestMs, headersMs, keepAliveMs };
}

function nodeEnvOf(env: Env): BellhopConfig['env'] {
  return env.NODE_ENV === 'production' ? 'production' : env.NODE_ENV === 'test' ? 'test' : 'development';
}

/**
 * SECRETS_KEY and SECRETS_KEY_PREVIOUS, checked: part of loadConfig, and on its own for
 * scripts/reencrypt-secrets.js, which needs nothing else but DATABASE_URL. Warnings are added to
 * `warnings`. The previous keys only decrypt, so production accepts among them what it refuses as
 * SECRETS_KEY (the development key, a predictable key), with a warning: that is how an
 * installation moves off such a key without losing the secrets stored under it.
 */
export function loadSecretsKeys(env: Env = process.env, warnings: string[] = []): Pick<BellhopConfig, 'secretsKey' | 'previousSecretsKeys'> {
  const nodeEnv = nodeEnvOf(env);
  const production = nodeEnv === 'production';

  let secretsKey: Buffer;
  if (!env.SECRETS_KEY) {
    if (production) throw new ConfigError('SECRETS_KEY is required in production (base64 of 32 random bytes)');
    // A fixed development key keeps secrets readable across restarts of a development install.
    secretsKey = Buffer.from(DEV_SECRETS_KEY);
    warnings.push(`SECRETS_KEY is not set: using the published DEVELOPMENT key (NODE_ENV=${nodeEnv}). It is refused in production.`);
  } else {
    const key = base64Key(env.SECRETS_KEY);
    if (!key) throw new ConfigError('SECRETS_KEY must be the base64 of exactly 32 bytes');
    if (production && key.equals(DEV_SECRETS_KEY)) {
      throw new ConfigError('SECRETS_KEY is the published development key: set a random one in production (base64 of 32 random bytes)');
    }
    if (production && distinctBytes(key) < MIN_DISTINCT_KEY_BYTES) {
      throw new ConfigError(`SECRETS_KEY is too predictable for production (fewer than ${MIN_DISTINCT_KEY_BYTES} distinct bytes): use base64 of 32 random bytes`);
    }
    secretsKey = key;
  }

  // Comma-separated; empty (or unset) when no key is being retired. Messages name a key by its
  // position, never by its value.
  const previousSecretsKeys: Buffer[] = [];
  const listed = (env.SECRETS_KEY_PREVIOUS ?? '').trim();
  const items = listed ? listed.split(',') : [];
  items.forEach((item, index) => {
    const which = `SECRETS_KEY_PREVIOUS: key ${index + 1} of ${items.length}`;
    const key = base64Key(item);
    if (!key) throw new ConfigError(`${which} must be the base64 of exactly 32 bytes (keys are separated by commas)`);
    if (key.equals(secretsKey)) throw new ConfigError(`${which} is SECRETS_KEY itself: list only the keys being retired`);
    const twin = previousSecretsKeys.findIndex((other) => other.equals(key));
    if (twin >= 0) throw new ConfigError(`${which} is the same key as key ${twin + 1}: list each key once`);
    if (production && key.equals(DEV_SECRETS_KEY)) {
      warnings.push(`WARNING: ${which} is the published development key: run npm run secrets:reencrypt, then remove it from SECRETS_KEY_PREVIOUS`);
    } else if (production && distinctBytes(key) < MIN_DISTINCT_KEY_BYTES) {
      warnings.push(`WARNING: ${which} is too predictable (fewer than ${MIN_DISTINCT_KEY_BYTES} distinct bytes): run npm run secrets:reencrypt, then remove it from SECRETS_KEY_PREVIOUS`);
    }
    previousSecretsKeys.push(key);
  });
  return { secretsKey, previousSecretsKeys };
}

/**
 * Builds the typed configuration from environment variables. In production a missing or weak
 * secret (too short, a development key, fewer than MIN_DISTINCT_KEY_BYTES distinct bytes) is an
 * error naming the setting; elsewhere a clearly reported development default is used.
 */
export function loadConfig(env: Env = process.env): BellhopConfig {
  const nodeEnv = nodeEnvOf(env);
  const production = nodeEnv === 'production';
  const warnings: string[] = [];

  let jwtSecret = env.JWT_SECRET ?? '';
  if (!jwtSecret) {
    if (production) throw new ConfigError('JWT_SECRET is required in production (at least 32 bytes)');
    jwtSecret = DEV_JWT_SECRET;
    warnings.push(`JWT_SECRET is not set: using the published DEVELOPMENT key (NODE_ENV=${nodeEnv}). It is refused in production.`);
  } else if (Buffer.byteLength(jwtSecret) < 32) {
    throw new ConfigError('JWT_SECRET must be at least 32 bytes');
  } else if (production && jwtSecret === DEV_JWT_SECRET) {
    throw new ConfigError('JWT_SECRET is the published development key: set a random one in production (at least 32 bytes)');
  } else if (production && distinctBytes(Buffer.from(jwtSecret)) < MIN_DISTINCT_KEY_BYTES) {
    throw new ConfigError(`JWT_SECRET is too predictable for production (fewer than ${MIN_DISTINCT_KEY_BYTES} distinct characters): use at least 32 random bytes`);
  }

  const { secretsKey, previousSecretsKeys } = loadSecretsKeys(env, warnings);

  const allowHttpDestinations = bool(env, 'ALLOW_HTTP_DESTINATIONS', false);
  const allowPrivateDestinations = bool(env, 'ALLOW_PRIVATE_DESTINATIONS', false);
  if (production && allowHttpDestinations) {
    warnings.push('WARNING: ALLOW_HTTP_DESTINATIONS=true in production: webhooks may send events and signatures over plain http://');
  }
  if (production && allowPrivateDestinations) {
    warnings.push('WARNING: ALLOW_PRIVATE_DESTINATIONS=true in production: webhooks may reach loopback, private and cloud metadata addresses (SSRF)');
  }

  const plan = (env.DEFAULT_PLAN || 'solo') as Plan;
  if (!['free', 'solo', 'team'].includes(plan)) throw new ConfigError(`DEFAULT_PLAN must be free, solo or team, got "${plan}"`);

  let retryScheduleMs: number[];
  try {
    retryScheduleMs = parseDurationList(env.RETRY_SCHEDULE ?? '1m,5m,30m,2h');
  } catch (err) {
    throw new ConfigError(`RETRY_SCHEDULE: ${(err as Error).message}`);
  }
  if (retryScheduleMs.length > 20) throw new ConfigError('RETRY_SCHEDULE allows at most 20 retries');

  const redisUrl = env.REDIS_URL || 'redis://127.0.0.1:6379';
  const prefix = queuePrefix(env, 'QUEUE_PREFIX', 'bellhop');

  const deliveryTimeoutMs = duration(env, 'DELIVERY_TIMEOUT', '30s');
  if (deliveryTimeoutMs < 100 || deliveryTimeoutMs > 120_000) throw new ConfigError('DELIVERY_TIMEOUT must be between 100ms and 2m');

  const workerConcurrency = int(env, 'WORKER_CONCURRENCY', 50, 1, 1000);

  // 0 would make the sweeper a tight loop on Postgres; above an hour a lost job waits too long.
  const sweepIntervalMs = duration(env, 'SWEEP_INTERVAL', '30s');
  if (sweepIntervalMs < 100 || sweepIntervalMs > 3_600_000) {
    throw new ConfigError(`SWEEP_INTERVAL must be between 100ms and 1h, got "${env.SWEEP_INTERVAL}"`);
  }

  // 0 would make the purge a tight loop on Postgres; past a day, history outlives its window by that much.
  const retentionIntervalMs = duration(env, 'RETENTION_INTERVAL', '10m');
  if (retentionIntervalMs < 1000 || retentionIntervalMs > 86_400_000) {
    throw new ConfigError(`RETENTION_INTERVAL must be between 1s and 24h, got "${env.RETENTION_INTERVAL}"`);
  }

  return {
    env: nodeEnv,
    databaseUrl: env.DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/bellhop',
    databasePoolSize: int(env, 'DATABASE_POOL_SIZE', Math.max(10, workerConcurrency + 5), 1, 500),
    redisUrl,
    redisCluster: redisCluster(env, redisUrl, prefix),
    queuePrefix: prefix,
    host: env.HOST || '0.0.0.0',
    port: int(env, 'PORT', 3000, 0, 65535),
    workerPort: int(env, 'WORKER_PORT', 3001, 0, 65535),
    jwtSecret,
    sessionTtlMs: duration(env, 'SESSION_TTL', '7d'),
    secretsKey,
    previousSecretsKeys,
    defaultPlan: plan,
    retryScheduleMs,
    deliveryTimeoutMs,
    workerConcurrency,
    sweepIntervalMs,
    maxInFlightPerWebhook: int(env, 'MAX_IN_FLIGHT_PER_WEBHOOK', 10, 1, 1000),
    // Across all workers: half of one worker's slots, so that a tenant never fills even a single
    // worker by itself and each worker added is room for the others. A fleet that serves one
    // large tenant raises it; a tenant's throughput then no longer grows with the worker count.
    // Every worker must have the same value (set it explicitly when WORKER_CONCURRENCY differs
    // between workers): each compares the shared count against its own cap, so a worker with a
    // higher cap fills the tenant's slots up to it, and one with a lower cap gets none of them.
    maxInFlightPerOrganization: int(env, 'MAX_IN_FLIGHT_PER_ORGANIZATION', Math.max(1, Math.ceil(workerConcurrency / 2)), 1, 1000),
    autoDisableAfterMs: duration(env, 'AUTO_DISABLE_AFTER', '5d'),
    retentionDays: int(env, 'RETENTION_DAYS', 30, 1, 90),
    maxOrganizationsPerUser: int(env, 'MAX_ORGANIZATIONS_PER_USER', 5, 1, 1000),
    retentionIntervalMs,
    allowHttpDestinations,
    allowPrivateDestinations,
    corsOrigins: origins(env, 'CORS_ORIGINS'),
    publicUrl: publicUrl(env, 'PUBLIC_URL', 'http://127.0.0.1:3000'),
    bodyLimitBytes: int(env, 'BODY_LIMIT_BYTES', 1024 * 1024, 1024, 64 * 1024 * 1024),
    logLevel: env.LOG_LEVEL || (nodeEnv === 'test' ? 'warn' : 'info'),
    rateLimit: rateLimit(env, 'RATE_LIMIT', '1200/1m'),
    publishRateLimit: rateLimit(env, 'PUBLISH_RATE_LIMIT', '1000/1s'),
    authRateLimit: rateLimit(env, 'AUTH_RATE_LIMIT', '20/1m'),
    ingestRateLimit: rateLimit(env, 'INGEST_RATE_LIMIT', '100/1s'),
    trustProxy: trustProxy(env, 'TRUST_PROXY', 'loopback'),
    httpTimeouts: httpTimeouts(env),
    warnings,
  };
}

/** A fresh random key in the format SECRETS_KEY expects (for docs and setup scripts). */
export function generateSecretsKey(): string {
  return randomBytes(32).toString('base64');
}
