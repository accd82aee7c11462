import { randomBytes } from 'node:crypto';
import { ConfigError, DEV_JWT_SECRET, DEV_SECRETS_KEY, loadConfig } from './config';
import { parseDuration, parseDurationList } from './duration';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['1.5s', 1500],
    ['100', 100],
    [' 5m ', 300_000],
  ])('reads %s as %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', 'soon', '5 minutes', '-1s', '1y', '1m30s'])('refuses %j', (text) => expect(() => parseDuration(text)).toThrow(/duration/));

  it('reads a schedule', () => {
    expect(parseDurationList('1m,5m,30m,2h')).toEqual([60_000, 300_000, 1_800_000, 7_200_000]);
    expect(parseDurationList('100ms, 200ms')).toEqual([100, 200]);
  });
});

const GOOD_JWT_SECRET = randomBytes(32).toString('base64');
const GOOD_SECRETS_KEY = randomBytes(32).toString('base64');

describe('loadConfig', () => {
  it('has the contract defaults in development, with the missing secrets reported', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      databaseUrl: 'postgresql://postgres@127.0.0.1:5432/bellhop',
      redisUrl: 'redis://127.0.0.1:6379',
      queuePrefix: 'bellhop',
      host: '0.0.0.0',
      port: 3000,
      workerPort: 3001,
      defaultPlan: 'solo',
      retryScheduleMs: [60_000, 300_000, 1_800_000, 7_200_000],
      deliveryTimeoutMs: 30_000,
      workerConcurrency: 50,
      sweepIntervalMs: 30_000,
      retentionDays: 30,
      retentionIntervalMs: 600_000,
      allowHttpDestinations: false,
      allowPrivateDestinations: false,
    });
    expect(config.warnings.join(' ')).toMatch(/JWT_SECRET.*SECRETS_KEY/);
  });

  it('stops a production boot without secrets, naming the setting', () => {
    expect(() => loadConfig({ NODE_ENV: 'production', SECRETS_KEY: Buffer.alloc(32).toString('base64') })).toThrow(/JWT_SECRET/);
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: GOOD_JWT_SECRET })).toThrow(/SECRETS_KEY/);
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'short', SECRETS_KEY: GOOD_SECRETS_KEY })).toThrow(ConfigError);
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: GOOD_JWT_SECRET, SECRETS_KEY: randomBytes(16).toString('base64') })).toThrow(/32 bytes/);
    const ok = loadConfig({ NODE_ENV: 'production', JWT_SECRET: GOOD_JWT_SECRET, SECRETS_KEY: GOOD_SECRETS_KEY });
    expect(ok.warnings).toEqual([]);
  });

  describe('in production', () => {
    const production = (env: Record<string, string>) => loadConfig({ NODE_ENV: 'production', JWT_SECRET: GOOD_JWT_SECRET, SECRETS_KEY: GOOD_SECRETS_KEY, ...env });

    it('accepts random keys, with nothing to warn about', () => {
      const config = production({});
      expect(config.jwtSecret).toBe(GOOD_JWT_SECRET);
      expect(config.secretsKey.equals(Buffer.from(GOOD_SECRETS_KEY, 'base64'))).toBe(true);
      expect(config.warnings).toEqual([]);
      // A random hex JWT secret and a base64url key pass too.
      expect(production({ JWT_SECRET: randomBytes(16).toString('hex'), SECRETS_KEY: randomBytes(32).toString('base64url') }).warnings).toEqual([]);
    });

    it('refuses the development JWT_SECRET, naming it', () => {
      expect(() => production({ JWT_SECRET: DEV_JWT_SECRET })).toThrow(ConfigError);
      expect(() => production({ JWT_SECRET: DEV_JWT_SECRET })).toThrow(/JWT_SECRET.*development/);
    });

    it('refuses the development SECRETS_KEY, naming it', () => {
      const devKey = DEV_SECRETS_KEY.toString('base64');
      expect(devKey).toBe(Buffer.alloc(32, 7).toString('base64'));
      expect(() => production({ SECRETS_KEY: devKey })).toThrow(ConfigError);
      expect(() => production({ SECRETS_KEY: devKey })).toThrow(/SECRETS_KEY.*development/);
    });

    it('refuses a JWT_SECRET under 32 bytes, naming it', () => {
      expect(() => production({ JWT_SECRET: randomBytes(15).toString('hex') })).toThrow(/JWT_SECRET.*32 bytes/);
    });

    it('refuses a SECRETS_KEY that is not base64 of exactly 32 bytes, naming it', () => {
      for (const wrong of [randomBytes(16).toString('base64'), randomBytes(33).toString('base64'), randomBytes(32).toString('hex'), `${GOOD_SECRETS_KEY.slice(0, 20)}!!${GOOD_SECRETS_KEY.slice(20)}`]) {
        expect(() => production({ SECRETS_KEY: wrong })).toThrow(/SECRETS_KEY.*base64 of exactly 32 bytes/);
      }
    });

    it('refuses low-entropy keys, naming the setting', () => {
      for (const weak of ['x'.repeat(32), 'password'.repeat(4), '0123456'.repeat(5)]) {
        expect(() => production({ JWT_SECRET: weak })).toThrow(/JWT_SECRET.*predictable/);
      }
      const sevenValues = Buffer.from(Array.from({ length: 32 }, (_, i) => i % 7));
      for (const weak of [Buffer.alloc(32), Buffer.alloc(32, 9), sevenValues]) {
        expect(() => production({ SECRETS_KEY: weak.toString('base64') })).toThrow(/SECRETS_KEY.*predictable/);
      }
      const eightValues = Buffer.from(Array.from({ length: 32 }, (_, i) => i % 8));
      expect(production({ SECRETS_KEY: eightValues.toString('base64') }).warnings).toEqual([]);
    });

    it('accepts the development or a predictable key among SECRETS_KEY_PREVIOUS, so that it can be migrated away from, with a warning', () => {
      const devKey = DEV_SECRETS_KEY.toString('base64');
      const weak = Buffer.alloc(32, 9).toString('base64');
      const retired = randomBytes(32).toString('base64');
      const config = production({ SECRETS_KEY_PREVIOUS: `${retired},${devKey}, ${weak}` });
      expect(config.secretsKey.equals(Buffer.from(GOOD_SECRETS_KEY, 'base64'))).toBe(true);
      expect(config.previousSecretsKeys.map((key) => key.toString('base64'))).toEqual([retired, devKey, weak]);
      expect(config.warnings).toEqual([
        expect.stringMatching(/^WARNING: SECRETS_KEY_PREVIOUS: key 2 of 3 is the published development key: run npm run secrets:reencrypt/),
        expect.stringMatching(/^WARNING: SECRETS_KEY_PREVIOUS: key 3 of 3 is too predictable/),
      ]);
      // A random retired key alone is no cause for a warning; the development key is still refused as the current one.
      expect(production({ SECRETS_KEY_PREVIOUS: retired }).warnings).toEqual([]);
      expect(() => production({ SECRETS_KEY: devKey, SECRETS_KEY_PREVIOUS: GOOD_SECRETS_KEY })).toThrow(/SECRETS_KEY is the published development key/);
    });

    it('warns loudly, without refusing, when private or http destinations are allowed', () => {
      const config = production({ ALLOW_PRIVATE_DESTINATIONS: 'true', ALLOW_HTTP_DESTINATIONS: 'true' });
      expect(config.allowPrivateDestinations).toBe(true);
      expect(config.allowHttpDestinations).toBe(true);
      expect(config.warnings).toHaveLength(2);
      expect(config.warnings.find((w) => w.includes('ALLOW_PRIVATE_DESTINATIONS'))).toMatch(/^WARNING: .*production/);
      expect(config.warnings.find((w) => w.includes('ALLOW_HTTP_DESTINATIONS'))).toMatch(/^WARNING: .*production/);
      expect(production({ ALLOW_HTTP_DESTINATIONS: 'true' }).warnings).toEqual([expect.stringMatching(/ALLOW_HTTP_DESTINATIONS/)]);
      // Outside production these are ordinary development settings.
      expect(loadConfig({ NODE_ENV: 'test', JWT_SECRET: GOOD_JWT_SECRET, SECRETS_KEY: GOOD_SECRETS_KEY, ALLOW_PRIVATE_DESTINATIONS: 'true', ALLOW_HTTP_DESTINATIONS: 'true' }).warnings).toEqual([]);
    });
  });

  it('uses the development keys outside production, saying so', () => {
    const config = loadConfig({ NODE_ENV: 'development' });
    expect(config.jwtSecret).toBe(DEV_JWT_SECRET);
    expect(config.secretsKey.equals(DEV_SECRETS_KEY)).toBe(true);
    expect(config.warnings).toEqual([expect.stringMatching(/JWT_SECRET.*DEVELOPMENT key/), expect.stringMatching(/SECRETS_KEY.*DEVELOPMENT key/)]);
    // The development keys given explicitly, or simple keys, still work outside production.
    expect(loadConfig({ JWT_SECRET: DEV_JWT_SECRET, SECRETS_KEY: DEV_SECRETS_KEY.toString('base64') }).warnings).toEqual([]);
  });

  it('reads SECRETS_KEY_PREVIOUS as comma-separated keys for decryption only, checked like SECRETS_KEY', () => {
    const [current, a, b] = [randomBytes(32), randomBytes(32), randomBytes(32)];
    const base = { SECRETS_KEY: current.toString('base64') };
    expect(loadConfig(base).previousSecretsKeys).toEqual([]);
    expect(loadConfig({ ...base, SECRETS_KEY_PREVIOUS: ' ' }).previousSecretsKeys).toEqual([]);
    const config = loadConfig({ ...base, SECRETS_KEY_PREVIOUS: ` ${a.toString('base64')} ,${b.toString('base64url')}` });
    expect(config.secretsKey.equals(current)).toBe(true);
    expect(config.previousSecretsKeys).toEqual([a, b]);
    // Without SECRETS_KEY (development) the development key is the current one; others may still be retiring.
    expect(loadConfig({ SECRETS_KEY_PREVIOUS: a.toString('base64') }).previousSecretsKeys).toEqual([a]);

    const wrongs = [randomBytes(16).toString('base64'), randomBytes(32).toString('hex'), `${a.toString('base64').slice(0, 20)}!!${a.toString('base64').slice(20)}`, ''];
    for (const wrong of wrongs) {
      expect(() => loadConfig({ ...base, SECRETS_KEY_PREVIOUS: `${a.toString('base64')},${wrong}` })).toThrow(/SECRETS_KEY_PREVIOUS: key 2 of 2 must be the base64 of exactly 32 bytes/);
    }
    // A semicolon list is one malformed key, not two keys.
    expect(() => loadConfig({ ...base, SECRETS_KEY_PREVIOUS: `${a.toString('base64')};${b.toString('base64')}` })).toThrow(/key 1 of 1/);
    expect(() => loadConfig({ ...base, SECRETS_KEY_PREVIOUS: `${a.toString('base64')},${b.toString('base64')},${a.toString('base64url')}` })).toThrow(
      /SECRETS_KEY_PREVIOUS: key 3 of 3 is the same key as key 1/,
    );
    expect(() => loadConfig({ ...base, SECRETS_KEY_PREVIOUS: current.toString('base64') })).toThrow(/SECRETS_KEY_PREVIOUS: key 1 of 1 is SECRETS_KEY itself/);
    expect(() => loadConfig({ SECRETS_KEY_PREVIOUS: DEV_SECRETS_KEY.toString('base64') })).toThrow(/is SECRETS_KEY itself/);
    // No message repeats a key.
    let message = '';
    try {
      loadConfig({ ...base, SECRETS_KEY_PREVIOUS: `${a.toString('base64')},${a.toString('base64')}` });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/same key/);
    expect(message).not.toContain(a.toString('base64').slice(0, 8));
  });

  it('refuses nonsense settings with a message naming them', () => {
    expect(() => loadConfig({ RETRY_SCHEDULE: '1m,often' })).toThrow(/RETRY_SCHEDULE/);
    expect(() => loadConfig({ WORKER_CONCURRENCY: '0' })).toThrow(/WORKER_CONCURRENCY/);
    expect(() => loadConfig({ ALLOW_HTTP_DESTINATIONS: 'maybe' })).toThrow(/ALLOW_HTTP_DESTINATIONS/);
    expect(() => loadConfig({ DEFAULT_PLAN: 'gold' })).toThrow(/DEFAULT_PLAN/);
    expect(() => loadConfig({ CORS_ORIGINS: 'https://dash.example.com/app' })).toThrow(/CORS_ORIGINS/);
    expect(() => loadConfig({ CORS_ORIGINS: '*' })).toThrow(/CORS_ORIGINS/);
    expect(loadConfig({ CORS_ORIGINS: ' https://a.example.com, http://localhost:5173 ' }).corsOrigins).toEqual(['https://a.example.com', 'http://localhost:5173']);
    expect(loadConfig({}).corsOrigins).toEqual([]);
  });

  it('takes a QUEUE_PREFIX with one Redis Cluster hash tag, or none, and refuses an empty or unbalanced one, naming it', () => {
    for (const prefix of ['bellhop', '{bellhop}', 'prod:{bellhop}', '{bellhop}:eu', 'a:b:c']) {
      expect(loadConfig({ QUEUE_PREFIX: prefix }).queuePrefix).toBe(prefix);
    }
    expect(() => loadConfig({ QUEUE_PREFIX: '{}' })).toThrow(/QUEUE_PREFIX.*empty hash tag/);
    expect(() => loadConfig({ QUEUE_PREFIX: 'bellhop{}' })).toThrow(/QUEUE_PREFIX.*empty hash tag/);
    for (const unbalanced of ['{bellhop', 'bellhop}', '}bellhop{', '{{bellhop}}', '{a}{b}']) {
      expect(() => loadConfig({ QUEUE_PREFIX: unbalanced })).toThrow(ConfigError);
      expect(() => loadConfig({ QUEUE_PREFIX: unbalanced })).toThrow(/QUEUE_PREFIX may hold braces only as one Redis Cluster hash tag/);
    }
  });

  it('keeps SWEEP_INTERVAL between 100ms and 1h, naming the setting when it is outside', () => {
    for (const tooShort of ['0', '0ms', '99ms', '0.05s']) {
      expect(() => loadConfig({ SWEEP_INTERVAL: tooShort })).toThrow(ConfigError);
      expect(() => loadConfig({ SWEEP_INTERVAL: tooShort })).toThrow(/SWEEP_INTERVAL.*100ms/);
    }
    for (const tooLong of ['61m', '2h', '1d']) {
      expect(() => loadConfig({ SWEEP_INTERVAL: tooLong })).toThrow(ConfigError);
      expect(() => loadConfig({ SWEEP_INTERVAL: tooLong })).toThrow(/SWEEP_INTERVAL.*1h/);
    }
    expect(loadConfig({ SWEEP_INTERVAL: '100ms' }).sweepIntervalMs).toBe(100);
    expect(loadConfig({ SWEEP_INTERVAL: '1h' }).sweepIntervalMs).toBe(3_600_000);
  });

  it('keeps RETENTION_DAYS a whole number of days from 1 to 90, naming the setting when it is not', () => {
    for (const wrong of ['0', '91', '-1', '7.5', '30d', 'month']) {
      expect(() => loadConfig({ RETENTION_DAYS: wrong })).toThrow(ConfigError);
      expect(() => loadConfig({ RETENTION_DAYS: wrong })).toThrow(/RETENTION_DAYS.*1 to 90/);
    }
    expect(loadConfig({ RETENTION_DAYS: '1' }).retentionDays).toBe(1);
    expect(loadConfig({ RETENTION_DAYS: '90' }).retentionDays).toBe(90);
    expect(loadConfig({ RETENTION_DAYS: '' }).retentionDays).toBe(30);
  });

  it('reads RETENTION_INTERVAL as a duration from 1s to 24h, naming the setting when it is outside', () => {
    expect(loadConfig({ RETENTION_INTERVAL: '1h' }).retentionIntervalMs).toBe(3_600_000);
    expect(loadConfig({ RETENTION_INTERVAL: '1s' }).retentionIntervalMs).toBe(1000);
    expect(loadConfig({ RETENTION_INTERVAL: '1d' }).retentionIntervalMs).toBe(86_400_000);
    for (const wrong of ['0', '999ms', '25h', '2d']) expect(() => loadConfig({ RETENTION_INTERVAL: wrong })).toThrow(/RETENTION_INTERVAL.*1s and 24h/);
    expect(() => loadConfig({ RETENTION_INTERVAL: 'hourly' })).toThrow(/RETENTION_INTERVAL/);
  });

  it('reads PUBLISH_RATE_LIMIT like the other limits, 1000 events a second by default', () => {
    expect(loadConfig({}).publishRateLimit).toEqual({ limit: 1000, windowMs: 1000 });
    expect(loadConfig({ PUBLISH_RATE_LIMIT: '50/1m' }).publishRateLimit).toEqual({ limit: 50, windowMs: 60_000 });
    expect(loadConfig({ PUBLISH_RATE_LIMIT: ' 20 / 2s ' }).publishRateLimit).toEqual({ limit: 20, windowMs: 2000 });
    // Independent of RATE_LIMIT, which keeps its own default.
    expect(loadConfig({ PUBLISH_RATE_LIMIT: '5/1s' }).rateLimit).toEqual({ limit: 1200, windowMs: 60_000 });
    for (const wrong of ['1000', 'lots/1s', '0/1s', '10/500ms', '10/soon']) {
      expect(() => loadConfig({ PUBLISH_RATE_LIMIT: wrong })).toThrow(ConfigError);
      expect(() => loadConfig({ PUBLISH_RATE_LIMIT: wrong })).toThrow(/PUBLISH_RATE_LIMIT/);
    }
  });

  it('trusts X-Forwarded-For from loopback by default, and from the proxies TRUST_PROXY names', () => {
    expect(loadConfig({}).trustProxy).toEqual(['loopback']);
    expect(loadConfig({ TRUST_PROXY: '' }).trustProxy).toEqual(['loopback']);
    expect(loadConfig({ TRUST_PROXY: 'false' }).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'FALSE' }).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: '2' }).trustProxy).toBe(2);
    expect(loadConfig({ TRUST_PROXY: '0' }).trustProxy).toBe(0);
    expect(loadConfig({ TRUST_PROXY: ' 10.0.0.0/8, 192.0.2.7 ,Loopback,fd00::/16, 2001:db8::1, linklocal,uniquelocal' }).trustProxy).toEqual([
      '10.0.0.0/8',
      '192.0.2.7',
      'loopback',
      'fd00::/16',
      '2001:db8::1',
      'linklocal',
      'uniquelocal',
    ]);
  });

  it('refuses TRUST_PROXY=true, and anything else that would let a client choose its address', () => {
    const everyones = ['true', 'TRUE', '0.0.0.0/0', '::/0', 'loopback, 0.0.0.0/0'];
    // Ranges that a few of cover every client, IPv4 clients through their IPv4-mapped IPv6 form too.
    everyones.push('0.0.0.0/1,128.0.0.0/1', '10.0.0.0/7', '::/1,8000::/1', '2000::/3', 'fd00::/8', '::ffff:0:0/96', '::ffff:0.0.0.0/96', '::ffff:10.0.0.0/103', '::/80', '::/16');
    for (const everyone of everyones) {
      expect(() => loadConfig({ TRUST_PROXY: everyone })).toThrow(ConfigError);
      expect(() => loadConfig({ TRUST_PROXY: everyone })).toThrow(/TRUST_PROXY.*any client could choose its address/);
    }
    for (const wrong of ['yes', 'proxy.example.com', '10.0.0.0/33', '2001:db8::/129', '10.0.0.0/8/8', '10.0.0.0/x', '10.0.0.1,', '300.0.0.1', '11']) {
      expect(() => loadConfig({ TRUST_PROXY: wrong })).toThrow(ConfigError);
      expect(() => loadConfig({ TRUST_PROXY: wrong })).toThrow(/TRUST_PROXY/);
    }
    // The narrowest ranges refused are one step wider than these.
    for (const narrow of ['10.0.0.0/8', '2001:db8::/16', '::ffff:10.0.0.0/104', '::ffff:10.0.0.1', '64:ff9b::/96']) {
      expect(loadConfig({ TRUST_PROXY: narrow }).trustProxy).toEqual([narrow]);
    }
  });
});

