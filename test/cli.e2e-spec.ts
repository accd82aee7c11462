import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Receiver } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { eventually } from './support/tenant';

/** A carriage return or an escape (a redrawn line, a cursor or colour code): never in output that is not a terminal. */
// eslint-disable-next-line no-control-regex -- these control characters are what the tests look for
const CONTROL = /[\r\x1b]/;

/** The compiled CLI, as `npx bellhop` runs it: `npm test` builds it first (`npm run build`). */
const MAIN = join(__dirname, '..', 'dist', 'apps', 'cli', 'src', 'main.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const drift = {
  fromVersion: 11,
  toVersion: 12,
  severity: 'breaking',
  changes: { toolsAdded: ['search'], toolsRemoved: [], toolsModified: ['fetch'], breakingCount: 1, warningCount: 0 },
};
const uploaded = (version: number) => ({ version, hash: `sha256:${version}`, toolCount: 3, serverName: 'my-mcp-server', cliVersion: '1.2.0' });

describe('the bellhop CLI against the real API and a real receiver', () => {
  let stack: Stack;
  let receiver: Receiver;
  let home: string;
  let email: string;
  const password = 'correct horse battery';

  /** Runs the compiled CLI in a child process with its own HOME and config directory, and no inherited BELLHOP_* settings. */
  function cli(args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [MAIN, ...args], {
        env: { PATH: process.env.PATH ?? '', HOME: home, XDG_CONFIG_HOME: join(home, 'config'), ...options.env },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(options.input ?? '');
    });
  }

  /** A --json command that must succeed: its parsed stdout. */
  async function json<T = any>(args: string[], options?: { input?: string; env?: Record<string, string> }): Promise<T> {
    const run = await cli([...args, '--json'], options);
    if (run.code !== 0) throw new Error(`bellhop ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
    return JSON.parse(run.stdout) as T;
  }

  function file(name: string, content: string | Buffer): string {
    const path = join(home, name);
    writeFileSync(path, content);
    return path;
  }

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build the CLI first (npm run build, or npx nest build cli)`);
    stack = await startStack({ listen: true });
    receiver = await new Receiver().start();
    home = mkdtempSync(join(tmpdir(), 'bellhop-cli-'));
    email = `cli-${randomBytes(6).toString('hex')}@example.com`;
    await stack.http().post('/auth/signup').send({ email, password, name: 'Cli' }).expect(201);
  }, 60_000);

  afterAll(async () => {
    await receiver?.stop();
    await stack?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  }, 30_000);

  it('walks login → project → webhook → publish → deliveries → replay with progress → stats → verify → logout', async () => {
    // Login, the password on standard input; the token lands in a file only its owner can read.
    const login = await json(['login', '--api', stack.url!, '--email', email, '--password-stdin'], { input: `${password}\n` });
    expect(login.user.email).toBe(email);
    expect(JSON.stringify(login)).not.toContain('"token"');
    const credentials = join(home, 'config', 'bellhop', 'credentials.json');
    expect(statSync(credentials).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, 'config', 'bellhop')).mode & 0o777).toBe(0o700);
    const stored = JSON.parse(readFileSync(credentials, 'utf8'));
    expect(stored).toEqual({ api: stack.url, token: expect.any(String) });

    // From here on the API comes from the stored login.
    expect((await json(['whoami'])).user.email).toBe(email);
    const { project } = await json(['projects', 'create', 'my-mcp-server']);
    expect(project.id).toMatch(/^proj_/);
    expect((await json(['projects', 'list'])).projects.map((p: { id: string }) => p.id)).toContain(project.id);

    const secret = 'whsec_' + randomBytes(32).toString('base64');
    const created = await json(['webhooks', 'create', '--project', project.id, '--url', receiver.url, '--events', 'baseline.drift_detected', '--secret', secret, '--name', 'receiver']);
    expect(created.secret).toBe(secret);
    const webhookId: string = created.webhook.id;
    expect((await json(['webhooks', 'list', '--project', project.id])).webhooks.map((w: { id: string }) => w.id)).toEqual([webhookId]);

    // Publish one event from a file; the receiver gets it.
    const published = await json(['events', 'publish', '--project', project.id, '--event', 'baseline.drift_detected', '--data', `@${file('drift.json', JSON.stringify(drift))}`]);
    expect(published.deliveries).toBe(1);
    await receiver.waitFor(1);

    const delivered = await eventually(async () => {
      const list = await json(['deliveries', 'list', '--project', project.id, '--event-id', published.event.id]);
      return list.deliveries[0]?.status === 'succeeded' ? list.deliveries[0] : undefined;
    });
    const { delivery } = await json(['deliveries', 'get', delivered.id]);
    expect(delivery.attempts[0].response.statusCode).toBe(200);
    expect(delivery.attempts[0].request.body).toBe(receiver.requests[0].body.toString('utf8'));

    // Three events through `events batch` while the receiver is down: they end failed.
    receiver.responder = () => ({ status: 500, body: 'down' });
    const lines = [1, 2, 3].map((i) => JSON.stringify({ event: 'baseline.drift_detected', data: { ...drift, toVersion: 12 + i } })).join('\n');
    const batch = await json(['events', 'batch', '--project', project.id, '--file', file('outage.ndjson', lines + '\n')]);
    expect(batch).toMatchObject({ accepted: 3, total: 3 });
    await eventually(async () => {
      const res = await stack.http().get(`/projects/${project.id}/deliveries?status=failed`).set('Authorization', `Bearer ${stored.token}`).expect(200);
      return res.body.deliveries.length === 3 ? true : undefined;
    });
    expect((await json(['replay', '--webhook', webhookId, '--from', '1h', '--dry-run'])).replay.matched).toBe(3);

    // The receiver is back: replay the failures, following the progress. stderr is a pipe, so the
    // progress is plain lines: no carriage return, no escape code.
    receiver.responder = () => ({ status: 200, body: 'ok' });
    const replay = await cli(['replay', '--webhook', webhookId, '--from', '1h', '--json']);
    expect(replay.code).toBe(0);
    const result = JSON.parse(replay.stdout);
    expect(result.replay).toMatchObject({ status: 'completed', matched: 3, succeeded: 3, failed: 0 });
    expect(replay.stderr).not.toMatch(CONTROL);
    const progress = replay.stderr.trimEnd().split('\n');
    expect(progress.length).toBeGreaterThanOrEqual(1);
    for (const line of progress) expect(line).toMatch(new RegExp(`^replay ${result.replay.id}: \\d+/3 \\(\\d+%\\) \\d+ succeeded, \\d+ failed`));
    expect(progress[progress.length - 1]).toBe(`replay ${result.replay.id}: 3/3 (100%) 3 succeeded, 0 failed: completed`);

    // Stats: the four deliveries, and a human table with a sparkline of 24 hourly buckets.
    const { stats } = await json(['stats', '--webhook', webhookId]);
    expect(stats.deliveries).toMatchObject({ total: 4, succeeded: 4, failed: 0 });
    expect(stats.series).toHaveLength(24);
    const table = await cli(['stats', '--webhook', webhookId]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^deliveries\s+[▁▂▃▄▅▆▇█]{24}\s+\d+$/m);
    expect((await json(['stats', '--project', project.id])).stats.webhooks[0]).toMatchObject({ webhookId });

    // Verify what the receiver really got, in both signature families; then a tampered body.
    const got = receiver.requests[0];
    const body = file('body.json', got.body);
    const bellwether = ['verify', '--secret', secret, '--file', body, '--signature', String(got.headers['x-bellwether-signature'])];
    const standard = ['--webhook-id', String(got.headers['webhook-id']), '--timestamp', String(got.headers['webhook-timestamp']), '--webhook-signature', String(got.headers['webhook-signature'])];
    expect(await json([...bellwether, ...standard])).toMatchObject({ valid: true, results: [{ scheme: 'bellwether', valid: true }, { scheme: 'standard-webhooks', valid: true }] });
    expect((await cli(['verify', '--secret', secret, '--file', body, ...standard])).code).toBe(0);

    const tampered = Buffer.from(got.body);
    tampered[tampered.length - 2] ^= 1;
    const tamperedFile = file('tampered.json', tampered);
    const invalid = await cli(['verify', '--secret', secret, '--file', tamperedFile, '--signature', String(got.headers['x-bellwether-signature']), '--json']);
    expect(invalid.code).toBe(1);
    expect(JSON.parse(invalid.stdout)).toMatchObject({ valid: false });
    expect((await cli(['verify', '--secret', secret, '--file', tamperedFile, ...standard])).code).toBe(1);
    const otherSecret = 'whsec_' + randomBytes(32).toString('base64');
    expect((await cli(['verify', '--secret', otherSecret, '--file', body, '--signature', String(got.headers['x-bellwether-signature'])])).code).toBe(1);

    // Logout revokes the session at the API and deletes the file.
    expect((await json(['logout'])).session).toBe('revoked');
    expect(existsSync(credentials)).toBe(false);
    await stack.http().get('/auth/me').set('Authorization', `Bearer ${stored.token}`).expect(401);
    expect((await cli(['whoami'])).code).toBe(3);
  });

  it('sends a test and waits for it, rotates and reveals the secret, updates, retries and deletes a webhook', async () => {
    const signup = await stack.http().post('/auth/signup').send({ email: `cli-${randomBytes(6).toString('hex')}@example.com`, password, name: 'Manage' }).expect(201);
    const env = { BELLHOP_TOKEN: signup.body.session.token as string, BELLHOP_API: stack.url! };
    const { project } = await json(['projects', 'create', 'manage'], { env });
    const { webhook } = await json(['webhooks', 'create', '--project', project.id, '--url', receiver.url, '--events', 'baseline.uploaded', '--header', 'X-Env: test'], { env });
    expect(webhook.headers).toEqual({ 'X-Env': 'test' });

    const tested = await json(['webhooks', 'test', webhook.id, '--wait'], { env });
    expect(tested.delivery).toMatchObject({ test: true, status: 'succeeded', lastStatusCode: 200 });

    const rotated = await json(['webhooks', 'rotate', webhook.id], { env });
    expect(rotated.secret).toMatch(/^whsec_/);
    expect((await json(['webhooks', 'secret', webhook.id], { env })).secret).toBe(rotated.secret);

    const updated = await json(['webhooks', 'update', webhook.id, '--name', 'paused', '--disable'], { env });
    expect(updated.webhook).toMatchObject({ name: 'paused', enabled: false });
    const retry = await cli(['deliveries', 'retry', tested.delivery.id], { env });
    expect(retry.code).toBe(1);
    expect(retry.stderr).toMatch(/code: webhook_disabled {2}status: 409 {2}requestId: req_/);

    expect((await cli(['webhooks', 'delete', webhook.id], { env })).code).toBe(0);
    expect((await cli(['webhooks', 'get', webhook.id], { env })).code).toBe(1);
  });

  it('publishes a file in batches of 100 with progress lines, and stops at the first refused batch', async () => {
    const signup = await stack.http().post('/auth/signup').send({ email: `cli-${randomBytes(6).toString('hex')}@example.com`, password, name: 'Batch' }).expect(201);
    const env = { BELLHOP_TOKEN: signup.body.session.token as string, BELLHOP_API: stack.url! };
    const { project } = await json(['projects', 'create', 'batches'], { env });

    const events = Array.from({ length: 250 }, (_, i) => JSON.stringify({ event: 'baseline.uploaded', data: uploaded(i + 1), idempotencyKey: `k${i}` }));
    const all = await cli(['events', 'batch', '--project', project.id, '--file', file('250.ndjson', events.join('\n'))], { env });
    expect(all.code).toBe(0);
    expect(all.stdout.trim()).toBe('Accepted 250 of 250 events.');
    expect(all.stderr).not.toMatch(CONTROL);
    const progress = all.stderr.trimEnd().split('\n');
    expect(progress[0]).toBe('publishing: 0/250 (0%)');
    expect(progress[progress.length - 1]).toBe('publishing: 250/250 (100%)');

    // Line 150 (in the second batch) is not a valid baseline.uploaded: the first batch goes in, nothing after.
    const broken = [...events];
    broken[149] = JSON.stringify({ event: 'baseline.uploaded', data: { version: 'one' }, idempotencyKey: 'x149' });
    const refused = await cli(['events', 'batch', '--project', project.id, '--file', file('broken.ndjson', broken.join('\n')), '--json'], { env });
    expect(refused.code).toBe(1);
    const answer = JSON.parse(refused.stdout);
    expect(answer).toMatchObject({ accepted: 100, total: 250, refused: { fromLine: 101, toLine: 200, error: { code: 'validation_failed' } } });
    // The first 100 were replays of the earlier run (same keys): accepted, nothing published twice.
    expect(answer.events.every((e: { replayed: boolean }) => e.replayed)).toBe(true);
    expect(refused.stderr).toMatch(/code: validation_failed {2}status: 422 {2}requestId: req_/);
    expect(refused.stderr).toContain('line 150: /');
  });

  it('exits 1 with the error shape on a refused request, 3 on a bad token, 4 when the API is down, 2 on a usage error', async () => {
    const signup = await stack.http().post('/auth/signup').send({ email: `cli-${randomBytes(6).toString('hex')}@example.com`, password, name: 'Errors' }).expect(201);
    const env = { BELLHOP_TOKEN: signup.body.session.token as string, BELLHOP_API: stack.url! };

    const missing = await cli(['webhooks', 'get', 'wh_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T'], { env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^Error: Webhook not found\n {2}code: not_found {2}status: 404 {2}requestId: req_\S+$/m);

    expect((await cli(['whoami'], { env: { ...env, BELLHOP_TOKEN: 'bht_not_a_token' } })).code).toBe(3);
    expect((await cli(['whoami'], { env: { BELLHOP_API: stack.url! } })).code).toBe(3);

    const closed = await freePort();
    const down = await cli(['projects', 'list', '--api', `http://127.0.0.1:${closed}`], { env });
    expect(down.code).toBe(4);
    expect(down.stderr).toContain('Could not reach the API');

    expect((await cli(['webhooks', 'create', '--project', 'proj_x'], { env })).code).toBe(2);
    expect((await cli(['events', 'publish', '--project', 'proj_x', '--event', 'baseline.uploaded', '--data', '{not json'], { env })).code).toBe(2);
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Exit codes:');
  });
});

/** A port nothing listens on: taken from the kernel, then released. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
