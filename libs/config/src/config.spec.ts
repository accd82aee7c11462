import { ConfigError, loadConfig } from './config';
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
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32) })).toThrow(/SECRETS_KEY/);
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'short', SECRETS_KEY: Buffer.alloc(32).toString('base64') })).toThrow(ConfigError);
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32), SECRETS_KEY: Buffer.alloc(16).toString('base64') })).toThrow(/32 bytes/);
    const ok = loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'x'.repeat(32), SECRETS_KEY: Buffer.alloc(32, 9).toString('base64') });
    expect(ok.warnings).toEqual([]);
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
});