describe('PUBLIC_URL', () => {
  it('defaults to the local API and drops a trailing slash, keeping a path behind a proxy', () => {
    expect(loadConfig({}).publicUrl).toBe('http://127.0.0.1:3000');
    expect(loadConfig({ PUBLIC_URL: 'https://hooks.example.com/' }).publicUrl).toBe('https://hooks.example.com');
    expect(loadConfig({ PUBLIC_URL: ' https://example.com/bellhop/ ' }).publicUrl).toBe('https://example.com/bellhop');
  });

  it.each(['hooks.example.com', 'ftp://example.com', 'https://user:pass@example.com', 'https://example.com/?a=1', 'https://example.com/#x'])('refuses %s, naming the setting', (value) => {
    expect(() => loadConfig({ PUBLIC_URL: value })).toThrow(/^PUBLIC_URL: /);
  });
});

describe('HTTP server timeouts', () => {
  it('default to a 30s request, 10s headers and 5s keep-alive timeout', () => {
    expect(loadConfig({}).httpTimeouts).toEqual({ requestMs: 30_000, headersMs: 10_000, keepAliveMs: 5_000 });
    expect(loadConfig({ HTTP_REQUEST_TIMEOUT: '2m', HTTP_HEADERS_TIMEOUT: '70s', HTTP_KEEPALIVE_TIMEOUT: '65s' }).httpTimeouts).toEqual({ requestMs: 120_000, headersMs: 70_000, keepAliveMs: 65_000 });
  });

  it('refuses a headers timeout not longer than the keep-alive timeout, and a request timeout shorter than the headers one', () => {
    expect(() => loadConfig({ HTTP_KEEPALIVE_TIMEOUT: '65s' })).toThrow(/^HTTP_HEADERS_TIMEOUT \(10000 ms\) must be longer than HTTP_KEEPALIVE_TIMEOUT \(65000 ms\)/);
    expect(() => loadConfig({ HTTP_HEADERS_TIMEOUT: '5s' })).toThrow(/HTTP_HEADERS_TIMEOUT .* must be longer than HTTP_KEEPALIVE_TIMEOUT/);
    expect(() => loadConfig({ HTTP_HEADERS_TIMEOUT: '40s' })).toThrow(/^HTTP_REQUEST_TIMEOUT \(30000 ms\) must be at least HTTP_HEADERS_TIMEOUT \(40000 ms\)/);
    expect(loadConfig({ HTTP_HEADERS_TIMEOUT: '30s' }).httpTimeouts.headersMs).toBe(30_000);
  });

  it('refuses 0 (no timeout at all to Node) and values out of range', () => {
    for (const name of ['HTTP_REQUEST_TIMEOUT', 'HTTP_HEADERS_TIMEOUT', 'HTTP_KEEPALIVE_TIMEOUT']) {
      for (const wrong of ['0', '500ms', '2h', 'soon']) {
        expect(() => loadConfig({ [name]: wrong })).toThrow(ConfigError);
        expect(() => loadConfig({ [name]: wrong })).toThrow(new RegExp(`^${name}`));
      }
    }
  });
});
