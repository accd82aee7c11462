import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { request } from 'undici';
import { TEST_REDIS_URL } from './env';

/** The built worker, exactly what `npm run start:worker` runs. */
export const WORKER_MAIN = path.join(__dirname, '..', '..', 'dist', 'apps', 'worker', 'src', 'main.js');
/** The built API, exactly what `npm run start:api` runs. */
export const API_MAIN = path.join(__dirname, '..', '..', 'dist', 'apps', 'api', 'src', 'main.js');

/** Ends a worker whose test process has gone (see the file). */
const EXIT_WITH_PARENT = path.join(__dirname, 'exit-with-parent.js');

/** Fails with a message that says what to do when the worker has not been built. */
export function assertWorkerBuilt(): void {
  if (!existsSync(WORKER_MAIN)) {
    throw new Error(`${path.relative(process.cwd(), WORKER_MAIN)} is missing: these tests run the built worker; run \`npm run build\` first`);
  }
}

/** The same for the built API. */
export function assertApiBuilt(): void {
  if (!existsSync(API_MAIN)) {
    throw new Error(`${path.relative(process.cwd(), API_MAIN)} is missing: these tests run the built API; run \`npm run build\` first`);
  }
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WorkerProcess {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  readonly child: ChildProcess;
  /** Resolves when the process has exited, with its exit code or the signal that ended it. */
  readonly exited: Promise<ExitInfo>;
  /** The last 64 KB of its stdout and stderr, for failure messages. */
  output(): string;
  /** Resident set size in bytes, from /proc/<pid>/status (VmRSS). */
  rssBytes(): number;
  /** Sends a signal and waits (bounded) for the exit. */
  signal(signal: NodeJS.Signals, timeoutMs?: number): Promise<ExitInfo>;
  /** The worker's /metrics text. */
  metrics(): Promise<string>;
}

const running = new Set<WorkerProcess>();
// A crashed or interrupted test run must not leave workers consuming the queue.
process.once('exit', () => {
  for (const worker of running) worker.child.kill('SIGKILL');
});

/** A port nobody listens on right now (the worker is then started on it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface StartWorkerOptions {
  /** Settings for the child, as environment variables (its whole environment, with PATH and HOME). */
  env: Record<string, string>;
  name?: string;
  /** How long to wait for /health/ready. Default 30 s. */
  readyTimeoutMs?: number;
}

/**
 * Starts `node dist/apps/worker/src/main.js` (with a preload that ends it if this process dies) as a child process on a port of its own and waits
 * until its /health/ready answers 200. Rejects with the child's output if it exits or never gets ready.
 */
export async function startWorkerProcess(options: StartWorkerOptions): Promise<WorkerProcess> {
  assertWorkerBuilt();
  return startBuiltApp(WORKER_MAIN, 'WORKER_PORT', 'worker', options);
}

export interface ApiProcess extends WorkerProcess {
  /** Its base URL, http://127.0.0.1:<port>. */
  readonly url: string;
}

/**
 * Starts `node dist/apps/api/src/main.js` the same way: its own port (PORT), the same preload,
 * ready when its /health/ready answers 200. killAllWorkers ends it too.
 */
export async function startApiProcess(options: StartWorkerOptions): Promise<ApiProcess> {
  assertApiBuilt();
  const api = await startBuiltApp(API_MAIN, 'PORT', 'api', options);
  return { ...api, url: `http://127.0.0.1:${api.port}` };
}

async function startBuiltApp(main: string, portVariable: 'PORT' | 'WORKER_PORT', kind: string, options: StartWorkerOptions): Promise<WorkerProcess> {
  const port = await freePort();
  const name = options.name ?? `${kind}-${port}`;
  const child = spawn(process.execPath, ['--require', EXIT_WITH_PARENT, main], {
    cwd: path.join(__dirname, '..', '..'),
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env, [portVariable]: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const append = (chunk: Buffer) => {
    log += chunk.toString('utf8');
    if (log.length > 65_536) log = log.slice(-65_536);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  let exitInfo: ExitInfo | null = null;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });

  const worker: WorkerProcess = {
    name,
    pid: child.pid!,
    port,
    child,
    exited,
    output: () => log,
    rssBytes: () => {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
      if (!match) throw new Error(`no VmRSS for ${name} (pid ${child.pid})`);
      return Number(match[1]) * 1024;
    },
    signal: async (sig, timeoutMs = 20_000) => {
      if (exitInfo) return exitInfo;
      child.kill(sig);
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([
        exited,
        new Promise<null>((resolve) => {
          timer = setTimeout(() => resolve(null), timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (!result) throw new Error(`${name} did not exit within ${timeoutMs} ms of ${sig}; output:\n${log.slice(-4000)}`);
      return result;
    },
    metrics: async () => {
      const res = await request(`http://127.0.0.1:${port}/metrics`, { headersTimeout: 5000, bodyTimeout: 5000 });
      return res.body.text();
    },
  };
  running.add(worker);
  void exited.then(() => running.delete(worker));

  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (exitInfo) throw new Error(`${name} exited before it was ready (${JSON.stringify(exitInfo)}); output:\n${log.slice(-4000)}`);
    try {
      const res = await request(`http://127.0.0.1:${port}/health/ready`, { headersTimeout: 2000, bodyTimeout: 2000 });
      await res.body.dump();
      if (res.statusCode === 200) return worker;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} was not ready within ${options.readyTimeoutMs ?? 30_000} ms; output:\n${log.slice(-4000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** SIGKILLs every worker (and API) process still running and waits for them to go. */
export async function killAllWorkers(): Promise<void> {
  const all = [...running];
  for (const worker of all) worker.child.kill('SIGKILL');
  await Promise.all(all.map((worker) => worker.exited));
}

/** A counter's total from Prometheus text (all label sets summed). */
export function metricTotal(text: string, name: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{')) total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  }
  return total;
}

/**
 * A worker child's settings for a test stack: its database and queue prefix, real Redis, local
 * destinations allowed, the API's secrets key, then the test's own settings.
 */
export function workerEnvFor(stack: { databaseUrl: string; queuePrefix: string }, settings: Record<string, string>): Record<string, string> {
  return {
    NODE_ENV: 'test',
    DATABASE_URL: stack.databaseUrl,
    REDIS_URL: TEST_REDIS_URL,
    QUEUE_PREFIX: stack.queuePrefix,
    ALLOW_HTTP_DESTINATIONS: 'true',
    ALLOW_PRIVATE_DESTINATIONS: 'true',
    SWEEP_INTERVAL: '1s',
    LOG_LEVEL: 'warn',
    // The API in the test process encrypted the webhook secrets with this key (or the development default).
    ...(process.env.SECRETS_KEY ? { SECRETS_KEY: process.env.SECRETS_KEY } : {}),
    ...(process.env.SECRETS_KEY_PREVIOUS ? { SECRETS_KEY_PREVIOUS: process.env.SECRETS_KEY_PREVIOUS } : {}),
    ...settings,
  };
}
