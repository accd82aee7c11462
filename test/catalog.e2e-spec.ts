import { createHmac } from 'node:crypto';
import { Receiver } from './support/receiver';
import { Stack, startStack } from './support/stack';
import { createWebhook, newTenant, Tenant } from './support/tenant';

/*
 * The event catalog as the Bellwether documentation gives it: the documented payloads are what the
 * test button sends, and what a publish must match (required fields, types, severity values),
 * refused with JSON Pointer paths and nothing written otherwise.
 */

/** The documentation's examples, copied from it as they stand (not from the catalog's code). */
const DOCUMENTED: Record<string, Record<string, unknown>> = {
  'baseline.uploaded': { version: 12, hash: 'a1b2c3d4', toolCount: 5, serverName: 'my-server', cliVersion: '0.6.0' },
  'baseline.drift_detected': {
    fromVersion: 11,
    toVersion: 12,
    severity: 'breaking',
    changes: { toolsAdded: ['new_tool'], toolsRemoved: [], toolsModified: ['existing_tool'], breakingCount: 1, warningCount: 2 },
  },
  'baseline.security_finding': {
    version: 12,
    findings: [{ severity: 'high', category: 'injection', tool: 'execute_command', description: 'Potential command injection vulnerability' }],
  },
};

/** The documentation's Node verification snippet. */
function verifyWebhook(payload: Buffer, signature: string, secret: string): boolean {
  const expected = 'sha256=' + createHmac('sha256', secret).update(payload).digest('hex');
  return signature === expected;
}

