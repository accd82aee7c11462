import { spawn } from 'node:child_process';
import http from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sign } from '@octokit/webhooks-methods';
import { Client } from 'pg';
import { BELLHOP_CONFIG, BellhopConfig } from '@bellhop/config';
import { bellwetherSignature, decryptSecret, encryptSecret, secretsKeyId } from '@bellhop/signing';
import { MAX_CONCURRENT_INGEST_READS, MAX_CONCURRENT_INGEST_READS_PER_ADDRESS } from '../apps/api/src/common/rate-limit';
import { INGEST_BODY_DEADLINE } from '../apps/api/src/sources/ingest-body';
import { runCaptured } from '../apps/cli/src/testing';
import { Receiver } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { eventually } from './support/tenant';

/** GitHub's documented example push payload and GitLab's, byte for byte as their docs show them. */
const GITHUB_PUSH = readFileSync(path.join(__dirname, 'fixtures', 'github-push.json'), 'utf8');
const GITLAB_PUSH = readFileSync(path.join(__dirname, 'fixtures', 'gitlab-push.json'), 'utf8');
const REENCRYPT = path.join(__dirname, '..', 'scripts', 'reencrypt-secrets.js');
const MiB = 1024 * 1024;

const errorShape = (statusCode: number, code: string) =>
  expect.objectContaining({ statusCode, code, error: expect.any(String), details: expect.any(Array), requestId: expect.stringMatching(/^req_/) });

interface Tenant {
  auth: { Authorization: string };
  token: string;
  organizationId: string;
  projectId: string;
  from: string;
}

