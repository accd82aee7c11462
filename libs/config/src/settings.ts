/*
 * The one list of Bellhop's settings: what a config file may contain, which flags the start
 * commands take, what the boot summary prints and masks, and what `bellhop config init` writes.
 * config.ts still parses and checks each value; a setting it reads that is missing here (or listed
 * here and read nowhere) fails settings.spec.ts, so the two cannot drift apart.
 *
 * Nothing but types imported: the CLI loads this file without Nest (see apps/cli/src/imports.spec.ts).
 */
import type { BellhopConfig } from './config';

/** How a value may be written in a config file (the environment and flags always give text). */
export type SettingType =
  /** Any text. */
  | 'string'
  /** A whole number. */
  | 'integer'
  | 'boolean'
  /** `30s`, `5m`, or a number of milliseconds. */
  | 'duration'
  /** `1m,5m,30m`, or a list of durations. */
  | 'durations'
  /** Comma-separated text, or a list. */
  | 'list'
  /** `600/1m`: so many per window. */
  | 'rate'
  /** One of `values`. */
  | 'enum'
  /** `false`, a hop count, or addresses and ranges (text or a list). */
  | 'trust-proxy';

export interface Setting {
  /** The environment variable; also the key in a config file, and, in kebab case, the flag. */
  name: string;
  type: SettingType;
  /** Where `bellhop config init` puts it. */
  group: string;
  /** The value in force when nothing sets it; absent when there is none, or when it follows from other settings (see defaultText). */
  default?: string | number | boolean;
  /** The default in words, where it is not one fixed value. */
  defaultText?: string;
  /** What `bellhop config init` shows, commented out, for a setting without a fixed default. */
  example?: string | number;
  /** The field of BellhopConfig with the value in force, for the boot log of a default that follows from other settings. */
  field?: keyof BellhopConfig;
  /** The accepted values of an `enum`. */
  values?: readonly string[];
  /** `secret`: never printed. `url`: printed with the password of the URL masked. */
  mask?: 'secret' | 'url';
  meaning: string;
}

const PROCESS = 'Process';
const LISTENERS = 'Listeners';
const HTTP_SERVER = 'HTTP server timeouts';
const STORAGE = 'Postgres and Redis';
const SECRETS = 'Secrets';
const DELIVERY = 'Delivery';
const TENANTS = 'Tenants, limits and retention';

