import { Client } from 'pg';
import { deliverySearchSql } from '../apps/api/src/deliveries/delivery-search';
import type { SearchDeliveriesQuery } from '../apps/api/src/deliveries/dto/search-deliveries.query';
import { createDatabaseFromTemplate, dropDatabase } from './support/stack';
import { SearchSeed, seedDeliveries } from './support/search-seed';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];
}

/*
 * The project's delivery search on 200,000 deliveries (180,000 in the searched project, over 30
 * days, 20 webhooks): every filter's statement, exactly as the service builds it, is planned on an
 * index of deliveries that fits it, and never as a sequential scan of deliveries. Plans depend on
 * the statistics, hence the realistic volume and the ANALYZE. A rare or absent error code, and
 * test deliveries, have small partial indexes of their own: without them a value no row has would
 * be a scan of the whole project.
 */
describe('delivery search plans on 200,000 deliveries', () => {
  let db: Client;
  let databaseUrl: string;
  let seed: SearchSeed;

  beforeAll(async () => {
    databaseUrl = await createDatabaseFromTemplate(`bhplans${Date.now().toString(36)}`);
    db = new Client({ connectionString: databaseUrl });
    await db.connect();
    seed = await seedDeliveries(db, 200_000);
  }, 120_000);

  afterAll(async () => {
    await db?.end();
    if (databaseUrl) await dropDatabase(databaseUrl);
  }, 30_000);

  const day = 86_400_000;
  const cases: Array<[string, (s: SearchSeed) => Partial<SearchDeliveriesQuery>, RegExp]> = [
    ['no filter', () => ({}), /^deliveries_project_id_id_idx$/],
    ['a cursor', (s) => ({ cursor: s.middleDeliveryId }), /^deliveries_project_id_id_idx$/],
    ['webhookId', (s) => ({ webhookId: s.webhookIds[5] }), /^deliveries_webhook_id_id_idx$/],
    ['webhookId of a deleted webhook', (s) => ({ webhookId: s.webhookIds[0] }), /^deliveries_webhook_id_id_idx$/],
    ['webhookId and status', (s) => ({ webhookId: s.webhookIds[5], status: 'failed' }), /^deliveries_webhook_id_status_id_idx$/],
    ['webhookId and event', (s) => ({ webhookId: s.webhookIds[5], event: 'baseline.uploaded' }), /^deliveries_webhook_id_event_type_id_idx$/],
    ['webhookId and from', (s) => ({ webhookId: s.webhookIds[5], from: new Date(s.to.getTime() - day).toISOString() }), /^deliveries_webhook_id_id_idx$/],
    // A status that 90% of the rows have costs the same on either project index: the planner may take the smaller.
    ['status succeeded', () => ({ status: 'succeeded' }), /^deliveries_project_id_(status_)?id_idx$/],
    ['status failed', () => ({ status: 'failed' }), /^deliveries_project_id_status_id_idx$/],
    ['status pending', () => ({ status: 'pending' }), /^deliveries_project_id_status_id_idx$/],
    ['status cancelled and a cursor', (s) => ({ status: 'cancelled', cursor: s.middleDeliveryId }), /^deliveries_project_id_status_id_idx$/],
    ['status in a time window', (s) => ({ status: 'failed', from: new Date(s.to.getTime() - 10 * day).toISOString(), to: new Date(s.to.getTime() - 9 * day).toISOString() }), /^deliveries_project_id_status_id_idx$/],
    ['eventId', (s) => ({ eventId: s.eventId }), /^deliveries_event_id_webhook_id_key$/],
    ['eventId and webhookId', (s) => ({ eventId: s.eventId, webhookId: s.webhookIds[5] }), /^deliveries_event_id_webhook_id_key$/],
    ['event', () => ({ event: 'baseline.uploaded' }), /^deliveries_project_id_id_idx$/],
    ['a rare event', () => ({ event: 'baseline.security_finding' }), /^deliveries_project_id_id_idx$/],
    ['test=true', () => ({ test: 'true' }), /^deliveries_project_(test_idx|id_id_idx)$/],
    ['test=false', () => ({ test: 'false' }), /^deliveries_project_id_id_idx$/],
    ['statusCode', () => ({ statusCode: 500 }), /^deliveries_project_id_id_idx$/],
    ['errorCode', () => ({ errorCode: 'timeout' }), /^deliveries_project_(error_idx|id_id_idx)$/],
    ['an errorCode no delivery has', () => ({ errorCode: 'tls_error' }), /^deliveries_project_error_idx$/],
    ['from (the last day)', (s) => ({ from: new Date(s.to.getTime() - day).toISOString() }), /^deliveries_project_id_id_idx$/],
    ['to (the first day)', (s) => ({ to: new Date(s.from.getTime() + day).toISOString() }), /^deliveries_project_id_id_idx$/],
    ['from and to (an hour)', (s) => ({ from: new Date(s.to.getTime() - 15 * day).toISOString(), to: new Date(s.to.getTime() - 15 * day + 3_600_000).toISOString() }), /^deliveries_project_id_id_idx$/],
    ['event, test and statusCode', () => ({ event: 'baseline.drift_detected', test: 'false', statusCode: 200 }), /^deliveries_project_id_id_idx$/],
  ];

  it.each(cases)('plans %s on an index of deliveries, with no sequential scan of it', async (_name, build, index) => {
    const query = { limit: 50, ...build(seed) } as SearchDeliveriesQuery;
    const sql = deliverySearchSql({ organizationId: seed.organizationId, projectId: seed.projectId }, query);
    const { rows } = await db.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (FORMAT JSON) ${sql.text}`, sql.values as unknown[]);
    const nodes = nodesOf(rows[0]['QUERY PLAN'][0].Plan).filter((n) => n['Relation Name'] === 'deliveries');
    // The indexes read for deliveries: by an index scan, or by the bitmap index scans under a bitmap heap scan.
    const indexes = nodes.flatMap((n) =>
      /^Index( Only)? Scan$/.test(n['Node Type']) ? [n['Index Name']] : n['Node Type'] === 'Bitmap Heap Scan' ? nodesOf(n).map((c) => c['Index Name']).filter(Boolean) : [],
    );
    const shown = JSON.stringify(nodes.map((n) => [n['Node Type'], n['Index Name']]));
    expect(nodes.length).toBeGreaterThan(0);
    expect(nodes.filter((n) => n['Node Type'] === 'Seq Scan')).toEqual([]);
    expect({ plan: shown, ok: indexes.length > 0 && indexes.every((name) => index.test(name ?? '')) }).toEqual({ plan: shown, ok: true });
  });
});