describe('event catalog as documented', () => {
  let stack: Stack;
  let tenant: Tenant;
  let receiver: Receiver;

  beforeAll(async () => {
    stack = await startStack();
    receiver = await new Receiver().start();
    tenant = await newTenant(stack, 'Catalog');
  }, 60_000);

  afterAll(async () => {
    await receiver?.stop();
    await stack?.stop();
  }, 30_000);

  const publish = (event: string, data: unknown) => stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send({ event, data });

  it.each(Object.keys(DOCUMENTED))('sends the documented example of %s from the test button, verifiable with the documented recipe', async (type) => {
    const { webhook, secret } = await createWebhook(stack, tenant, `${receiver.url}/${type}`, [type]);
    const res = await stack.http().post(`/webhooks/${webhook.id}/test?wait=true`).set(tenant.auth).send({}).expect(200);
    expect(res.body.delivery).toMatchObject({ event: type, test: true, status: 'succeeded' });
    const req = receiver.requests.find((r) => r.url === `/${type}`)!;
    expect(verifyWebhook(req.body, String(req.headers['x-bellwether-signature']), secret)).toBe(true);
    const envelope = JSON.parse(req.body.toString('utf8'));
    expect(envelope).toEqual({ event: type, timestamp: expect.any(String), project: { id: tenant.projectId, name: 'my-mcp-server' }, data: DOCUMENTED[type] });
    // And the same payload is accepted by a publish.
    await publish(type, DOCUMENTED[type]).expect(202);
  });

  it.each<[string, string, (data: Record<string, unknown>) => unknown, string]>([
    ['baseline.uploaded', 'version missing', ({ version: _version, ...rest }) => rest, '/version'],
    ['baseline.uploaded', 'version 0', (d) => ({ ...d, version: 0 }), '/version'],
    ['baseline.uploaded', 'toolCount as a string', (d) => ({ ...d, toolCount: '5' }), '/toolCount'],
    ['baseline.uploaded', 'hash missing', ({ hash: _hash, ...rest }) => rest, '/hash'],
    ['baseline.uploaded', 'serverName as a number', (d) => ({ ...d, serverName: 1 }), '/serverName'],
    ['baseline.uploaded', 'cliVersion missing', ({ cliVersion: _cli, ...rest }) => rest, '/cliVersion'],
    ['baseline.drift_detected', 'a severity that is not documented', (d) => ({ ...d, severity: 'medium' }), '/severity'],
    ['baseline.drift_detected', 'fromVersion as a fraction', (d) => ({ ...d, fromVersion: 11.5 }), '/fromVersion'],
    ['baseline.drift_detected', 'toVersion missing', ({ toVersion: _to, ...rest }) => rest, '/toVersion'],
    ['baseline.drift_detected', 'changes missing', ({ changes: _changes, ...rest }) => rest, '/changes'],
    ['baseline.drift_detected', 'toolsAdded as a string', (d) => ({ ...d, changes: { ...(d.changes as object), toolsAdded: 'new_tool' } }), '/changes/toolsAdded'],
    ['baseline.drift_detected', 'toolsRemoved missing', (d) => ({ ...d, changes: { ...(d.changes as object), toolsRemoved: undefined } }), '/changes/toolsRemoved'],
    ['baseline.drift_detected', 'a negative breakingCount', (d) => ({ ...d, changes: { ...(d.changes as object), breakingCount: -1 } }), '/changes/breakingCount'],
    ['baseline.drift_detected', 'warningCount missing', (d) => ({ ...d, changes: { ...(d.changes as object), warningCount: undefined } }), '/changes/warningCount'],
    ['baseline.security_finding', 'no findings', (d) => ({ ...d, findings: [] }), '/findings'],
    ['baseline.security_finding', 'a finding without a tool', (d) => ({ ...d, findings: [{ severity: 'high', category: 'c', description: 'd' }] }), '/findings/0/tool'],
    ['baseline.security_finding', 'a finding of severity "severe"', (d) => ({ ...d, findings: [{ severity: 'severe', category: 'c', tool: 't', description: 'd' }] }), '/findings/0/severity'],
    ['baseline.security_finding', 'version missing', ({ version: _version, ...rest }) => rest, '/version'],
  ])('refuses %s with %s: 422 pointing at %s, nothing written', async (type, _what, change, path) => {
    const before = await stack.http().get(`/projects/${tenant.projectId}/events`).set(tenant.auth).expect(200);
    const res = await publish(type, change(structuredClone(DOCUMENTED[type]))).expect(422);
    expect(res.body).toMatchObject({ statusCode: 422, code: 'validation_failed', requestId: expect.stringMatching(/^req_/) });
    expect(res.body.details).toEqual(expect.arrayContaining([{ path, message: expect.any(String) }]));
    const after = await stack.http().get(`/projects/${tenant.projectId}/events`).set(tenant.auth).expect(200);
    expect(after.body.events).toEqual(before.body.events);
  });

  it('accepts extra properties beside the documented ones', async () => {
    await publish('baseline.uploaded', { ...DOCUMENTED['baseline.uploaded'], branch: 'main', labels: { ci: true } }).expect(202);
  });

  it.each(['webhook.disabled', 'delivery.exhausted'])('refuses to let a user publish the operational event %s', async (type) => {
    const res = await publish(type, { anything: true }).expect(422);
    expect(res.body.code).toBe('validation_failed');
  });

  it('delivers to "*" every type, to "<category>.*" its category\'s types, and refuses unknown wildcards', async () => {
    const t = await newTenant(stack, 'Wildcards');
    const r = await new Receiver().start();
    try {
      const subscribe = (path: string, events: string[]) =>
        stack.http().post(`/projects/${t.projectId}/webhooks`).set(t.auth).send({ url: `${r.url}/${path}`, events });
      await subscribe('all', ['*']).expect(201);
      await subscribe('baseline', ['baseline.*']).expect(201);
      await subscribe('operational', ['operational.*']).expect(201);
      await subscribe('drift', ['baseline.drift_detected']).expect(201);
      for (const bad of [['nope.*'], ['baseline.**'], ['*.*'], ['baseline.uploaded.*']]) {
        const res = await subscribe('bad', bad).expect(422);
        expect(res.body.code).toBe('validation_failed');
      }
      const uploaded = await stack.http().post(`/projects/${t.projectId}/events`).set(t.auth).send({ event: 'baseline.uploaded', data: DOCUMENTED['baseline.uploaded'] }).expect(202);
      expect(uploaded.body.deliveries).toBe(2);
      const drift = await stack.http().post(`/projects/${t.projectId}/events`).set(t.auth).send({ event: 'baseline.drift_detected', data: DOCUMENTED['baseline.drift_detected'] }).expect(202);
      expect(drift.body.deliveries).toBe(3);
      await r.waitFor(5);
      const byPath = (path: string) => r.requests.filter((req) => req.url === `/${path}`).map((req) => req.headers['x-bellwether-event']);
      expect(byPath('all').sort()).toEqual(['baseline.drift_detected', 'baseline.uploaded']);
      expect(byPath('baseline').sort()).toEqual(['baseline.drift_detected', 'baseline.uploaded']);
      expect(byPath('drift')).toEqual(['baseline.drift_detected']);
      expect(byPath('operational')).toEqual([]);
    } finally {
      await r.stop();
    }
  });

  it('sends the first type a wildcard subscription receives from the test button', async () => {
    const t = await newTenant(stack, 'Wildcard test');
    const { webhook } = await createWebhook(stack, t, `${receiver.url}/wild-test`, ['baseline.*']);
    const res = await stack.http().post(`/webhooks/${webhook.id}/test?wait=true`).set(t.auth).send({}).expect(200);
    expect(res.body.delivery).toMatchObject({ event: 'baseline.uploaded', test: true, status: 'succeeded' });
  });

  describe('batch publish', () => {
    const batch = (t: Tenant, events: unknown[]) => stack.http().post(`/projects/${t.projectId}/events/batch`).set(t.auth).send({ events });
    const item = (type: string, extra: Record<string, unknown> = {}, idempotencyKey?: string) => ({
      event: type,
      data: { ...DOCUMENTED[type], ...extra },
      ...(idempotencyKey ? { idempotencyKey } : {}),
    });

    it('publishes in order, answers each item, and replays items whose key was seen', async () => {
      const t = await newTenant(stack, 'Batch');
      const r = await new Receiver().start();
      try {
        await createWebhook(stack, t, `${r.url}/batch`, ['*']);
        const first = await batch(t, [
          item('baseline.uploaded', { n: 0 }, 'k-0'),
          item('baseline.drift_detected', { n: 1 }),
          item('baseline.security_finding', { n: 2 }, 'k-2'),
        ]).expect(202);
        expect(first.body.events.map((e: { event: string; deliveries: number; replayed: boolean }) => [e.event, e.deliveries, e.replayed])).toEqual([
          ['baseline.uploaded', 1, false],
          ['baseline.drift_detected', 1, false],
          ['baseline.security_finding', 1, false],
        ]);
        for (const e of first.body.events) expect(e).toMatchObject({ id: expect.stringMatching(/^evt_/), projectId: t.projectId, timestamp: expect.any(String) });
        await r.waitFor(3);

        const again = await batch(t, [item('baseline.uploaded', { n: 0 }, 'k-0'), item('baseline.uploaded', { n: 3 }, 'k-3'), item('baseline.security_finding', { n: 2 }, 'k-2')]).expect(202);
        expect(again.body.events.map((e: { id: string; replayed: boolean }) => e.replayed)).toEqual([true, false, true]);
        expect(again.body.events[0].id).toBe(first.body.events[0].id);
        expect(again.body.events[2].id).toBe(first.body.events[2].id);
        await r.waitFor(4);
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(r.requests).toHaveLength(4);
        const events = await stack.http().get(`/projects/${t.projectId}/events`).set(t.auth).expect(200);
        expect(events.body.events).toHaveLength(4);
      } finally {
        await r.stop();
      }
    });

    it('refuses the whole batch when one item is invalid, pointing at it, and writes nothing', async () => {
      const t = await newTenant(stack, 'Batch invalid');
      const res = await batch(t, [item('baseline.uploaded'), item('baseline.drift_detected', { severity: 'medium' }), item('baseline.uploaded')]).expect(422);
      expect(res.body).toMatchObject({ code: 'validation_failed' });
      expect(res.body.details).toEqual([{ path: '/events/1/data/severity', message: expect.any(String) }]);
      const internal = await batch(t, [item('baseline.uploaded'), { event: 'webhook.disabled', data: {} }]).expect(422);
      expect(internal.body.details).toEqual([{ path: '/events/1/event', message: expect.any(String) }]);
      const events = await stack.http().get(`/projects/${t.projectId}/events`).set(t.auth).expect(200);
      expect(events.body.events).toHaveLength(0);
    });

    it('refuses an empty batch and one of more than 100 events', async () => {
      const t = await newTenant(stack, 'Batch size');
      await batch(t, []).expect(422);
      await batch(t, Array.from({ length: 101 }, () => item('baseline.uploaded'))).expect(422);
      await batch(t, Array.from({ length: 100 }, () => item('baseline.uploaded'))).expect(202);
    });

    it('answers 404 for another tenant\'s project', async () => {
      const t = await newTenant(stack, 'Batch owner');
      const other = await newTenant(stack, 'Batch other');
      await stack.http().post(`/projects/${t.projectId}/events/batch`).set(other.auth).send({ events: [item('baseline.uploaded')] }).expect(404);
    });
  });
});