describe('inbound sources (GitHub and GitLab)', () => {
  // Secrets are stored under key B; key A is being retired (SECRETS_KEY_PREVIOUS).
  const keyA = randomBytes(32).toString('base64');
  const keyB = randomBytes(32).toString('base64');
  let stack: Stack;
  let receiver: Receiver;
  let db: Client;
  let addresses = 0;

  beforeAll(async () => {
    receiver = await new Receiver().start();
    // AUTH_RATE_LIMIT is also the budget of failed verifications per source and address: kept low
    // so that its test is short. Every test acts from addresses of its own (X-Forwarded-For from
    // loopback is trusted), so that no test spends another's budget.
    stack = await startStack({ listen: true, env: { PUBLIC_URL: 'https://bellhop.example.com/', SECRETS_KEY: keyB, SECRETS_KEY_PREVIOUS: keyA, AUTH_RATE_LIMIT: '6/1m' } });
    db = new Client({ connectionString: stack.databaseUrl });
    await db.connect();
  });

  /** Files a test leaves for afterAll to remove. */
  const afterAllCleanups: Array<() => void> = [];

  afterAll(async () => {
    for (const cleanup of afterAllCleanups) cleanup();
    await db?.end();
    await stack?.stop();
    await receiver?.stop();
  });

  /** A client address of its own (from TEST-NET-2). */
  const address = () => `198.51.100.${++addresses}`;

  /** A fresh user with their own organization and a project, acting from an address of its own. */
  async function newTenant(name = 'Src'): Promise<Tenant> {
    const from = address();
    const email = `${name.toLowerCase()}-${randomBytes(6).toString('hex')}@example.com`;
    const signup = await stack.http().post('/auth/signup').set('X-Forwarded-For', from).send({ email, password: 'correct horse battery', name }).expect(201);
    const auth = { Authorization: `Bearer ${signup.body.session.token}` };
    const project = await stack.http().post('/projects').set('X-Forwarded-For', from).set(auth).send({ name: 'hello-world' }).expect(201);
    return { auth, token: signup.body.session.token, organizationId: signup.body.organization.id, projectId: project.body.project.id, from };
  }

  async function createSource(tenant: Tenant, type: 'github' | 'gitlab', extra: Record<string, unknown> = {}) {
    const res = await stack.http().post(`/projects/${tenant.projectId}/sources`).set(tenant.auth).send({ name: `Codertocat/Hello-World on ${type}`, type, ...extra }).expect(201);
    return { source: res.body.source as { id: string; url: string }, secret: res.body.secret as string };
  }

  /** A delivery as GitHub sends it (the headers of GitHub's documented example), signed by @octokit/webhooks-methods as GitHub signs. */
  async function fromGitHub(sourceId: string, options: { secret: string; body?: string; event?: string; delivery?: string; from?: string; signature?: string | null; contentType?: string }) {
    const body = options.body ?? GITHUB_PUSH;
    let req = stack
      .http()
      .post(`/ingest/${sourceId}`)
      .set('X-Forwarded-For', options.from ?? '140.82.115.1')
      .set('Content-Type', options.contentType ?? 'application/json')
      .set('User-Agent', 'GitHub-Hookshot/044aadd')
      .set('X-GitHub-Event', options.event ?? 'push')
      .set('X-GitHub-Delivery', options.delivery ?? randomUUID())
      .set('X-GitHub-Hook-ID', '292430182')
      .set('X-GitHub-Hook-Installation-Target-ID', '79929171')
      .set('X-GitHub-Hook-Installation-Target-Type', 'repository');
    const signature = options.signature === undefined ? await sign(options.secret, body) : options.signature;
    if (signature !== null) req = req.set('X-Hub-Signature-256', signature);
    return req.send(body);
  }

  /** A delivery as GitLab sends it: the secret token as it is, and the event's UUID. */
  function fromGitLab(sourceId: string, options: { token: string | null; body?: string; uuid?: string; from?: string }) {
    let req = stack
      .http()
      .post(`/ingest/${sourceId}`)
      .set('X-Forwarded-For', options.from ?? '34.74.90.64')
      .set('Content-Type', 'application/json')
      .set('User-Agent', 'GitLab/17.6.0')
      .set('X-Gitlab-Event', 'Push Hook')
      .set('X-Gitlab-Event-UUID', options.uuid ?? randomUUID())
      .set('X-Gitlab-Webhook-UUID', '2a3a9f43-7e39-4b94-a8a3-6a1e5f1e3c2d')
      .set('X-Gitlab-Instance', 'https://gitlab.example.com');
    if (options.token !== null) req = req.set('X-Gitlab-Token', options.token);
    return req.send(options.body ?? GITLAB_PUSH);
  }

  async function subscribe(tenant: Tenant, events: string[], name: string) {
    const res = await stack.http().post(`/projects/${tenant.projectId}/webhooks`).set(tenant.auth).send({ url: `${receiver.url}/${name}`, events, name }).expect(201);
    return { id: res.body.webhook.id as string, secret: res.body.secret as string, path: `/${name}` };
  }

  async function eventsOf(tenant: Tenant) {
    const res = await stack.http().get(`/projects/${tenant.projectId}/events`).set(tenant.auth).expect(200);
    return res.body.events as Array<{ id: string; event: string }>;
  }

  async function storedCiphertext(sourceId: string): Promise<string> {
    const { rows } = await db.query<{ secret_ciphertext: string }>('SELECT secret_ciphertext FROM sources WHERE id = $1', [sourceId]);
    return rows[0].secret_ciphertext;
  }

  it('creates a source with its URL under PUBLIC_URL and the secret shown once, stored encrypted, listed without it, and audited', async () => {
    const a = await newTenant();
    const created = await stack.http().post(`/projects/${a.projectId}/sources`).set(a.auth).send({ name: 'Codertocat/Hello-World', type: 'github' }).expect(201);
    const { source, secret } = created.body;
    expect(created.body).toEqual({
      source: {
        id: expect.stringMatching(/^src_[0-9A-HJKMNP-TV-Z]{26}$/),
        projectId: a.projectId,
        name: 'Codertocat/Hello-World',
        type: 'github',
        url: `https://bellhop.example.com/ingest/${source.id}`,
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      },
      secret: expect.stringMatching(/^[0-9a-f]{64}$/),
    });

    // At rest: a v2 ciphertext under SECRETS_KEY, bound to the source id, never the secret.
    const ciphertext = await storedCiphertext(source.id);
    expect(ciphertext.startsWith(`v2.${secretsKeyId(Buffer.from(keyB, 'base64'))}.`)).toBe(true);
    expect(ciphertext).not.toContain(secret);
    expect(decryptSecret(ciphertext, Buffer.from(keyB, 'base64'), source.id)).toBe(secret);
    expect(() => decryptSecret(ciphertext, Buffer.from(keyB, 'base64'), 'src_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T')).toThrow();

    // A secret of the caller's choosing, for a GitLab source.
    const chosen = 'my-own-gitlab-token-0123456789';
    const gitlab = await createSource(a, 'gitlab', { secret: chosen });
    expect(gitlab.secret).toBe(chosen);

    const list = await stack.http().get(`/projects/${a.projectId}/sources`).set(a.auth).expect(200);
    expect(list.body).toEqual({ sources: [expect.objectContaining({ id: gitlab.source.id, type: 'gitlab' }), source], nextCursor: null });
    expect(list.text).not.toContain(secret);
    expect(list.text).not.toContain(chosen);

    const log = await stack.http().get(`/organizations/${a.organizationId}/audit-log`).set(a.auth).expect(200);
    expect(log.body.entries).toContainEqual(expect.objectContaining({ action: 'source.created', target: { type: 'source', id: source.id }, requestId: created.headers['x-request-id'] }));
    expect(log.text).not.toContain(secret);

    for (const body of [{ name: 'x', type: 'bitbucket' }, { name: '', type: 'github' }, { name: 'x', type: 'github', secret: 'short' }, { name: 'x', type: 'github', secret: 'has spaces in it, sixteen+' }, { type: 'github' }]) {
      const res = await stack.http().post(`/projects/${a.projectId}/sources`).set(a.auth).send(body);
      expect(res.body).toEqual(errorShape(422, 'validation_failed'));
    }

    // A member reads sources but cannot create or delete them.
    const token = await stack.http().post(`/organizations/${a.organizationId}/api-tokens`).set(a.auth).send({ name: 'ci', role: 'member' }).expect(201);
    const member = { Authorization: `Bearer ${token.body.token}` };
    await stack.http().get(`/projects/${a.projectId}/sources`).set(member).expect(200);
    expect((await stack.http().post(`/projects/${a.projectId}/sources`).set(member).send({ name: 'x', type: 'github' })).body).toEqual(errorShape(403, 'forbidden'));
    expect((await stack.http().delete(`/sources/${source.id}`).set(member)).body).toEqual(errorShape(403, 'forbidden'));
  });

  it("publishes GitHub's signed push as github.push to github.push and github.* subscribers, signed by Bellhop, and answers a redelivery 200 with the same event", async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'github');
    const byName = await subscribe(a, ['github.push'], 'by-name');
    const family = await subscribe(a, ['github.*'], 'family');
    await subscribe(a, ['gitlab.*'], 'gitlab-only');
    await subscribe(a, ['baseline.drift_detected'], 'baseline-only');
    const before = receiver.requests.length;

    const delivery = randomUUID();
    const first = await fromGitHub(source.id, { secret, delivery });
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ eventId: expect.stringMatching(/^evt_/) });

    await receiver.waitFor(before + 2);
    const received = await eventually(async () => {
      const mine = receiver.requests.slice(before).filter((r) => JSON.parse(r.body.toString('utf8')).project?.id === a.projectId);
      return mine.length >= 2 ? mine : undefined;
    });
    expect(received.map((r) => r.url).sort()).toEqual([byName.path, family.path].sort());
    for (const req of received) {
      const hook = req.url === byName.path ? byName : family;
      expect(req.headers['x-bellwether-event']).toBe('github.push');
      expect(req.headers['x-bellwether-signature']).toBe(bellwetherSignature(hook.secret, req.body));
      const envelope = JSON.parse(req.body.toString('utf8'));
      expect(envelope).toEqual({ event: 'github.push', timestamp: expect.any(String), project: { id: a.projectId, name: 'hello-world' }, data: JSON.parse(GITHUB_PUSH) });
    }

    // GitHub's "Redeliver": the same X-GitHub-Delivery, the same event, nothing sent twice.
    const again = await fromGitHub(source.id, { secret, delivery });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ eventId: first.body.eventId });
    const event = await stack.http().get(`/events/${first.body.eventId}`).set(a.auth).expect(200);
    expect(event.body.event).toMatchObject({ event: 'github.push', payload: { data: JSON.parse(GITHUB_PUSH) } });
    expect(event.body.event.deliveries).toHaveLength(2);
    expect((await eventsOf(a)).map((e) => e.event)).toEqual(['github.push']);

    // github.ping, GitHub's first delivery to a new hook, is answered and published like any other.
    const ping = await fromGitHub(source.id, { secret, event: 'ping', body: JSON.stringify({ zen: 'Design for failure.', hook_id: 292430182, hook: { type: 'Repository', id: 292430182, events: ['push'] } }) });
    expect(ping.status).toBe(202);
    expect((await eventsOf(a)).map((e) => e.event)).toEqual(['github.ping', 'github.push']);

    // Source types are published by sources only.
    const refused = await stack.http().post(`/projects/${a.projectId}/events`).set(a.auth).send({ event: 'github.push', data: { ref: 'refs/heads/main' } });
    expect(refused.body).toEqual(errorShape(422, 'validation_failed'));

    // "Send test" works for their subscribers too: GitHub's own kind of test, its ping payload.
    for (const [hook, type] of [
      [byName, 'github.push'],
      [family, 'github.ping'],
    ] as const) {
      const sent = await stack.http().post(`/webhooks/${hook.id}/test?wait=true`).set(a.auth).send({});
      expect(sent.status).toBe(200);
      expect(sent.body.delivery).toMatchObject({ event: type, test: true, status: 'succeeded' });
    }
  });

  it("verifies GitLab's X-Gitlab-Token, publishes the push as gitlab.push, and keeps X-Gitlab-Event-UUID scoped to its source", async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'gitlab');
    const other = await createSource(a, 'gitlab');
    const gitlabHook = await subscribe(a, ['gitlab.push'], 'gitlab-push');
    await subscribe(a, ['github.*'], 'github-only');
    const before = receiver.requests.length;

    const uuid = randomUUID();
    const first = await fromGitLab(source.id, { token: secret, uuid });
    expect(first.status).toBe(202);
    await receiver.waitFor(before + 1);
    const req = await eventually(async () => receiver.requests.slice(before).find((r) => r.url === gitlabHook.path && JSON.parse(r.body.toString('utf8')).project.id === a.projectId));
    expect(JSON.parse(req.body.toString('utf8'))).toMatchObject({ event: 'gitlab.push', data: JSON.parse(GITLAB_PUSH) });
    expect(req.headers['x-bellwether-signature']).toBe(bellwetherSignature(gitlabHook.secret, req.body));

    const again = await fromGitLab(source.id, { token: secret, uuid });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ eventId: first.body.eventId });
    // The same UUID at another source is another delivery.
    const elsewhere = await fromGitLab(other.source.id, { token: other.secret, uuid });
    expect(elsewhere.status).toBe(202);
    expect(elsewhere.body.eventId).not.toBe(first.body.eventId);

    for (const token of [null, '', other.secret, secret.slice(0, -1), `${secret}x`]) {
      const res = await fromGitLab(source.id, { token, from: address() });
      expect(res.body).toEqual(errorShape(401, 'unauthenticated'));
    }
    // GitLab's token is not GitHub's signature, and the other way round.
    const signed = await fromGitHub(source.id, { secret, from: address() });
    expect(signed.body).toEqual(errorShape(401, 'unauthenticated'));
    expect((await eventsOf(a)).map((e) => e.event)).toEqual(['gitlab.push', 'gitlab.push']);
  });

  it('refuses a bad or missing signature with 401 and an unknown, deleted or malformed source with 404, neither saying which, publishing nothing', async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'github');
    const from = address();
    const body = GITHUB_PUSH;
    const unauthorized = [
      await fromGitHub(source.id, { secret: 'not the secret at all', from }),
      await fromGitHub(source.id, { secret, signature: null, from }),
      await fromGitHub(source.id, { secret, signature: (await sign(secret, body)).replace('sha256=', 'sha1='), from }),
      // Signed, then altered on the way.
      await fromGitHub(source.id, { secret, signature: await sign(secret, body), body: body.replace('Hello-World', 'Hello-Wor1d'), from }),
    ];
    for (const res of unauthorized) expect(res.body).toEqual(errorShape(401, 'unauthenticated'));
    expect(new Set(unauthorized.map((res) => res.body.error)).size).toBe(1);

    const gone = await createSource(a, 'github');
    await stack.http().delete(`/sources/${gone.source.id}`).set(a.auth).expect(204);
    const unknown = [
      await fromGitHub('src_01JH3Y8ZK6Q2WQ4M7N8P9R0S1T', { secret, from }),
      await fromGitHub(gone.source.id, { secret: gone.secret, from }),
      await fromGitHub('src_nope', { secret, from }),
      await fromGitHub(a.projectId, { secret, from }),
    ];
    for (const res of unknown) expect(res.body).toEqual(errorShape(404, 'not_found'));
    expect(new Set(unknown.map((res) => res.body.error)).size).toBe(1);
    expect(await eventsOf(a)).toEqual([]);
  });

  it('verifies the raw body before parsing it: 5 MiB at most (413 above), invalid JSON only after a valid signature, a form-encoded delivery too', async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'github');
    const from = address();

    // Exactly 5 MiB, five times the JSON routes' BODY_LIMIT_BYTES: accepted, and stored as sent.
    const pad = 5 * MiB - JSON.stringify({ pad: '' }).length;
    const largest = JSON.stringify({ pad: 'x'.repeat(pad) });
    expect(Buffer.byteLength(largest)).toBe(5 * MiB);
    const accepted = await fromGitHub(source.id, { secret, body: largest, event: 'push', from });
    expect(accepted.status).toBe(202);
    const tooLarge = await fromGitHub(source.id, { secret, body: JSON.stringify({ pad: 'x'.repeat(pad + 1) }), from });
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body).toEqual(errorShape(413, 'payload_too_large'));

    const notJson = '{"ref": "refs/heads/main",';
    expect((await fromGitHub(source.id, { secret, body: notJson, from })).body).toEqual(errorShape(400, 'bad_request'));
    expect((await fromGitHub(source.id, { secret: 'wrong secret', body: notJson, from })).body).toEqual(errorShape(401, 'unauthenticated'));
    expect((await fromGitHub(source.id, { secret, body: '[1, 2, 3]', from })).body).toEqual(errorShape(422, 'validation_failed'));
    expect((await fromGitHub(source.id, { secret, body: `${'['.repeat(100)}${']'.repeat(100)}`, from })).body).toEqual(errorShape(400, 'bad_request'));
    expect((await fromGitHub(source.id, { secret, event: 'Push Hook', from })).body).toEqual(errorShape(422, 'validation_failed'));

    // GitHub's other content type: the form as sent is signed, the JSON is in its payload field.
    const form = new URLSearchParams({ payload: GITHUB_PUSH }).toString();
    const formed = await fromGitHub(source.id, { secret, body: form, contentType: 'application/x-www-form-urlencoded', from });
    expect(formed.status).toBe(202);
    const event = await stack.http().get(`/events/${formed.body.eventId}`).set(a.auth).expect(200);
    expect(event.body.event.payload.data).toEqual(JSON.parse(GITHUB_PUSH));
    expect((await eventsOf(a)).map((e) => e.event)).toEqual(['github.push', 'github.push']);
  });

  it("answers another organization's source 404 on DELETE and its project's list 404, and deletes one's own with an audit entry", async () => {
    const a = await newTenant('Alice');
    const b = await newTenant('Bob');
    const { source, secret } = await createSource(a, 'github');
    for (const res of [await stack.http().delete(`/sources/${source.id}`).set(b.auth), await stack.http().get(`/projects/${a.projectId}/sources`).set(b.auth)]) {
      expect(res.body).toEqual(errorShape(404, 'not_found'));
    }
    expect((await fromGitHub(source.id, { secret })).status).toBe(202);

    const removed = await stack.http().delete(`/sources/${source.id}`).set(a.auth).expect(204);
    expect((await stack.http().get(`/projects/${a.projectId}/sources`).set(a.auth).expect(200)).body.sources).toEqual([]);
    expect((await stack.http().delete(`/sources/${source.id}`).set(a.auth)).body).toEqual(errorShape(404, 'not_found'));
    const log = await stack.http().get(`/organizations/${a.organizationId}/audit-log`).set(a.auth).expect(200);
    expect(log.body.entries).toContainEqual(expect.objectContaining({ action: 'source.deleted', target: { type: 'source', id: source.id }, requestId: removed.headers['x-request-id'] }));
    // Its event stays.
    expect((await eventsOf(a)).map((e) => e.event)).toEqual(['github.push']);
  });

  it("bounds failed verifications per source and address: past AUTH_RATE_LIMIT failures get 429, while a delivery that verifies is served, from the same address too", async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'github');
    const config = stack.api.get<BellhopConfig>(BELLHOP_CONFIG);
    const limited = jest.replaceProperty(config, 'authRateLimit', { limit: 3, windowMs: 60_000 });
    try {
      // GitHub sends every customer's hooks from a small shared pool of addresses: an attacker there
      // who knows the source's URL must not lock its real deliveries out.
      const shared = address();
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await fromGitHub(source.id, { secret: 'guess', from: shared })).status);
      expect(statuses).toEqual([401, 401, 401]);
      const over = await fromGitHub(source.id, { secret: 'guess', from: shared });
      expect(over.body).toEqual(errorShape(429, 'rate_limited'));
      expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
      expect((await fromGitHub(source.id, { secret, from: shared })).status).toBe(202);
      expect((await fromGitHub(source.id, { secret: 'guess', from: shared })).status).toBe(429);
      // Another address has a budget of its own.
      expect((await fromGitHub(source.id, { secret: 'guess' })).status).toBe(401);
    } finally {
      limited.restore();
    }
    expect((await eventsOf(a)).map((e) => e.event)).toEqual(['github.push']);

    // Guessing source ids counts as failed authentication of the address: past the budget,
    // unknown ids are refused before their body is read, while a source that exists is still served.
    const guesser = address();
    const guesses: number[] = [];
    for (let i = 0; i < 7; i++) guesses.push((await fromGitHub(`src_01JH3Y8ZK6Q2WQ4M7N8P9R0S${String(i).padStart(2, '0')}`, { secret, from: guesser })).status);
    expect(guesses).toEqual([404, 404, 404, 404, 404, 404, 429]);
    expect((await fromGitHub('src_01JH3Y8ZK6Q2WQ4M7N8P9R0S99', { secret, from: guesser, body: JSON.stringify({ pad: 'x'.repeat(6 * MiB) }) })).status).toBe(429);
    expect((await fromGitHub(source.id, { secret, from: guesser })).status).toBe(202);
  });

  it('refuses a body of a source while MAX_CONCURRENT_INGEST_READS of its bodies are being read, with 429 and Retry-After 1', async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'github');
    const url = new URL(`/ingest/${source.id}`, stack.url!);
    // Deliveries whose bodies never end: each holds a read of the source.
    const open = Array.from({ length: MAX_CONCURRENT_INGEST_READS }, () => {
      const req = http.request(url, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'X-Forwarded-For': address() } });
      req.on('error', () => undefined);
      req.write('{"pad": "');
      return req;
    });
    try {
      const refused = await eventually(async () => {
        const res = await fromGitHub(source.id, { secret, from: address() });
        return res.status === 429 ? res : undefined;
      });
      expect(refused.body).toEqual(errorShape(429, 'rate_limited'));
      expect(refused.headers['retry-after']).toBe('1');
    } finally {
      for (const req of open) req.destroy();
    }
    // The reads end with their connections.
    const served = await eventually(async () => {
      const res = await fromGitHub(source.id, { secret });
      return res.status === 202 ? res : undefined;
    });
    expect(served.status).toBe(202);
  });

  it("counts accepted deliveries against the source's INGEST_RATE_LIMIT, a redelivery taking nothing", async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'gitlab');
    const other = await createSource(a, 'gitlab');
    const config = stack.api.get<BellhopConfig>(BELLHOP_CONFIG);
    const limited = jest.replaceProperty(config, 'ingestRateLimit', { limit: 2, windowMs: 60_000 });
    try {
      const uuid = randomUUID();
      expect((await fromGitLab(source.id, { token: secret, uuid })).status).toBe(202);
      expect((await fromGitLab(source.id, { token: secret, uuid })).status).toBe(200);
      expect((await fromGitLab(source.id, { token: secret })).status).toBe(202);
      // A captured token replayed with fresh delivery ids.
      const over = await fromGitLab(source.id, { token: secret });
      expect(over.body).toEqual(errorShape(429, 'rate_limited'));
      expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
      expect((await fromGitLab(source.id, { token: secret, uuid })).status).toBe(200);
      // Each source has a budget of its own.
      expect((await fromGitLab(other.source.id, { token: other.secret })).status).toBe(202);
    } finally {
      limited.restore();
    }
    expect(await eventsOf(a)).toHaveLength(3);
  });

  it('ends an endless chunked body at once past 5 MiB: 413 with Connection: close, not read to the end', async () => {
    const a = await newTenant();
    const { source } = await createSource(a, 'github');
    const started = Date.now();
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const req = http.request(new URL(`/ingest/${source.id}`, stack.url!), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'X-Forwarded-For': address() },
    });
    let writing = true;
    const answered = new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      req.on('response', (res) => {
        writing = false;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (data: string) => (body += data));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        res.on('error', reject);
      });
      req.on('error', (err) => (writing ? reject(err) : undefined));
    });
    // Up to 20 MiB, then more for as long as it takes: the body never ends.
    const pump = () => {
      while (writing && req.write(chunk));
      if (writing) req.once('drain', pump);
    };
    pump();
    const res = await answered;
    req.destroy();
    expect(res.status).toBe(413);
    expect(res.headers.connection).toBe('close');
    expect(JSON.parse(res.body)).toEqual(errorShape(413, 'payload_too_large'));
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('answers a declared body over 5 MiB with 413 that the sender receives, not a reset, while it still sends the body', async () => {
    const a = await newTenant();
    const { source } = await createSource(a, 'github');
    const dir = mkdtempSync(path.join(tmpdir(), 'bellhop-ingest-'));
    const file = path.join(dir, 'big.json');
    writeFileSync(file, Buffer.alloc(8 * MiB, 'x'));
    afterAllCleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    // As curl sends it: with `Expect: 100-continue`, and without.
    for (const expectHeader of ['Expect: 100-continue', 'Expect:']) {
      for (let i = 0; i < 5; i++) {
        const args = ['-sS', '-o', '-', '-w', '\n%{http_code}', '--data-binary', `@${file}`, '-H', 'Content-Type: application/json', '-H', expectHeader, '-H', `X-Forwarded-For: ${address()}`, `${stack.url}/ingest/${source.id}`];
        const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const curl = spawn('curl', args);
          let stdout = '';
          let stderr = '';
          curl.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
          curl.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
          curl.on('close', (exit) => resolve({ code: exit, stdout, stderr }));
        });
        expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
        const [body, status] = stdout.split('\n');
        expect(status).toBe('413');
        expect(JSON.parse(body)).toEqual(errorShape(413, 'payload_too_large'));
      }
    }
  });

  it('answers a path that names no source 404 without reading its body or taking a read, and counts a percent-encoded id as its source', async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'github');
    // Answered before the body is sent: no read of a body that cannot be delivered.
    for (const pathname of ['/ingest/anything', '/ingest/a/b', `/ingest/${source.id}/x`, '/ingest/%E0%A4%A']) {
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(new URL(pathname, stack.url!), {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'Content-Length': String(4 * MiB), 'X-Forwarded-For': address() },
        });
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (data: string) => (text += data));
          res.on('end', () => resolve({ status: res.statusCode!, body: text }));
        });
        req.on('error', reject);
        req.flushHeaders();
      });
      expect(answer.status).toBe(404);
      expect(JSON.parse(answer.body)).toEqual(errorShape(404, 'not_found'));
    }
    // `%73rc_…` is the same source as `src_…`, and shares its reads.
    const encoded = `/ingest/%73${source.id.slice(1)}`;
    const open = Array.from({ length: MAX_CONCURRENT_INGEST_READS }, () => {
      const req = http.request(new URL(encoded, stack.url!), { method: 'POST', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'X-Forwarded-For': address() } });
      req.on('error', () => undefined);
      req.write('{"pad": "');
      return req;
    });
    try {
      const refused = await eventually(async () => {
        const res = await fromGitHub(source.id, { secret, from: address() });
        return res.status === 429 ? res : undefined;
      });
      expect(refused.body).toEqual(errorShape(429, 'rate_limited'));
    } finally {
      for (const req of open) req.destroy();
    }
    const served = await eventually(async () => {
      const res = await stack.http().post(encoded).set('X-Forwarded-For', '140.82.115.1').set('Content-Type', 'application/json').set('X-GitHub-Event', 'push').set('X-GitHub-Delivery', randomUUID()).set('X-Hub-Signature-256', await sign(secret, GITHUB_PUSH)).send(GITHUB_PUSH);
      return res.status === 202 ? res : undefined;
    });
    expect(served.status).toBe(202);
  });

  it("lets one address hold MAX_CONCURRENT_INGEST_READS_PER_ADDRESS of a source's reads, so that another's signed delivery is served", async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'github');
    const url = new URL(`/ingest/${source.id}`, stack.url!);
    const slow = address();
    const hold = () => {
      const req = http.request(url, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'X-Forwarded-For': slow } });
      req.on('error', () => undefined);
      req.write('{"pad": "');
      return req;
    };
    const open = Array.from({ length: MAX_CONCURRENT_INGEST_READS }, hold);
    try {
      // The address's own further deliveries are refused once it holds its share.
      const refused = await eventually(async () => {
        const res = await fromGitHub(source.id, { secret, from: slow });
        return res.status === 429 ? res : undefined;
      });
      expect(refused.body).toEqual(errorShape(429, 'rate_limited'));
      expect((await fromGitHub(source.id, { secret, from: address() })).status).toBe(202);
    } finally {
      for (const req of open) req.destroy();
    }
  });

  it('answers a body that has not arrived by the ingest deadline 408, freeing its read', async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'github');
    const shortened = jest.replaceProperty(INGEST_BODY_DEADLINE, 'ms', 300);
    try {
      const from = address();
      const answers = await Promise.all(
        Array.from({ length: MAX_CONCURRENT_INGEST_READS_PER_ADDRESS }, () => new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = http.request(new URL(`/ingest/${source.id}`, stack.url!), { method: 'POST', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'X-Forwarded-For': from } });
          // A byte every 50 ms: never idle, never done.
          const trickle = setInterval(() => req.write(' '), 50);
          req.on('response', (res) => {
            clearInterval(trickle);
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (data: string) => (text += data));
            res.on('end', () => resolve({ status: res.statusCode!, body: text }));
          });
          req.on('error', (err) => {
            clearInterval(trickle);
            reject(err);
          });
          req.write('{"pad": "');
        })),
      );
      for (const answer of answers) {
        expect(answer.status).toBe(408);
        expect(JSON.parse(answer.body)).toEqual(errorShape(408, 'bad_request'));
      }
      // The address's reads are free again.
      expect((await fromGitHub(source.id, { secret, from })).status).toBe(202);
    } finally {
      shortened.restore();
    }
  });

  it('delivers every source event to source.* subscribers, and each family to its own github.* or gitlab.* subscribers', async () => {
    const a = await newTenant();
    const github = await createSource(a, 'github');
    const gitlab = await createSource(a, 'gitlab');
    const all = await subscribe(a, ['source.*'], 'all-sources');
    const family = await subscribe(a, ['github.*'], 'github-family');
    const before = receiver.requests.length;
    expect((await fromGitHub(github.source.id, { secret: github.secret })).status).toBe(202);
    expect((await fromGitLab(gitlab.source.id, { token: gitlab.secret })).status).toBe(202);
    const received = await eventually(async () => {
      const mine = receiver.requests.slice(before).filter((r) => JSON.parse(r.body.toString('utf8')).project?.id === a.projectId);
      return mine.length >= 3 ? mine : undefined;
    });
    const got = (hook: { path: string }) =>
      received
        .filter((r) => r.url === hook.path)
        .map((r) => r.headers['x-bellwether-event'])
        .sort();
    expect(got(all)).toEqual(['github.push', 'gitlab.push']);
    expect(got(family)).toEqual(['github.push']);
    // "Send test" to a source.* subscriber sends GitHub's ping.
    const sent = await stack.http().post(`/webhooks/${all.id}/test?wait=true`).set(a.auth).send({});
    expect(sent.body.delivery).toMatchObject({ event: 'github.ping', test: true, status: 'succeeded' });
  });

  it("counts deliveries against the organization's PUBLISH_RATE_LIMIT, a redelivery taking nothing", async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'github');
    const config = stack.api.get<BellhopConfig>(BELLHOP_CONFIG);
    const limited = jest.replaceProperty(config, 'publishRateLimit', { limit: 2, windowMs: 60_000 });
    try {
      const delivery = randomUUID();
      expect((await fromGitHub(source.id, { secret, delivery })).status).toBe(202);
      expect((await fromGitHub(source.id, { secret })).status).toBe(202);
      const over = await fromGitHub(source.id, { secret });
      expect(over.body).toEqual(errorShape(429, 'rate_limited'));
      expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
      expect((await fromGitHub(source.id, { secret, delivery })).status).toBe(200);
    } finally {
      limited.restore();
    }
    expect(await eventsOf(a)).toHaveLength(2);
  });

  it('re-encrypts a source secret stored under a retiring key with npm run secrets:reencrypt, and keeps verifying with it', async () => {
    const a = await newTenant();
    const { source, secret } = await createSource(a, 'gitlab');
    // As an installation still holding it under key A stores it.
    await db.query('UPDATE sources SET secret_ciphertext = $2 WHERE id = $1', [source.id, encryptSecret(secret, Buffer.from(keyA, 'base64'), source.id)]);
    expect((await fromGitLab(source.id, { token: secret })).status).toBe(202);

    const reencrypt = (previous: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', NODE_ENV: 'test', DATABASE_URL: stack.databaseUrl, SECRETS_KEY: keyB, SECRETS_KEY_PREVIOUS: previous.join(',') };
        const child = spawn(process.execPath, [REENCRYPT], { env, cwd: tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    const idA = secretsKeyId(Buffer.from(keyA, 'base64'));
    const idB = secretsKeyId(Buffer.from(keyB, 'base64'));

    // Without key A the source is named, and left as it was.
    const refused = await reencrypt([]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`source ${source.id} left as it was: the secret is encrypted under key ${idA}`);
    expect((await storedCiphertext(source.id)).startsWith(`v2.${idA}.`)).toBe(true);

    const moved = await reencrypt([keyA]);
    expect(moved.stderr).toBe('');
    expect(moved.code).toBe(0);
    expect(moved.stdout).toContain(`re-encrypted the secrets of 1 inbound source(s) under key ${idB}; 0 source(s) could not be decrypted`);
    expect((await storedCiphertext(source.id)).startsWith(`v2.${idB}.`)).toBe(true);
    expect((await fromGitLab(source.id, { token: secret })).status).toBe(202);
  });

  it('creates, lists and deletes sources from the CLI, as tables and as --json', async () => {
    const a = await newTenant();
    const env = { HOME: tmpdir(), XDG_CONFIG_HOME: path.join(tmpdir(), `bellhop-src-${randomBytes(4).toString('hex')}`), BELLHOP_API: stack.url!, BELLHOP_TOKEN: a.token };
    const bellhop = (args: string[]) => runCaptured(args, env);

    const created = await bellhop(['sources', 'create', '--project', a.projectId, '--name', 'acme/api', '--type', 'github', '--json']);
    expect(created.code).toBe(0);
    const answer = JSON.parse(created.stdout);
    expect(answer).toEqual({ source: expect.objectContaining({ name: 'acme/api', type: 'github', url: `https://bellhop.example.com/ingest/${answer.source.id}` }), secret: expect.stringMatching(/^[0-9a-f]{64}$/) });
    // The secret it printed is the one the source verifies with.
    expect((await fromGitHub(answer.source.id, { secret: answer.secret })).status).toBe(202);

    const human = await bellhop(['sources', 'create', '--project', a.projectId, '--name', 'acme/web', '--type', 'gitlab', '--secret', 'a-gitlab-token-of-my-own']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^secret: +a-gitlab-token-of-my-own$/m);
    expect(human.stdout).toContain('Secret token');

    const listed = await bellhop(['sources', 'list', '--project', a.projectId]);
    expect(listed.code).toBe(0);
    const [header, ...rows] = listed.stdout.trimEnd().split('\n');
    expect(header.split(/\s{2,}/)).toEqual(['ID', 'NAME', 'TYPE', 'URL', 'CREATED']);
    expect(rows.map((row) => row.split(/\s{2,}/).slice(1, 3))).toEqual([
      ['acme/web', 'gitlab'],
      ['acme/api', 'github'],
    ]);
    expect(listed.stdout).not.toContain(answer.secret);
    const json = JSON.parse((await bellhop(['sources', 'list', '--project', a.projectId, '--json'])).stdout);
    expect(json.sources.map((s: { name: string }) => s.name)).toEqual(['acme/web', 'acme/api']);

    expect((await bellhop(['sources', 'create', '--project', a.projectId, '--name', 'x', '--type', 'bitbucket'])).code).toBe(2);
    const refused = await bellhop(['sources', 'create', '--project', a.projectId, '--name', 'x', '--type', 'github', '--secret', 'short']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('req_');
    expect((await bellhop(['sources', 'delete', answer.source.id])).code).toBe(0);
    expect((await fromGitHub(answer.source.id, { secret: answer.secret })).status).toBe(404);
  });
});
