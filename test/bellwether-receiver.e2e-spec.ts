import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { EVENT_TYPES } from '@bellhop/domain';
import { Stack, startStack } from './support/stack';
import { eventually, newTenant, Tenant } from './support/tenant';
import { documented } from './support/payloads';

/*
 * A receiver written from the Bellwether documentation alone (test/receivers/bellwether_receiver.py:
 * its Python verification function, its payload structure and examples) gets a delivery of every
 * built-in type, published and sent by the test button, and accepts each one: signature valid,
 * payload as documented. Real Python process, real HTTP.
 */

interface Received {
  path: string;
  event: string;
  delivery: string;
  result: string;
}

describe('a receiver written from the Bellwether documentation', () => {
  let stack: Stack;
  let tenant: Tenant;
  let python: ChildProcessWithoutNullStreams;
  let url: string;
  const received: Received[] = [];
  const secret = `whsec_${randomBytes(32).toString('base64')}`;

  beforeAll(async () => {
    stack = await startStack();
    tenant = await newTenant(stack, 'Python');
    python = spawn('python3', [join(__dirname, 'receivers', 'bellwether_receiver.py'), secret]);
    python.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    const lines = createInterface({ input: python.stdout });
    url = await new Promise<string>((resolve, reject) => {
      python.once('exit', (code) => reject(new Error(`python3 exited with ${code}`)));
      lines.on('line', (line) => {
        const listening = /^listening (\d+)$/.exec(line);
        if (listening) resolve(`http://127.0.0.1:${listening[1]}`);
        else received.push(JSON.parse(line) as Received);
      });
    });
  }, 60_000);

  afterAll(async () => {
    python?.kill();
    await stack?.stop();
  }, 30_000);

  it('accepts every delivery of every built-in type, published or sent as a test', async () => {
    const created = await stack
      .http()
      .post(`/projects/${tenant.projectId}/webhooks`)
      .set(tenant.auth)
      .send({ url: `${url}/webhooks/bellwether`, events: ['*'], secret })
      .expect(201);
    const webhookId = created.body.webhook.id as string;
    const publishable = EVENT_TYPES.filter((t) => !t.internal).map((t) => t.type);
    expect(publishable).toEqual(['baseline.uploaded', 'baseline.drift_detected', 'baseline.security_finding']);
    for (const type of publishable) {
      await stack.http().post(`/projects/${tenant.projectId}/events`).set(tenant.auth).send({ event: type, data: documented(type) }).expect(202);
    }
    // The test button sends each catalog example, the operational ones included.
    for (const { type } of EVENT_TYPES) {
      await stack.http().post(`/webhooks/${webhookId}/test?wait=true`).set(tenant.auth).send({ event: type }).expect(200);
    }
    const expected = publishable.length + EVENT_TYPES.length;
    await eventually(async () => (received.length >= expected ? true : undefined), 20_000);
    expect(received).toHaveLength(expected);
    expect(received.filter((r) => r.result !== 'ok')).toEqual([]);
    expect(received.map((r) => r.event).sort()).toEqual([...publishable, ...EVENT_TYPES.map((t) => t.type)].sort());

    // Bellhop saw the 200s: every delivery succeeded at its first attempt.
    const list = await stack.http().get(`/webhooks/${webhookId}/deliveries?limit=100`).set(tenant.auth).expect(200);
    expect(list.body.deliveries).toHaveLength(expected);
    expect(list.body.deliveries.filter((d: { status: string; attempts: number }) => d.status !== 'succeeded' || d.attempts !== 1)).toEqual([]);
  });
});
