import { Client } from 'pg';
import { StatsCompactor } from '@bellhop/delivery';
import { latencyBucket } from '@bellhop/domain';
import { withStackAndReceiver } from './support/harness';
import { eventually, newTenant } from './support/tenant';

/*
 * The dashboard's numbers against what a real receiver answered: deliveries, attempts, error
 * codes, latency and the series, per webhook and per project, for each window; test deliveries
 * left out; pending and cancelled deliveries; tenancy and validation.
 */

interface Bucket {
  from: string;
  to: string;
  succeeded: number;
  failed: number;
  attempts: number;
  p95Ms: number | null;
}

describe('dashboard stats', () => {
  const h = withStackAndReceiver('Stats');
  const http = () => h.stack.http();

  async function webhook(path: string) {
    const res = await http().post(`/projects/${h.tenant.projectId}/webhooks`).set(h.tenant.auth).send({ url: `${h.receiver.url}/${path}`, events: [`${path}.*`] }).expect(201);
    return res.body.webhook.id as string;
  }
  async function typeFor(path: string) {
    await http().post(`/projects/${h.tenant.projectId}/event-types`).set(h.tenant.auth).send({ type: `${path}.happened` }).expect(201);
  }
  const publish = (path: string, n: number) =>
    Promise.all(Array.from({ length: n }, (_, i) => http().post(`/projects/${h.tenant.projectId}/events`).set(h.tenant.auth).send({ event: `${path}.happened`, data: { i } }).expect(202)));
  const deliveries = async (webhookId: string) => (await http().get(`/webhooks/${webhookId}/deliveries`).set(h.tenant.auth).expect(200)).body.deliveries as Array<{ status: string }>;
  const settled = (webhookId: string, n: number) =>
    eventually(async () => {
      const list = await deliveries(webhookId);
      return list.length === n && list.every((d) => d.status !== 'pending') ? list : undefined;
    }, 30_000);
  const stats = async (path: string, window?: string) => (await http().get(`${path}/stats${window ? `?window=${window}` : ''}`).set(h.tenant.auth).expect(200)).body.stats;

  beforeEach(() => {
    const seen = new Map<string, number>();
    h.receiver.responder = (req, _i, res) => {
      const path = req.url.split('/')[1];
      const delivery = String(req.headers['x-bellwether-delivery']);
      const nth = (seen.get(delivery) ?? 0) + 1;
      seen.set(delivery, nth);
      if (path === 'ok') {
        setTimeout(() => res.writeHead(200).end('ok'), 50);
        return;
      }
      if (path === 'hang') return; // never answers: the attempt times out
      if (path === 'fail') return { status: 500, body: 'boom' };
      if (path === 'flaky') return nth === 1 ? { status: 502 } : { status: 200 };
      return { status: 200 };
    };
  });

  it('counts what the receivers answered, per webhook and per project, leaving test deliveries out', async () => {
    for (const path of ['ok', 'fail', 'flaky']) await typeFor(path);
    const ok = await webhook('ok');
    const fail = await webhook('fail');
    const flaky = await webhook('flaky');
    const refused = (await http().post(`/projects/${h.tenant.projectId}/webhooks`).set(h.tenant.auth).send({ url: 'http://127.0.0.1:1/refused', events: ['fail.*'] }).expect(201)).body.webhook.id as string;

    await publish('ok', 6);
    await publish('fail', 2);
    await publish('flaky', 3);
    // Test sends are never counted.
    await http().post(`/webhooks/${ok}/test`).set(h.tenant.auth).send({ event: 'ok.happened' }).expect(202);
    await http().post(`/webhooks/${fail}/test`).set(h.tenant.auth).send({ event: 'fail.happened' }).expect(202);
    await settled(ok, 7);
    await settled(fail, 3);
    await settled(flaky, 3);
    await settled(refused, 2);

    const okStats = await stats(`/webhooks/${ok}`);
    expect(okStats).toMatchObject({
      webhookId: ok,
      window: '24h',
      deliveries: { total: 6, succeeded: 6, failed: 0, pending: 0, cancelled: 0 },
      attempts: { total: 6, succeeded: 6, failed: 0 },
      successRate: 1,
      errors: [],
    });
    // The receiver waited 50 ms before answering; percentiles are read from buckets 10% wide.
    expect(okStats.latencyMs.p50).toBeGreaterThanOrEqual(45);
    expect(okStats.latencyMs.p50).toBeLessThan(250);
    expect(okStats.latencyMs.p99).toBeGreaterThanOrEqual(okStats.latencyMs.p50);

    const failStats = await stats(`/webhooks/${fail}`);
    expect(failStats).toMatchObject({
      deliveries: { total: 2, succeeded: 0, failed: 2, pending: 0, cancelled: 0 },
      attempts: { total: 10, succeeded: 0, failed: 10 },
      successRate: 0,
      errors: [{ code: 'http_500', count: 10 }],
    });
    const flakyStats = await stats(`/webhooks/${flaky}`);
    expect(flakyStats).toMatchObject({
      deliveries: { total: 3, succeeded: 3, failed: 0 },
      attempts: { total: 6, succeeded: 3, failed: 3 },
      successRate: 1,
      errors: [{ code: 'http_502', count: 3 }],
    });
    const refusedStats = await stats(`/webhooks/${refused}`);
    expect(refusedStats).toMatchObject({
      deliveries: { total: 2, failed: 2 },
      attempts: { total: 10, failed: 10 },
      latencyMs: null,
      errors: [{ code: 'connection_refused', count: 10 }],
    });

    // The series: 24 hourly buckets ending after now, adding up to the totals.
    for (const s of [okStats, failStats, flakyStats]) {
      expect(s.series).toHaveLength(24);
      expect(s.series[0].from).toBe(s.from);
      expect(s.series[23].to).toBe(s.to);
      expect(new Date(s.to).getTime() % 3_600_000).toBe(0);
      expect(new Date(s.to).getTime()).toBeGreaterThan(Date.now());
      const sum = (key: 'succeeded' | 'failed' | 'attempts') => s.series.reduce((n: number, b: Bucket) => n + b[key], 0);
      expect({ succeeded: sum('succeeded'), failed: sum('failed'), attempts: sum('attempts') }).toEqual({
        succeeded: s.deliveries.succeeded,
        failed: s.deliveries.failed,
        attempts: s.attempts.total,
      });
    }
    const busy = okStats.series.find((b: Bucket) => b.attempts > 0);
    expect(busy.p95Ms).toBeGreaterThanOrEqual(45);
    expect(okStats.series.filter((b: Bucket) => b.attempts === 0).every((b: Bucket) => b.p95Ms === null)).toBe(true);

    // The project: every webhook's totals, and each webhook with its health.
    const project = await stats(`/projects/${h.tenant.projectId}`);
    expect(project).toMatchObject({
      projectId: h.tenant.projectId,
      deliveries: { total: 13, succeeded: 9, failed: 4, pending: 0, cancelled: 0 },
      attempts: { total: 32, succeeded: 9, failed: 23 },
    });
    expect(project.successRate).toBeCloseTo(9 / 13, 6);
    const byId = new Map(project.webhooks.map((w: { webhookId: string }) => [w.webhookId, w]));
    expect(byId.get(ok)).toMatchObject({ name: '127.0.0.1', enabled: true, health: { status: 'healthy' }, deliveries: { total: 6, succeeded: 6 }, successRate: 1 });
    expect(byId.get(fail)).toMatchObject({ health: { status: 'failing' }, deliveries: { total: 2, failed: 2 }, successRate: 0 });
    expect(byId.get(refused)).toMatchObject({ latencyMs: null });

    // Folding the deltas the recordings appended into the hourly rows changes no number.
    const compactor = h.stack.worker!.get(StatsCompactor);
    await compactor.foldAll();
    const deltasLeft = new Client({ connectionString: h.stack.databaseUrl });
    await deltasLeft.connect();
    expect((await deltasLeft.query('SELECT count(*)::int AS n FROM webhook_stats_deltas')).rows[0].n).toBe(0);
    await deltasLeft.end();
    expect(await stats(`/webhooks/${ok}`)).toEqual({ ...okStats, latencyMs: okStats.latencyMs, series: okStats.series });
    expect(await stats(`/webhooks/${fail}`)).toEqual(failStats);
    expect(await stats(`/projects/${h.tenant.projectId}`)).toEqual(project);

    // Other windows: the same numbers in 28 six-hour or 30 daily buckets, aligned in UTC.
    for (const [window, buckets, size] of [['7d', 28, 6 * 3_600_000], ['30d', 30, 24 * 3_600_000]] as const) {
      const s = await stats(`/webhooks/${fail}`, window);
      expect(s.window).toBe(window);
      expect(s.series).toHaveLength(buckets);
      expect(new Date(s.to).getTime() % size).toBe(0);
      expect(new Date(s.to).getTime() - new Date(s.from).getTime()).toBe(buckets * size);
      expect(s.series.every((b: Bucket) => new Date(b.to).getTime() - new Date(b.from).getTime() === size)).toBe(true);
      expect(s).toMatchObject({ deliveries: failStats.deliveries, attempts: failStats.attempts, errors: failStats.errors });
      expect((await stats(`/projects/${h.tenant.projectId}`, window)).deliveries).toEqual(project.deliveries);
    }
  }, 90_000);

  it('counts pending deliveries live, and cancelled ones when their webhook is deleted', async () => {
    await typeFor('hang');
    const hang = await webhook('hang');
    const before = h.receiver.requests.length;
    await publish('hang', 1);
    await h.receiver.waitFor(before + 1);
    expect((await stats(`/webhooks/${hang}`)).deliveries).toMatchObject({ total: 1, pending: 1 });
    await http().delete(`/webhooks/${hang}`).set(h.tenant.auth).expect(204);
    const project = await stats(`/projects/${h.tenant.projectId}`);
    // The deleted webhook is not listed, and its history still counts in the project's totals.
    expect(project.webhooks).toEqual([]);
    expect(project.deliveries).toEqual({ total: 1, succeeded: 0, failed: 0, pending: 0, cancelled: 1 });
    // Its attempt, recorded when it timed out, counts too.
    await eventually(async () => ((await stats(`/projects/${h.tenant.projectId}`)).attempts.total === 1 ? true : undefined), 15_000);
    expect((await stats(`/projects/${h.tenant.projectId}`)).deliveries.cancelled).toBe(1);
  }, 30_000);

  it('is empty for a quiet webhook, refuses unknown windows and hides other tenants', async () => {
    await typeFor('ok');
    const quiet = await webhook('ok');
    const s = await stats(`/webhooks/${quiet}`);
    expect(s).toMatchObject({ deliveries: { total: 0, succeeded: 0, failed: 0, pending: 0, cancelled: 0 }, attempts: { total: 0 }, successRate: null, latencyMs: null, errors: [] });
    expect(s.series.every((b: Bucket) => b.succeeded === 0 && b.attempts === 0 && b.p95Ms === null)).toBe(true);
    const bad = await http().get(`/webhooks/${quiet}/stats?window=1y`).set(h.tenant.auth).expect(422);
    expect(bad.body).toMatchObject({ code: 'validation_failed', statusCode: 422 });
    await http().get(`/projects/${h.tenant.projectId}/stats?window=90d`).set(h.tenant.auth).expect(422);
    const other = await newTenant(h.stack, 'Other');
    await http().get(`/webhooks/${quiet}/stats`).set(other.auth).expect(404);
    await http().get(`/projects/${h.tenant.projectId}/stats`).set(other.auth).expect(404);
    await http().get(`/webhooks/${quiet}/stats`).expect(401);
  });

  it('buckets latencies in SQL exactly as the API reads them', async () => {
    const values = [0, 0.5, 1, 1.09, 1.1, 1.11, 2, 9, 10, 11, 50, 99.9, 100, 1234, 29_999, 30_000, 86_000, 10 ** 7];
    for (let ms = 1; ms < 5000; ms = Math.ceil(ms * 1.07)) values.push(ms, ms + 0.5);
    const db = new Client({ connectionString: h.stack.databaseUrl });
    await db.connect();
    try {
      const { rows } = await db.query<{ b: number }>('SELECT bellhop_latency_bucket(v) AS b FROM unnest($1::float8[]) WITH ORDINALITY AS t(v, i) ORDER BY i', [values]);
      expect(rows.map((r) => r.b)).toEqual(values.map(latencyBucket));
    } finally {
      await db.end();
    }
  });
});
