import { ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { request } from 'undici';
import { TEST_REDIS_URL } from './support/env';
import { assertWorkerBuilt, freePort, startWorkerProcess, WorkerProcess } from './support/processes';
import { Receiver } from './support/receiver';
import { createDatabaseFromTemplate, dropDatabase } from './support/stack';
import { eventually } from './support/tenant';
import { documented } from './support/payloads';

const API_MAIN = path.join(__dirname, '..', 'dist', 'apps', 'api', 'src', 'main.js');

/** The built API as a child process, with its log output captured. */
async function startApiProcess(env: Record<string, string>): Promise<{ url: string; child: ChildProcess; output: () => string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [API_MAIN], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString('utf8')));
  const url = `http://127.0.0.1:${port}`;
  await eventually(async () => {
    const res = await request(`${url}/health/ready`);
    await res.body.dump();
    return res.statusCode === 200 ? true : undefined;
  }, 30_000, 100);
  return { url, child, output: () => log };
}

describe('secrets stay out of logs, lists and job data', () => {
  let api: Awaited<ReturnType<typeof startApiProcess>>;
  let worker: WorkerProcess;
  let receiver: Receiver;
  let databaseUrl: string;

  beforeAll(async () => {
    assertWorkerBuilt();
    databaseUrl = await createDatabaseFromTemplate(`bhsecrets${randomBytes(3).toString('hex')}`);
    const env = {
      NODE_ENV: 'production',
      // The most talkative level, so that anything that could leak is written.
      LOG_LEVEL: 'trace',
      DATABASE_URL: databaseUrl,
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: `bhsecrets${randomBytes(3).toString('hex')}`,
      JWT_SECRET: randomBytes(32).toString('hex'),
      SECRETS_KEY: randomBytes(32).toString('base64'),
      ALLOW_HTTP_DESTINATIONS: 'true',
      ALLOW_PRIVATE_DESTINATIONS: 'true',
      RETRY_SCHEDULE: '100ms,100ms',
      SWEEP_INTERVAL: '1s',
      RATE_LIMIT: '100000/1m',
      AUTH_RATE_LIMIT: '100000/1m',
    };
    receiver = await new Receiver().start();
    api = await startApiProcess(env);
    worker = await startWorkerProcess({ env, name: 'secrets-worker' });
  });

  afterAll(async () => {
    api?.child.kill('SIGTERM');
    await worker?.signal('SIGTERM').catch(() => undefined);
    await receiver?.stop();
    if (databaseUrl) await dropDatabase(databaseUrl);
  });

  async function call(method: string, urlPath: string, body?: unknown, token?: string) {
    const res = await request(`${api.url}${urlPath}`, {
      method: method as 'GET',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, text, json: text ? JSON.parse(text) : null };
  }

  it('never writes a webhook secret, a password or a session token to either process log', async () => {
    const password = `pw-${randomBytes(8).toString('hex')}`;
    const signup = await call('POST', '/auth/signup', { email: `s-${randomBytes(4).toString('hex')}@example.com`, password, name: 'Sec' });
    expect(signup.status).toBe(201);
    const token = signup.json.session.token as string;
    const project = await call('POST', '/projects', { name: 'p' }, token);
    // The receiver fails the first attempt, so that failures and retries are logged too.
    receiver.responder = (_req, index) => (index === 0 ? { status: 500, body: 'no' } : { status: 200 });
    const created = await call('POST', `/projects/${project.json.project.id}/webhooks`, { url: `${receiver.url}/s`, events: ['baseline.uploaded'] }, token);
    const first = created.json.secret as string;
    const webhookId = created.json.webhook.id as string;
    const revealed = await call('GET', `/webhooks/${webhookId}/secret`, undefined, token);
    expect(revealed.json.secret).toBe(first);
    const rotated = await call('POST', `/webhooks/${webhookId}/secret/rotate`, undefined, token);
    const second = rotated.json.secret as string;
    await call('POST', `/projects/${project.json.project.id}/events`, { event: 'baseline.uploaded', data: documented('baseline.uploaded', { n: 1 }) }, token);
    await receiver.waitFor(2);
    await call('POST', `/webhooks/${webhookId}/test?wait=true`, {}, token);
    await eventually(async () => ((await call('GET', `/webhooks/${webhookId}/deliveries`, undefined, token)).json.deliveries.every((d: any) => d.status === 'succeeded') ? true : undefined));

    // Lists and the history show no secret either.
    for (const listPath of [`/projects/${project.json.project.id}/webhooks`, `/webhooks/${webhookId}`, `/webhooks/${webhookId}/deliveries`, `/organizations/${signup.json.organization.id}/audit-log`]) {
      const res = await call('GET', listPath, undefined, token);
      expect(res.status).toBe(200);
      expect(res.text).not.toContain(first.slice(6));
      expect(res.text).not.toContain(second.slice(6));
    }

    await new Promise((resolve) => setTimeout(resolve, 300));
    const logs = api.output() + worker.output();
    expect(logs.length).toBeGreaterThan(1000); // the processes did log (at trace level)
    for (const secret of [first, second]) {
      expect(logs).not.toContain(secret);
      expect(logs).not.toContain(secret.slice(6)); // the base64 part alone
    }
    expect(logs).not.toContain(password);
    expect(logs).not.toContain(token);
    expect(logs).not.toContain(token.split('.')[2]);
  });
});