export const SETTINGS: readonly Setting[] = [
  { name: 'NODE_ENV', type: 'enum', group: PROCESS, default: 'development', values: ['production', 'development', 'test'], meaning: '`production` makes missing or weak secrets fatal at boot; elsewhere published development keys stand in for them.' },
  { name: 'LOG_LEVEL', type: 'enum', group: PROCESS, defaultText: 'info (warn when NODE_ENV=test)', example: 'info', field: 'logLevel', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], meaning: 'pino log level of both apps.' },

  { name: 'HOST', type: 'string', group: LISTENERS, default: '0.0.0.0', meaning: 'Address the API (and the worker\'s health listener) listens on.' },
  { name: 'PORT', type: 'integer', group: LISTENERS, default: 3000, meaning: 'Port of the API.' },
  { name: 'WORKER_PORT', type: 'integer', group: LISTENERS, default: 3001, meaning: "Port of the worker's own /health, /health/ready and /metrics." },
  { name: 'TRUST_PROXY', type: 'trust-proxy', group: LISTENERS, default: 'loopback', meaning: 'Which proxies may name the client in X-Forwarded-For: false, a hop count, or comma-separated addresses, CIDR ranges, loopback, linklocal, uniquelocal. `true` is refused.' },
  { name: 'PUBLIC_URL', type: 'string', group: LISTENERS, default: 'http://127.0.0.1:3000', meaning: "The API's public base URL, as GitHub and GitLab reach it: inbound source URLs are <PUBLIC_URL>/ingest/<id>." },
  { name: 'BODY_LIMIT_BYTES', type: 'integer', group: LISTENERS, default: 1048576, meaning: 'Largest request body the API accepts (413 above).' },
  { name: 'CORS_ORIGINS', type: 'list', group: LISTENERS, default: '', meaning: 'Origins (https://dashboard.example.com) a browser dashboard on another origin may call the API from; empty: no cross-origin access.' },

  { name: 'HTTP_REQUEST_TIMEOUT', type: 'duration', group: HTTP_SERVER, default: '30s', meaning: "Longest time to receive a whole request, headers and body (408 after it). At least HTTP_HEADERS_TIMEOUT. It does not limit how long the answer takes." },
  { name: 'HTTP_HEADERS_TIMEOUT', type: 'duration', group: HTTP_SERVER, default: '10s', meaning: "Longest time to receive a request's headers (408 after it): slow clients cannot hold connections open. Must exceed HTTP_KEEPALIVE_TIMEOUT." },
  { name: 'HTTP_KEEPALIVE_TIMEOUT', type: 'duration', group: HTTP_SERVER, default: '5s', meaning: "How long an idle kept-alive connection stays open. Behind a proxy or load balancer that reuses connections it must be LONGER than the proxy's idle timeout (nginx upstream keepalive_timeout, an AWS ALB's 60s idle timeout: then 65s), or the proxy sends a request on a connection being closed and answers 502." },

  { name: 'DATABASE_URL', type: 'string', group: STORAGE, default: 'postgresql://postgres@127.0.0.1:5432/bellhop', mask: 'url', meaning: 'Postgres (the database is created by `npm run db:migrate` if missing). For a Unix socket, name its directory: postgresql://postgres@localhost/bellhop?host=/var/run/postgresql.' },
  { name: 'DATABASE_POOL_SIZE', type: 'integer', group: STORAGE, defaultText: 'WORKER_CONCURRENCY + 5, at least 10', example: 55, field: 'databasePoolSize', meaning: 'Postgres connections per process.' },
  { name: 'REDIS_URL', type: 'string', group: STORAGE, default: 'redis://127.0.0.1:6379', mask: 'url', meaning: 'Redis: the delivery queue and the counters of the rate limits. redis://[user:password@]host:port[/db], rediss:// for TLS (query options: db, username, password, family=4|6), or unix:///path/to/redis.sock[?db=N&password=P] for a Unix socket (cheaper than TCP when Redis runs on the same machine).' },
  { name: 'REDIS_CLUSTER', type: 'boolean', group: STORAGE, default: false, meaning: 'true: REDIS_URL (redis:// or rediss://, database 0) names a seed node of a Redis Cluster, and every connection (the queue, the limits, the ?wait=true announcements) is a cluster client that finds the other nodes from it. Requires a hash tag in QUEUE_PREFIX, such as {bellhop}: the boot stops without one.' },
  { name: 'QUEUE_PREFIX', type: 'string', group: STORAGE, default: 'bellhop', meaning: "Start of every Redis key (the delivery queue, the rate limits, the in-flight caps), so that several installations can share one Redis. On Redis Cluster write it as a hash tag, such as {bellhop} (quoted in a YAML file: '{bellhop}'), so that all the keys are in one slot, as BullMQ's and Bellhop's scripts need; give each installation its own tag. Braces are allowed only as one such non-empty tag." },

  { name: 'JWT_SECRET', type: 'string', group: SECRETS, defaultText: 'none in production', example: '', mask: 'secret', meaning: 'Session signing key, at least 32 random bytes (openssl rand -base64 48).' },
  { name: 'SESSION_TTL', type: 'duration', group: SECRETS, default: '7d', meaning: 'Lifetime of a session token.' },
  { name: 'SECRETS_KEY', type: 'string', group: SECRETS, defaultText: 'none in production', example: '', mask: 'secret', meaning: 'Base64 of 32 random bytes (openssl rand -base64 32); encrypts webhook and source secrets at rest.' },
  { name: 'SECRETS_KEY_PREVIOUS', type: 'list', group: SECRETS, default: '', mask: 'secret', meaning: 'Only while replacing SECRETS_KEY: the old key or keys, which decrypt secrets stored under them and never encrypt.' },

  { name: 'RETRY_SCHEDULE', type: 'durations', group: DELIVERY, default: '1m,5m,30m,2h', meaning: 'Waits between attempts; its length + 1 is the number of attempts.' },
  { name: 'DELIVERY_TIMEOUT', type: 'duration', group: DELIVERY, default: '30s', meaning: 'Per-attempt deadline, connection to last byte (100ms to 2m).' },
  { name: 'WORKER_CONCURRENCY', type: 'integer', group: DELIVERY, default: 50, meaning: 'Deliveries in flight per worker process.' },
  { name: 'SWEEP_INTERVAL', type: 'duration', group: DELIVERY, default: '30s', meaning: 'How often the worker re-dispatches deliveries that the queue lost (100ms to 1h).' },
  { name: 'MAX_IN_FLIGHT_PER_WEBHOOK', type: 'integer', group: DELIVERY, default: 10, meaning: 'Attempts to one webhook in flight at once, across all workers.' },
  { name: 'MAX_IN_FLIGHT_PER_ORGANIZATION', type: 'integer', group: DELIVERY, defaultText: 'half of WORKER_CONCURRENCY', example: 25, field: 'maxInFlightPerOrganization', meaning: 'Attempts of one organization in flight at once, across all workers.' },
  { name: 'AUTO_DISABLE_AFTER', type: 'duration', group: DELIVERY, default: '5d', meaning: 'A webhook failing without a single success this long (and at least 5 failed attempts) is disabled.' },
  { name: 'ALLOW_HTTP_DESTINATIONS', type: 'boolean', group: DELIVERY, default: false, meaning: 'Development and tests: accept http:// webhook URLs.' },
  { name: 'ALLOW_PRIVATE_DESTINATIONS', type: 'boolean', group: DELIVERY, default: false, meaning: 'Development and tests: accept loopback and private addresses.' },

  { name: 'DEFAULT_PLAN', type: 'enum', group: TENANTS, default: 'solo', values: ['free', 'solo', 'team'], meaning: 'Plan of the organization created at signup.' },
  { name: 'MAX_ORGANIZATIONS_PER_USER', type: 'integer', group: TENANTS, default: 5, meaning: 'Organizations one user may own, counting the one made at signup.' },
  { name: 'RATE_LIMIT', type: 'rate', group: TENANTS, default: '1200/1m', meaning: 'Requests per window for each session or API token, publishing aside.' },
  { name: 'PUBLISH_RATE_LIMIT', type: 'rate', group: TENANTS, default: '1000/1s', meaning: 'Events per window for each organization through the publish routes.' },
  { name: 'AUTH_RATE_LIMIT', type: 'rate', group: TENANTS, default: '20/1m', meaning: 'Login and signup attempts per window for each client address.' },
  { name: 'INGEST_RATE_LIMIT', type: 'rate', group: TENANTS, default: '100/1s', meaning: 'Deliveries accepted per window for each inbound source (POST /ingest); a redelivery takes nothing.' },
  { name: 'RETENTION_DAYS', type: 'integer', group: TENANTS, default: 30, meaning: "Default history retention of a project, 1 to 90 days (a project's own retentionDays overrides it)." },
  { name: 'RETENTION_INTERVAL', type: 'duration', group: TENANTS, default: '10m', meaning: "How often the worker deletes finished history older than each project's retention (1s to 24h)." },
];

