import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from './config';
import { explainConfigError, readConfigFile, resolveSettings, settingsSummary } from './layers';
import { renderConfigFile, SETTINGS } from './settings';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'bellhop-conf-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let count = 0;
/** A config file of its own for each call. */
function file(name: string, text: string): string {
  const path = join(dir, `${++count}-${name}`);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

function resolve(argv: string[], env: Record<string, string | undefined> = {}) {
  return resolveSettings({ argv, env, program: 'bellhop-api', cwd: dir });
}

/** The ConfigError a call throws (fails the test when it throws nothing, or something else). */
function errorOf(work: () => unknown): string {
  try {
    work();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('settings from flags, environment, config file and defaults', () => {
  const yaml = ['PORT: 1', 'HOST: 10.0.0.1', 'RETENTION_DAYS: 10', 'WORKER_CONCURRENCY: 7', 'RETRY_SCHEDULE: [1s, 2s]', 'ALLOW_HTTP_DESTINATIONS: true', ''].join('\n');
  const json = JSON.stringify({ PORT: 1, HOST: '10.0.0.1', RETENTION_DAYS: 10, WORKER_CONCURRENCY: 7, RETRY_SCHEDULE: ['1s', '2s'], ALLOW_HTTP_DESTINATIONS: true });

  it.each([
    ['YAML', 'bellhop.yaml', yaml],
    ['JSON', 'bellhop.json', json],
  ])('puts a flag over the environment over the %s file over the default', (_format, name, text) => {
    const path = file(name, text);
    const resolved = resolve(['--port', '3100', '--host', '127.0.0.1'], { BELLHOP_CONFIG: path, PORT: '2', RETENTION_DAYS: '20' });
    expect(resolved.file).toBe(path);
    expect(resolved.sources).toMatchObject({ PORT: 'flag', HOST: 'flag', RETENTION_DAYS: 'env', WORKER_CONCURRENCY: 'file', RETRY_SCHEDULE: 'file', SESSION_TTL: 'default' });
    const config = loadConfig(resolved.env);
    expect(config).toMatchObject({ port: 3100, host: '127.0.0.1', retentionDays: 20, workerConcurrency: 7, retryScheduleMs: [1000, 2000], allowHttpDestinations: true, sessionTtlMs: 7 * 86_400_000 });
    expect(settingsSummary(resolved, config)).toMatchObject({
      PORT: '3100 (flag)',
      RETENTION_DAYS: '20 (env)',
      WORKER_CONCURRENCY: '7 (file)',
      SESSION_TTL: '7d (default)',
      DATABASE_POOL_SIZE: '12 (default: WORKER_CONCURRENCY + 5, at least 10)',
    });
  });

  it('reads the file named by --config over the one BELLHOP_CONFIG names, relative to the working directory', () => {
    const named = file('named.yaml', 'QUEUE_PREFIX: from-env-file\n');
    const flagged = file('flagged.yml', 'QUEUE_PREFIX: from-flag-file\n');
    const resolved = resolve(['--config', flagged.slice(dir.length + 1)], { BELLHOP_CONFIG: named });
    expect(resolved.file).toBe(flagged);
    expect(resolved.env.QUEUE_PREFIX).toBe('from-flag-file');
  });

  it('counts an empty environment variable as unset, as loadConfig does, so the file still applies', () => {
    const path = file('empty-env.yaml', 'QUEUE_PREFIX: filed\n');
    expect(resolve([], { BELLHOP_CONFIG: path, QUEUE_PREFIX: '' }).env.QUEUE_PREFIX).toBe('filed');
  });

  it('takes boolean flags with or without a value, and refuses unknown flags with a suggestion', () => {
    expect(resolve(['--allow-private-destinations']).env.ALLOW_PRIVATE_DESTINATIONS).toBe('true');
    expect(resolve(['--allow-private-destinations', 'false', '--port', '1']).env.ALLOW_PRIVATE_DESTINATIONS).toBe('false');
    expect(errorOf(() => resolve(['--prot', '3000']))).toMatch(/unknown option '--prot'.*Did you mean --port\?/);
    expect(errorOf(() => resolve(['--node-env', 'prod']))).toMatch(/'prod' is invalid.*production, development, test/);
    expect(errorOf(() => resolve(['3000']))).toMatch(/too many arguments/);
  });

  it('lists every setting as a flag in --help', () => {
    const { help } = resolve(['--help']);
    expect(help).toContain('--config <file>');
    for (const setting of SETTINGS) expect(help).toContain(`--${setting.name.toLowerCase().replace(/_/g, '-')}`);
  });

  it('stops on a file that is missing or of an unknown kind, naming it', () => {
    expect(errorOf(() => resolve([], { BELLHOP_CONFIG: join(dir, 'nowhere.yaml') }))).toBe(`BELLHOP_CONFIG: cannot read the config file ${join(dir, 'nowhere.yaml')}: there is no such file`);
    expect(errorOf(() => resolve(['--config', file('bellhop.toml', 'PORT = 1\n')]))).toMatch(/^--config: .*bellhop\.toml: a config file ends in \.yaml, \.yml \(YAML\) or \.json \(JSON\)$/);
  });
});

describe('a config file', () => {
  it('refuses an unknown key, naming the file, the line and the key, with the setting meant', () => {
    const path = file('typo.yaml', 'PORT: 3000\nWORKER_CONCURENCY: 20\n');
    expect(errorOf(() => readConfigFile(path))).toBe(`${path}:2: unknown setting "WORKER_CONCURENCY" (did you mean WORKER_CONCURRENCY?)`);
    // One spelling: the environment variable's. Another spelling of a setting is pointed at it.
    const camel = file('camel.json', '{"workerConcurrency": 20}');
    expect(errorOf(() => readConfigFile(camel))).toBe(`${camel}: unknown setting "workerConcurrency" (keys are the environment variable names: did you mean WORKER_CONCURRENCY?)`);
    const far = file('far.yaml', 'colour: blue\n');
    expect(errorOf(() => readConfigFile(far))).toMatch(new RegExp(`^${far}:1: unknown setting "colour" \\(keys are the environment variable names`));
    expect(errorOf(() => readConfigFile(file('self.yaml', 'BELLHOP_CONFIG: other.yaml\n')))).toMatch(/:1: BELLHOP_CONFIG names the config file, so it cannot be set inside one/);
  });

  it('refuses values of the wrong type, naming the file, the line and the key', () => {
    const cases: [string, RegExp][] = [
      ['PORT: "3000"', /:1: PORT must be a whole number, got the text "3000" \(write the number without quotes\)$/],
      ['PORT: 3000.5', /:1: PORT must be a whole number, got the number 3000.5$/],
      ['ALLOW_HTTP_DESTINATIONS: yes', /:1: ALLOW_HTTP_DESTINATIONS must be true or false, got the text "yes"/],
      ['HOST: 8080', /:1: HOST must be text, got the number 8080$/],
      ['RETRY_SCHEDULE: {a: 1}', /:1: RETRY_SCHEDULE must be durations such as "1m,5m,30m" \(or a list of them\), got a mapping$/],
      ['CORS_ORIGINS: [1, 2]', /:1: CORS_ORIGINS must be text, comma-separated, or a list of text, got a list$/],
      ['NODE_ENV: prod', /:1: NODE_ENV must be one of production, development, test, got the text "prod"$/],
      ['JWT_SECRET:', /:1: JWT_SECRET must be text, got nothing$/],
      ['\n\nTRUST_PROXY: true', /:3: TRUST_PROXY must be false, a number of proxy hops, or addresses and ranges/],
    ];
    for (const [text, expected] of cases) {
      const path = file('typed.yaml', text + '\n');
      const message = errorOf(() => readConfigFile(path));
      expect(message.startsWith(`${path}:`)).toBe(true);
      expect(message).toMatch(expected);
    }
    const json = file('typed.json', '{"WORKER_CONCURRENCY": "20"}');
    expect(errorOf(() => readConfigFile(json))).toBe(`${json}: WORKER_CONCURRENCY must be a whole number, got the text "20" (write the number without quotes)`);
  });

  it('reports bad syntax with the line and column', () => {
    const yaml = file('broken.yaml', 'PORT: 3000\nRETRY_SCHEDULE: [1s, 2s\nHOST: 127.0.0.1\n');
    expect(errorOf(() => readConfigFile(yaml))).toMatch(new RegExp(`^${yaml}:3:1: not valid YAML: `));
    const twice = file('twice.yaml', 'PORT: 3000\nPORT: 3001\n');
    expect(errorOf(() => readConfigFile(twice))).toBe(`${twice}:2:1: not valid YAML: Map keys must be unique`);
    const json = file('broken.json', '{\n  "PORT": 3000,\n}\n');
    expect(errorOf(() => readConfigFile(json))).toMatch(new RegExp(`^${json}:3:1: not valid JSON: `));
    expect(errorOf(() => readConfigFile(file('list.yaml', '- PORT: 1\n')))).toMatch(/a config file is a mapping of settings \(PORT: 3000\), not a list$/);
    expect(errorOf(() => readConfigFile(file('list.json', '[]')))).toMatch(/a config file is an object of settings/);
  });

  it('accepts an empty file, and one of comments only', () => {
    expect(readConfigFile(file('empty.yaml', '')).values).toEqual({});
    expect(readConfigFile(file('init.yaml', renderConfigFile('yaml').text)).values).toEqual({});
  });

  it('warns when it holds a secret and every user may read it', () => {
    const path = file('secret.yaml', 'JWT_SECRET: "0123456789abcdef0123456789abcdef"\n');
    expect(readConfigFile(path).warnings).toEqual([]);
    chmodSync(path, 0o644);
    expect(readConfigFile(path).warnings).toEqual([expect.stringMatching(/holds JWT_SECRET and every user of this machine can read it: chmod 600/)]);
    const url = file('url.yaml', 'DATABASE_URL: postgresql://bellhop:hunter2@db/bellhop\nREDIS_URL: redis://cache:6379\n');
    chmodSync(url, 0o644);
    expect(readConfigFile(url).warnings).toEqual([expect.stringMatching(/holds DATABASE_URL and/)]);
  });
});

describe('what `bellhop config init` writes', () => {
  it('is every setting with its meaning and default, commented out; uncommented, it gives the defaults loadConfig has', () => {
    const { text } = renderConfigFile('yaml');
    for (const setting of SETTINGS) {
      expect(text).toContain(`\n# ${setting.name}: `);
      expect(text.replace(/\n# /g, ' ')).toContain(setting.meaning);
    }
    const uncommented = text.replace(/^# ([A-Z][A-Z0-9_]*: )/gm, '$1');
    const values = readConfigFile(file('uncommented.yaml', uncommented)).values;
    expect(Object.keys(values).sort()).toEqual(SETTINGS.map((setting) => setting.name).sort());
    expect(loadConfig(values)).toEqual(loadConfig({}));
  });

  it('is, in JSON, a plain object of the fixed defaults, which loadConfig reads as its own defaults', () => {
    const { text, omitted } = renderConfigFile('json');
    expect(omitted.sort()).toEqual(['DATABASE_POOL_SIZE', 'JWT_SECRET', 'LOG_LEVEL', 'MAX_IN_FLIGHT_PER_ORGANIZATION', 'SECRETS_KEY']);
    const values = readConfigFile(file('init.json', text)).values;
    expect(Object.keys(values)).toHaveLength(SETTINGS.length - omitted.length);
    expect(loadConfig(values)).toEqual(loadConfig({}));
  });
});

describe('the boot summary', () => {
  it('shows no secret: secrets only as set, URLs without their password', () => {
    const jwt = 'file-jwt-secret-0123456789-0123456789';
    const key = Buffer.alloc(32, 9).toString('base64');
    const path = file('secrets.yaml', `JWT_SECRET: ${jwt}\nSECRETS_KEY: "${key}"\n`);
    const resolved = resolve(['--redis-url', 'redis://:flag-redis-pw@cache:6379/0'], {
      BELLHOP_CONFIG: path,
      DATABASE_URL: 'postgresql://bellhop:env-db-pw@db:5432/bellhop?sslmode=require&password=env-db-pw2',
      SECRETS_KEY_PREVIOUS: Buffer.alloc(32, 8).toString('base64'),
    });
    const summary = settingsSummary(resolved);
    const printed = JSON.stringify(summary);
    for (const secret of [jwt, key, 'flag-redis-pw', 'env-db-pw', Buffer.alloc(32, 8).toString('base64')]) expect(printed).not.toContain(secret);
    expect(summary).toMatchObject({
      JWT_SECRET: '[redacted] (file)',
      SECRETS_KEY: '[redacted] (file)',
      SECRETS_KEY_PREVIOUS: '[redacted] (env)',
      REDIS_URL: 'redis://:***@cache:6379/0 (flag)',
    });
    expect(summary.DATABASE_URL).toBe('postgresql://bellhop:***@db:5432/bellhop?sslmode=require&password=*** (env)');
    // A secret on the command line is readable by anyone in `ps`.
    expect(resolved.warnings).toEqual([expect.stringMatching(/REDIS_URL was given as the flag --redis-url: other users of this machine can read it/)]);
    expect(settingsSummary(resolve([])).JWT_SECRET).toBe('(not set)');
  });

  it('masks every credential parameter of a URL: sslpassword and any *password*, *secret* or *token*', () => {
    const resolved = resolve([], {
      DATABASE_URL: 'postgresql://bellhop@db:5432/bellhop?sslmode=verify-full&sslpassword=key-pw&sslcert=/etc/c.pem',
      REDIS_URL: 'rediss://cache:6380/0?auth_token=redis-tok&client_secret=redis-sec&Password=redis-pw',
    });
    const summary = settingsSummary(resolved);
    for (const secret of ['key-pw', 'redis-tok', 'redis-sec', 'redis-pw']) expect(JSON.stringify(summary)).not.toContain(secret);
    expect(summary.DATABASE_URL).toBe('postgresql://bellhop@db:5432/bellhop?sslmode=verify-full&sslpassword=***&sslcert=%2Fetc%2Fc.pem (env)');
    expect(summary.REDIS_URL).toBe('rediss://cache:6380/0?auth_token=***&client_secret=***&Password=*** (env)');
  });

  it("adds to loadConfig's message where the setting was given, when it was not the environment", () => {
    const path = file('range.yaml', 'PORT: 70000\n');
    const fromFile = resolve([], { BELLHOP_CONFIG: path });
    const message = errorOf(() => loadConfig(fromFile.env));
    expect(explainConfigError(message, fromFile)).toBe(`PORT must be a whole number from 0 to 65535, got "70000" (PORT is set in ${path})`);
    const fromFlag = resolve(['--http-keepalive-timeout', '20s']);
    expect(explainConfigError(errorOf(() => loadConfig(fromFlag.env)), fromFlag)).toMatch(/^HTTP_HEADERS_TIMEOUT .* must be longer than HTTP_KEEPALIVE_TIMEOUT .*\(HTTP_KEEPALIVE_TIMEOUT is the flag --http-keepalive-timeout\)$/);
    const fromEnv = resolve([], { PORT: '70000' });
    expect(explainConfigError(errorOf(() => loadConfig(fromEnv.env)), fromEnv)).toBe('PORT must be a whole number from 0 to 65535, got "70000"');
  });
});
