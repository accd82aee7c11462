import request from 'supertest';
import { withStackAndReceiver } from './support/harness';
import { documented } from './support/payloads';
import { createWebhook } from './support/tenant';

/*
 * The worker's own gauges (the queue by state, the deliveries due) are on the worker's /metrics and
 * never on the API's, even with both apps in one process as here.
 */
describe('worker metrics', () => {
  const h = withStackAndReceiver('Metrics');

  it("shows the queue and the deliveries due on the worker's /metrics, and not on the API's", async () => {
    await createWebhook(h.stack, h.tenant, `${h.receiver.url}/hook`);
    for (let i = 0; i < 3; i++) {
      await h.stack.http().post(`/projects/${h.tenant.projectId}/events`).set(h.tenant.auth).send({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected') }).expect(202);
    }
    await h.receiver.waitFor(3);

    const worker = (await request(h.stack.worker!.getHttpServer()).get('/metrics').expect(200)).text;
    for (const state of ['waiting', 'delayed', 'active', 'failed']) expect(worker).toMatch(new RegExp(`^bellhop_queue_jobs\\{state="${state}"\\} \\d+$`, 'm'));
    expect(worker).toMatch(/^bellhop_deliveries_due \d+$/m);
    expect(worker).toContain('bellhop_delivery_attempts_total');

    const api = (await h.stack.http().get('/metrics').expect(200)).text;
    expect(api).toContain('bellhop_http_requests_total');
    expect(api).not.toContain('bellhop_queue_jobs');
    expect(api).not.toContain('bellhop_deliveries_due');
  });
});
