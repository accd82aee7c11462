import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { PublishRateLimiter } from '../apps/api/src/common/rate-limit';
import { documented } from './support/payloads';
import { Stack, startStack } from './support/stack';
import { Tenant, newTenant } from './support/tenant';

/**
 * PUBLISH_RATE_LIMIT: events per window for each organization, whichever of its credentials
 * publishes; a batch counts its items and is taken whole or refused whole. Windows of 1 s keep the
 * test fast: each check fills a window with a few concurrent requests, well inside its second.
 */
describe('publish rate limit', () => {
  let stack: Stack;
  let db: Client;

  beforeAll(async () => {
    stack = await startStack({ worker: false, env: { PUBLISH_RATE_LIMIT: '10/1s', RATE_LIMIT: '8/1m' } });
    db = new Client({ connectionString: stack.databaseUrl });
    await db.connect();
  });
  afterAll(async () => {
    await db?.end();
    await stack?.stop();
  });

  type Org = Tenant & { tokens: string[] };
  type Answer = { status: number; headers: Record<string, string>; body: any };

  /** A fresh organization and project, with `count` API tokens (members may publish). */
  async function organization(count: number): Promise<Org> {
    const tenant = await newTenant(stack, 'Publisher');
    const tokens: string[] = [];
    for (let i = 0; i < count; i++) {
      const res = await stack.http().post(`/organizations/${tenant.organizationId}/api-tokens`).set(tenant.auth).send({ name: `ci-${i}`, role: 'member' }).expect(201);
      tokens.push(res.body.token as string);
    }
    return { ...tenant, tokens };
  }

  let serial = 0;
  const item = (idempotencyKey?: string) => ({ event: 'baseline.uploaded', data: documented('baseline.uploaded', { n: ++serial }), ...(idempotencyKey ? { idempotencyKey } : {}) });

  function publish(projectId: string, token: string): Promise<Answer> {
    const { event, data } = item();
    return stack.http().post(`/projects/${projectId}/events`).set('Authorization', `Bearer ${token}`).send({ event, data }) as unknown as Promise<Answer>;
  }

  function batch(projectId: string, token: string, events: number | Array<ReturnType<typeof item>>): Promise<Answer> {
    const items = typeof events === 'number' ? Array.from({ length: events }, () => item()) : events;
    return stack.http().post(`/projects/${projectId}/events/batch`).set('Authorization', `Bearer ${token}`).send({ events: items }) as unknown as Promise<Answer>;
  }

  async function storedEvents(projectId: string): Promise<number> {
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE project_id = $1', [projectId]);
    return rows[0].n;
  }

  function expectLimited(res: Answer) {
    expect(res.status).toBe(429);
    // A window of 1 s: whole seconds, at least 1.
    expect(res.headers['retry-after']).toBe('1');
    expect(res.body).toEqual({ statusCode: 429, code: 'rate_limited', error: expect.any(String), details: [], requestId: expect.stringMatching(/^req_/) });
  }

  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /**
   * Runs `check` on fresh organizations from `prepare`. A check expects its publishes to fall in
   * one window of 1 s; on a machine too busy for that (the check failed and took longer than the
   * window) it runs again on new organizations, at most three times, so a real failure still fails.
   */
  async function inOneWindow<T, R>(prepare: () => Promise<T>, check: (made: T) => Promise<R>): Promise<R> {
    for (let attempt = 1; ; attempt++) {
      const made = await prepare();
      const started = Date.now();
      try {
        return await check(made);
      } catch (err) {
        if (attempt === 3 || Date.now() - started <= 1000) throw err;
      }
    }
  }

  it('gives all tokens of an organization one budget, leaves other organizations theirs, and frees it after the window', async () => {
    const { org, retryAfter } = await inOneWindow(
      async () => ({ org: await organization(2), other: await organization(1) }),
      async ({ org, other }) => {
        const [a, b] = org.tokens;
        const filled = await Promise.all([batch(org.projectId, a, 6), batch(org.projectId, b, 4)]);
        expect(filled.map((res) => res.status)).toEqual([202, 202]);
        const [single, batched, elsewhere] = await Promise.all([publish(org.projectId, a), batch(org.projectId, b, 1), batch(other.projectId, other.tokens[0], 10)]);
        expectLimited(single);
        expectLimited(batched);
        expect(elsewhere.status).toBe(202);
        expect(await storedEvents(org.projectId)).toBe(10);
        return { org, retryAfter: Number(single.headers['retry-after']) };
      },
    );

    await sleep(retryAfter * 1000);
    expect((await publish(org.projectId, org.tokens[1])).status).toBe(202);
    expect((await batch(org.projectId, org.tokens[0], 9)).status).toBe(202);
  });

  it('refuses a batch that does not fit whole, writing none of it', async () => {
    await inOneWindow(
      () => organization(1),
      async (org) => {
        const [a] = org.tokens;
        expect((await batch(org.projectId, a, 8)).status).toBe(202);
        expectLimited(await batch(org.projectId, a, 3));
        expect(await storedEvents(org.projectId)).toBe(8);
        // What is left of the window still takes a batch that fits.
        expect((await batch(org.projectId, a, 2)).status).toBe(202);
        expect(await storedEvents(org.projectId)).toBe(10);

        // A batch larger than a whole window could never fit: no wait would help, and it is told
        // the largest batch allowed.
        const tooLarge = await batch(org.projectId, a, 11);
        expect(tooLarge.status).toBe(422);
        expect(tooLarge.headers['retry-after']).toBeUndefined();
        expect(tooLarge.body).toMatchObject({ code: 'validation_failed', error: expect.stringMatching(/at most 10 new events.*smaller batches/) });
        expect(await storedEvents(org.projectId)).toBe(10);
      },
    );
  });

  it('counts only events published: not an unknown project, an invalid event, nor a replay', async () => {
    await inOneWindow(
      async () => ({ org: await organization(4), other: await organization(1) }),
      async ({ org, other }) => {
        const [a] = org.tokens;
        const auth = { Authorization: `Bearer ${a}` };
        // The refused requests from three other tokens, each within its own budget of requests.
        const others = org.tokens.slice(1);
        const by = (i: number) => others[i % others.length];

        // Another organization's project is unknown here (404), and an invalid event is refused
        // (422): more of each than the whole budget, none of them counted.
        const unknown = await Promise.all(Array.from({ length: 11 }, (_, i) => publish(other.projectId, by(i))));
        expect(unknown.map((res) => res.status)).toEqual(Array(11).fill(404));
        const invalid = await Promise.all([
          ...Array.from({ length: 6 }, (_, i) =>
            stack.http().post(`/projects/${org.projectId}/events`).set('Authorization', `Bearer ${by(i + 11)}`).send({ event: 'baseline.uploaded', data: { version: 'one' } }),
          ),
          ...Array.from({ length: 6 }, (_, i) => batch(org.projectId, by(i + 17), [item(), { event: 'baseline.uploaded', data: { version: 0 } } as ReturnType<typeof item>])),
        ]);
        expect(invalid.map((res) => res.status)).toEqual(Array(12).fill(422));

        // Replays of events published before publish nothing: their events are handed back.
        const keyed = ['k1', 'k2', 'k3', 'k4'].map((key) => item(key));
        const { event, data } = item();
        const keyedSingle = () => stack.http().post(`/projects/${org.projectId}/events`).set(auth).set('Idempotency-Key', 'single').send({ event, data });
        const first = await Promise.all([batch(org.projectId, a, keyed), keyedSingle()]);
        expect(first.map((res) => res.status)).toEqual([202, 202]);
        const replays = await Promise.all([batch(org.projectId, a, keyed), keyedSingle()]);
        expect(replays.map((res) => res.status)).toEqual([202, 200]);
        expect(replays[0].body.events.map((e: { replayed: boolean }) => e.replayed)).toEqual(Array(4).fill(true));

        // 5 events published: 5 more fit, the sixth does not.
        expect((await batch(org.projectId, a, 5)).status).toBe(202);
        expectLimited(await publish(org.projectId, a));
        expect(await storedEvents(org.projectId)).toBe(10);
      },
    );
  });

  it('answers replays when the window is full, as if it were not', async () => {
    await inOneWindow(
      () => organization(1),
      async (org) => {
        const [a] = org.tokens;
        const auth = { Authorization: `Bearer ${a}` };
        const { event, data } = item();
        const keyedSingle = () => stack.http().post(`/projects/${org.projectId}/events`).set(auth).set('Idempotency-Key', 'single').send({ event, data });
        const keyed = ['k1', 'k2'].map((key) => item(key));
        const first = await Promise.all([keyedSingle(), batch(org.projectId, a, keyed)]);
        expect(first.map((res) => res.status)).toEqual([202, 202]);
        // The rest of the window, then nothing more.
        expect((await batch(org.projectId, a, 7)).status).toBe(202);
        expectLimited(await publish(org.projectId, a));

        const [single, batched] = await Promise.all([keyedSingle(), batch(org.projectId, a, keyed)]);
        expect(single.status).toBe(200);
        expect(single.body).toEqual({ event: first[0].body.event, deliveries: 0 });
        expect(batched.status).toBe(202);
        expect(batched.body).toEqual({ events: first[1].body.events.map((e: object) => ({ ...e, replayed: true })) });
        // A batch with one new event among its replays needs room for that one.
        expectLimited(await batch(org.projectId, a, [...keyed, item()]));
        expect(await storedEvents(org.projectId)).toBe(10);
      },
    );
  });

  it('limits each token’s publish requests, refused ones too, to PUBLISH_RATE_LIMIT’s number', async () => {
    await inOneWindow(
      async () => ({ org: await organization(2), other: await organization(1) }),
      async ({ org, other }) => {
        const [a, b] = org.tokens;
        const auth = { Authorization: `Bearer ${a}` };
        // Invalid events, unknown projects and bad Idempotency-Keys publish nothing, yet count.
        const refused = await Promise.all([
          ...Array.from({ length: 4 }, () => stack.http().post(`/projects/${org.projectId}/events`).set(auth).send({ event: 'baseline.uploaded', data: { version: 'one' } })),
          ...Array.from({ length: 4 }, () => publish(other.projectId, a)),
          ...Array.from({ length: 3 }, () => {
            const { event, data } = item();
            return stack.http().post(`/projects/${org.projectId}/events`).set(auth).set('Idempotency-Key', 'k'.repeat(256)).send({ event, data });
          }),
        ]);
        expect(refused.filter((res) => res.status === 429)).toHaveLength(1);
        expectLimited(refused.find((res) => res.status === 429)!);
        expect(refused.filter((res) => res.status !== 429).every((res) => [404, 422].includes(res.status))).toBe(true);
        // The token is refused, however good its next event; another token of the organization is not.
        expectLimited(await publish(org.projectId, a));
        expect((await publish(org.projectId, b)).status).toBe(202);
      },
    );
  });

  it('counts publishing apart from RATE_LIMIT, and management calls apart from PUBLISH_RATE_LIMIT', async () => {
    await inOneWindow(
      () => organization(1),
      async (org) => {
        const [a] = org.tokens;
        // RATE_LIMIT (8 a minute for each token) still holds for management calls.
        const reads = await Promise.all(Array.from({ length: 9 }, () => stack.http().get('/projects').set('Authorization', `Bearer ${a}`)));
        expect(reads.filter((res) => res.status === 200)).toHaveLength(8);
        expect(reads.filter((res) => res.status === 429)).toHaveLength(1);

        // The same token, its RATE_LIMIT spent, publishes more requests than RATE_LIMIT allows: the
        // whole publish budget, none of it taken by the management calls.
        const publishes = await Promise.all(Array.from({ length: 10 }, () => publish(org.projectId, a)));
        expect(publishes.map((res) => res.status)).toEqual(Array(10).fill(202));
        expectLimited(await publish(org.projectId, a));
        await stack.http().get('/projects').set('Authorization', `Bearer ${a}`).expect(429);
      },
    );
  });

  it('hands events back only to the window that counted them', async () => {
    const limiter = stack.api.get(PublishRateLimiter);
    const res = { setHeader: () => undefined };
    const organizationId = `org_${randomBytes(8).toString('hex')}`;

    // Handed back within its window, an event makes room at once.
    const early = await limiter.admit(organizationId, 10, res);
    await early.release(1);
    const late = await limiter.admit(organizationId, 1, res);
    await expect(limiter.admit(organizationId, 1, res)).rejects.toMatchObject({ code: 'rate_limited' });

    // Handed back after its window ended, it does not make room in the next one.
    await sleep(1100);
    await limiter.admit(organizationId, 10, res);
    await late.release(1);
    await early.release(9);
    await expect(limiter.admit(organizationId, 1, res)).rejects.toMatchObject({ code: 'rate_limited' });
  });
});
