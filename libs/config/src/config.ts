import { randomBytes } from 'node:crypto';
import { parseDuration, parseDurationList } from './duration';

export type Plan = 'free' | 'solo' | 'team';

/** Every setting of both apps, validated once at boot. Feature code reads this, never process.env. */
export interface BellhopConfig {
  env: 'production' | 'development' | 'test';
  databaseUrl: string;
  databasePoolSize: number;
  redisUrl: string;
  queuePrefix: string;
  host: string;
  port: number;
  workerPort: number;
  jwtSecret: string;
  sessionTtlMs: number;
  secretsKey: Buffer;
  defaultPlan: Plan;
  retryScheduleMs: number[];
  deliveryTimeoutMs: number;
  workerConcurrency: number;
  sweepIntervalMs: number;
  /** Attempts to one webhook in flight at once, across all workers. */
  maxInFlightPerWebhook: number;
  /** Attempts of one organization in flight at once in one worker process. */
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
  bodyLimitBytes: number;
  logLevel: string;
  /** Requests per window for each API token or session. */
  rateLimit: RateLimit;
  /** Login and signup attempts per window for each client address. */
  authRateLimit: RateLimit;
  /** Logged at boot: development keys filled in for missing secrets, and risky production settings. */
  warnings: string[];
}

export interface RateLimit {
  limit: number;
  windowMs: number;
}

export class ConfigError extends Error {}

/** `600/1m`: so many requests per window. */
function rateLimit(env: Env, name: string, fallback: string): RateLimit {
  const raw = env[name] || fallback;
  const match = /^\s*(\d+)\s*\/\s*(\S+)\s*$/.exec(raw);
  if (!match) throw new ConfigError(`${name} must look like 600/1m (requests per window), got "${raw}"`);
  const limit = Number(match[1]);
  let windowMs: number;
  try {
    windowMs = parseDuration(match[2]);
  } catch (err) {
    throw new ConfigError(`${name}: ${(err as Error).message}`);
  }
  if (limit < 1 || windowMs < 1000) throw new ConfigError(`${name} needs at least 1 request per window of at least 1s`);
  return { limit, windowMs };
}

type Env = Record<string, string | undefined>;

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
 * Builds the typed configuration from environment variables. In production a missing or weak
 * secret (too short, a development key, fewer than MIN_DISTINCT_KEY_BYTES distinct bytes) is an
 * error naming the setting; elsewhere a clearly reported development default is used.
 */
export function loadConfig(env: Env = process.env): BellhopConfig {
  const nodeEnv = env.NODE_ENV === 'production' ? 'production' : env.NODE_ENV === 'test' ? 'test' : 'development';
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
    redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379',
    queuePrefix: env.QUEUE_PREFIX || 'bellhop',
    host: env.HOST || '0.0.0.0',
    port: int(env, 'PORT', 3000, 0, 65535),
    workerPort: int(env, 'WORKER_PORT', 3001, 0, 65535),
    jwtSecret,
    sessionTtlMs: duration(env, 'SESSION_TTL', '7d'),
    secretsKey,
    defaultPlan: plan,
    retryScheduleMs,
    deliveryTimeoutMs,
    workerConcurrency,
    sweepIntervalMs,
    maxInFlightPerWebhook: int(env, 'MAX_IN_FLIGHT_PER_WEBHOOK', 10, 1, 1000),
    maxInFlightPerOrganization: int(env, 'MAX_IN_FLIGHT_PER_ORGANIZATION', Math.max(1, Math.ceil(workerConcurrency / 2)), 1, 1000),
    autoDisableAfterMs: duration(env, 'AUTO_DISABLE_AFTER', '5d'),
    retentionDays: int(env, 'RETENTION_DAYS', 30, 1, 90),
    maxOrganizationsPerUser: int(env, 'MAX_ORGANIZATIONS_PER_USER', 5, 1, 1000),
    retentionIntervalMs,
    allowHttpDestinations,
    allowPrivateDestinations,
    corsOrigins: origins(env, 'CORS_ORIGINS'),
    bodyLimitBytes: int(env, 'BODY_LIMIT_BYTES', 1024 * 1024, 1024, 64 * 1024 * 1024),
    logLevel: env.LOG_LEVEL || (nodeEnv === 'test' ? 'warn' : 'info'),
    rateLimit: rateLimit(env, 'RATE_LIMIT', '1200/1m'),
    authRateLimit: rateLimit(env, 'AUTH_RATE_LIMIT', '20/1m'),
    warnings,
  };
}

/** A fresh random key in the format SECRETS_KEY expects (for docs and setup scripts). */
export function generateSecretsKey(): string {
  return randomBytes(32).toString('base64');
}