const BY_NAME = new Map(SETTINGS.map((setting) => [setting.name, setting]));

export function settingNamed(name: string): Setting | undefined {
  return BY_NAME.get(name);
}

/** `WORKER_CONCURRENCY` → `worker-concurrency` (the flag `--worker-concurrency`). */
export function flagName(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}

/** The environment variable that names the config file; `--config` is over it. */
export const CONFIG_FILE_VARIABLE = 'BELLHOP_CONFIG';

export type ConfigFileFormat = 'yaml' | 'json';

/** A setting's value as a config file writes it; text in JSON's quoting, which YAML reads the same. */
function literal(value: string | number | boolean): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

/**
 * What `bellhop config init` writes. YAML: every setting with its meaning and default, commented
 * out, so that the file changes nothing until a line is uncommented and later releases' defaults
 * still apply to the rest. JSON has no comments: a plain object of the settings that have a fixed
 * default (`omitted` names the others).
 */
export function renderConfigFile(format: ConfigFileFormat): { text: string; omitted: string[] } {
  const omitted = SETTINGS.filter((setting) => setting.default === undefined).map((setting) => setting.name);
  if (format === 'json') {
    const values = Object.fromEntries(SETTINGS.filter((setting) => setting.default !== undefined).map((setting) => [setting.name, setting.default]));
    return { text: JSON.stringify(values, null, 2) + '\n', omitted };
  }
  const out: string[] = [
    '# Bellhop settings, written by `bellhop config init`.',
    '#',
    '# Use it with BELLHOP_CONFIG=/path/to/this.yaml, or --config /path/to/this.yaml on the start commands.',
    '# Keys are the environment variable names. What wins: command-line flags, then environment',
    '# variables, then this file, then the defaults. Unknown keys and values of the wrong type stop the boot.',
    '# Every setting is listed with its default, commented out: uncomment the ones you change.',
    '# Durations: 250ms, 30s, 5m, 2h, 1d. Lists: "a,b" or a YAML list.',
    '# Keep this file readable only by the service user if it holds a secret.',
  ];
  let group = '';
  for (const setting of SETTINGS) {
    if (setting.group !== group) {
      group = setting.group;
      out.push('', `# ---- ${group} ----`);
    }
    out.push('');
    for (const line of wrap(setting.meaning, 96)) out.push(`# ${line}`);
    if (setting.values) out.push(`# One of: ${setting.values.join(', ')}.`);
    if (setting.default === undefined) {
      out.push(`# Default: ${setting.defaultText ?? 'none'}.`, `# ${setting.name}: ${literal(setting.example ?? '')}`);
    } else {
      out.push(`# ${setting.name}: ${literal(setting.default)}`);
    }
  }
  return { text: out.join('\n') + '\n', omitted };
}
