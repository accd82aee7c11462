import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { INestApplication } from '@nestjs/common';
import { Client } from 'pg';
import { request } from 'undici';
import { BELLHOP_CONFIG, BellhopConfig, ConfigError } from '@bellhop/config';
import { startApp } from '@bellhop/observability';
import { createApiApp } from '../apps/api/src/api.app';
import { createWorkerApp } from '../apps/worker/src/worker.app';
import { TEST_REDIS_URL } from './support/env';
import { freePort } from './support/processes';
import { createDatabaseFromTemplate, dropDatabase } from './support/stack';
import { eventually } from './support/tenant';

const API_MAIN = path.join(__dirname, '..', 'dist', 'apps', 'api', 'src', 'main.js');

/*
 * Settings from a config file, the environment and the start command's flags, through the boot
 * path both apps take (startApp): in this process for the API and the worker, then once through
 * the built API as operators run it.
 */
describe('a config file, the environment and flags at boot', () => {
  let dir: string;
  let databaseUrl: string;
  let queuePrefix: string;
  const savedEnv = { ...process.env };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'bellhop-conf-e2e-'));
    queuePrefix = `bhconf${randomBytes(4).toString('hex')}`;
    databaseUrl = await createDatabaseFromTemplate(queuePrefix);
  });
  afterAll(async () => {
    await dropDatabase(databaseUrl);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The test's environment, alone: startApp merges the file and the flags into process.env. */
  function environment(settings: Record<string, string>): void {
    for (const name of Object.keys(process.env)) delete process.env[name];
    Object.assign(process.env, {
      PATH: savedEnv.PATH,
      HOME: savedEnv.HOME,
      NODE_ENV: 'test',
      DATABASE_URL: databaseUrl,
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: queuePrefix,
      LOG_LEVEL: 'error',
      ...settings,
    });
  }
  afterEach(() => {
    for (const name of Object.keys(process.env)) delete process.env[name];
    Object.assign(process.env, savedEnv);
  });

  function configFile(name: string, text: string): string {
    const file = path.join(dir, name);
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  }

  const listenOn = (port: (config: BellhopConfig) => number) => (config: BellhopConfig) => ({ port: port(config), started: 'started' });

  async function started(result: Awaited<ReturnType<typeof startApp>>): Promise<INestApplication> {
    if ('help' in result) throw new Error('expected an app, got the help');
    return result.app;
  }

  it('boots the API with a flag over the environment over the file over the default, timeouts applied to its server', async () => {
    const file = configFile('api.yaml', ['PORT: 1', 'HOST: 10.255.255.1', 'RETENTION_DAYS: 10', 'MAX_ORGANIZATIONS_PER_USER: 7', 'HTTP_KEEPALIVE_TIMEOUT: 4s', ''].join('\n'));
    environment({ BELLHOP_CONFIG: file, RETENTION_DAYS: '20' });
    const app = await started(await startApp('bellhop-api', createApiApp, listenOn((c) => c.port), ['--port', '0', '--host', '127.0.0.1', '--http-headers-timeout', '12s']));
    try {
      const config = app.get<BellhopConfig>(BELLHOP_CONFIG);
      expect(config).toMatchObject({ port: 0, host: '127.0.0.1', retentionDays: 20, maxOrganizationsPerUser: 7, sessionTtlMs: 7 * 86_400_000 });
      expect(config.httpTimeouts).toEqual({ requestMs: 30_000, headersMs: 12_000, keepAliveMs: 4_000 });
      const server = app.getHttpServer() as Server;
      expect([server.requestTimeout, server.headersTimeout, server.keepAliveTimeout]).toEqual([30_000, 12_000, 4_000]);
      const { address, port } = server.address() as AddressInfo;
      expect(address).toBe('127.0.0.1');
      const res = await request(`http://127.0.0.1:${port}/health`);
      expect(res.statusCode).toBe(200);
      expect(res.headers['keep-alive']).toBe('timeout=4');
      await res.body.dump();
    } finally {
      await app.close();
    }
  });

  it('boots the worker with --worker-concurrency over the environment and the file, its health listener with the timeouts', async () => {
    const file = configFile('worker.json', JSON.stringify({ WORKER_CONCURRENCY: 3, SWEEP_INTERVAL: '2s' }));
    environment({ BELLHOP_CONFIG: file, WORKER_CONCURRENCY: '5' });
    const app = await started(await startApp('bellhop-worker', () => createWorkerApp(), listenOn((c) => c.workerPort), ['--worker-concurrency', '20', '--worker-port', '0', '--host', '127.0.0.1']));
    try {
      const config = app.get<BellhopConfig>(BELLHOP_CONFIG);
      expect(config).toMatchObject({ workerConcurrency: 20, sweepIntervalMs: 2000, workerPort: 0 });
      const server = app.getHttpServer() as Server;
      expect([server.requestTimeout, server.headersTimeout, server.keepAliveTimeout]).toEqual([30_000, 10_000, 5_000]);
      const res = await request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/health`);
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    } finally {
      await app.close();
    }
  });

  it('stops before building anything on a bad file, or a bad value from it, naming the file and the key', async () => {
    const typo = configFile('typo.yaml', 'PORT: 3000\nWORKER_CONCURENCY: 20\n');
    environment({ BELLHOP_CONFIG: typo });
    const create = jest.fn(createApiApp);
    await expect(startApp('bellhop-api', create, listenOn((c) => c.port), [])).rejects.toThrow(new ConfigError(`${typo}:2: unknown setting "WORKER_CONCURENCY" (did you mean WORKER_CONCURRENCY?)`));
    const relation = configFile('keepalive.yaml', 'HTTP_KEEPALIVE_TIMEOUT: 65s\n');
    await expect(startApp('bellhop-api', create, listenOn((c) => c.port), ['--config', relation])).rejects.toThrow(
      /^HTTP_HEADERS_TIMEOUT \(10000 ms\) must be longer than HTTP_KEEPALIVE_TIMEOUT \(65000 ms\).*\(HTTP_KEEPALIVE_TIMEOUT is set in .*keepalive\.yaml\)$/,
    );
    expect(create).not.toHaveBeenCalled();
  });

  it('migrates the database a .env file in the working directory names, as the apps would use it', async () => {
    // Not created: db.js creates it, so its existence afterwards shows where the migrations went.
    const target = new URL(databaseUrl);
    target.pathname = `/${queuePrefix}_dotenv`;
    const workdir = mkdtempSync(path.join(dir, 'cwd-'));
    writeFileSync(path.join(workdir, '.env'), `DATABASE_URL=${target.toString()}\n`);
    try {
      const child = spawn(process.execPath, [path.join(__dirname, '..', 'scripts', 'db.js'), 'migrate'], {
        cwd: workdir,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining(`created database ${queuePrefix}_dotenv`) });
      const client = new Client({ connectionString: target.toString() });
      await client.connect();
      try {
        const { rows } = await client.query<{ count: string }>('SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL');
        expect(Number(rows[0].count)).toBeGreaterThan(0);
      } finally {
        await client.end();
      }
    } finally {
      await dropDatabase(target.toString());
    }
  });

  describe('the built API (node dist/apps/api/src/main.js)', () => {
    beforeAll(() => {
      if (!existsSync(API_MAIN)) throw new Error(`${path.relative(process.cwd(), API_MAIN)} is missing: these tests run the built API; run \`npm run build\` first`);
    });

    /** Starts it, its output captured. */
    function runApi(args: string[], env: Record<string, string>) {
      const child = spawn(process.execPath, [API_MAIN, ...args], { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      return { child, exited, stdout: () => stdout, stderr: () => stderr };
    }

    it('lists every setting as a flag with --help and exits 0', async () => {
      const run = runApi(['--help'], {});
      expect(await run.exited).toBe(0);
      expect(run.stdout()).toMatch(/^Usage: bellhop-api \[options\]/);
      expect(run.stdout()).toContain('--worker-concurrency <number>');
      expect(run.stdout()).toContain('--config <file>');
    });

    it('exits 1 on a bad config file, with a message naming the file and the key', async () => {
      const file = configFile('bad.yaml', 'PORT: 3000\nALLOW_HTTP_DESTINATIONS: yes\n');
      const run = runApi([], { BELLHOP_CONFIG: file });
      expect(await run.exited).toBe(1);
      expect(run.stderr()).toBe(`bellhop-api: configuration error: ${file}:2: ALLOW_HTTP_DESTINATIONS must be true or false, got the text "yes" (write true or false, without quotes)\n`);
    });

    it('listens where its flags say, and logs each setting with its origin and no secret', async () => {
      const jwtSecret = `jwt-${randomBytes(24).toString('hex')}`;
      const file = configFile('good.yaml', [`JWT_SECRET: ${jwtSecret}`, 'PORT: 1', 'HOST: 10.255.255.1', 'RETENTION_DAYS: 10', 'WORKER_CONCURRENCY: 7', ''].join('\n'));
      const port = await freePort();
      // Postgres here trusts local connections, so the password is never checked: it only has to stay out of the log.
      const withPassword = new URL(databaseUrl);
      withPassword.password = 'hunter2-db-password';
      const run = runApi(['--port', String(port), '--host', '127.0.0.1'], {
        NODE_ENV: 'test',
        LOG_LEVEL: 'info',
        BELLHOP_CONFIG: file,
        PORT: '2',
        RETENTION_DAYS: '20',
        DATABASE_URL: withPassword.toString(),
        REDIS_URL: TEST_REDIS_URL,
        QUEUE_PREFIX: queuePrefix,
      });
      try {
        await eventually(async () => {
          if (run.child.exitCode !== null) throw new Error(`exited ${run.child.exitCode}: ${run.stderr()}`);
          const res = await request(`http://127.0.0.1:${port}/health/ready`);
          await res.body.dump();
          return res.statusCode === 200 ? true : undefined;
        }, 30_000, 100);
        const line = run
          .stdout()
          .split('\n')
          .filter((text) => text.includes('"settings"'))
          .map((text) => JSON.parse(text) as { level: number; settings: Record<string, string>; configFile: string })[0];
        expect(line).toBeDefined();
        expect(line.level).toBe(30);
        expect(line.configFile).toBe(file);
        expect(line.settings).toMatchObject({
          PORT: `${port} (flag)`,
          HOST: '127.0.0.1 (flag)',
          RETENTION_DAYS: '20 (env)',
          WORKER_CONCURRENCY: '7 (file)',
          SESSION_TTL: '7d (default)',
          JWT_SECRET: '[redacted] (file)',
          DATABASE_POOL_SIZE: '12 (default: WORKER_CONCURRENCY + 5, at least 10)',
        });
        expect(line.settings.DATABASE_URL).toMatch(/^postgresql:\/\/postgres:\*\*\*@127\.0\.0\.1:5432\/bhconf[0-9a-f]+ \(env\)$/);
        const output = run.stdout() + run.stderr();
        expect(output).not.toContain(jwtSecret);
        expect(output).not.toContain('hunter2-db-password');
      } finally {
        run.child.kill('SIGTERM');
        await run.exited;
      }
    });
  });
});
