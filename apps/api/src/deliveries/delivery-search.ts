import { Prisma } from '@bellhop/database';
import { idBounds, timeRange } from '../common/time-range';
import { SearchDeliveriesQuery } from './dto/search-deliveries.query';

/**
 * The statement behind GET /projects/{projectId}/deliveries: ids of one page, newest first
 * (`id < cursor ORDER BY id DESC`, one more than the limit so the caller can tell there is a next
 * page). Built so that each filter has an index that fits:
 * - eventId: the unique (event_id, webhook_id) index (a handful of rows, then sorted);
 * - webhookId: (webhook_id, id), or (webhook_id, status, id) / (webhook_id, event_type, id) with
 *   status or event;
 * - status: (project_id, status, id);
 * - errorCode: (project_id, last_error_code, id) WHERE last_error_code IS NOT NULL, and test=true:
 *   (project_id, id) WHERE test (small partial indexes: a code no delivery has costs nothing);
 * - anything else: (project_id, id), the other filters checked on the rows it walks (fast while
 *   matches are common; a rare event type or status code walks more of the project).
 * An event or webhook id is scoped by a subquery on its own table (project and organization), and
 * then the deliveries are found by that id alone: a webhook or event never changes project, and
 * with no project condition on deliveries left, no plan can prefer walking the project's index.
 * from/to add an id range (ids sort by time) beside the exact created_at condition, so that the
 * index range starts and stops near the window.
 * Test: test/search-plans.e2e-spec.ts checks the plans on 200,000 rows.
 */
export function deliverySearchSql(scope: { organizationId: string; projectId: string }, query: SearchDeliveriesQuery): Prisma.Sql {
  const where: Prisma.Sql[] = [Prisma.sql`d.organization_id = ${scope.organizationId}`];
  if (query.eventId) {
    where.push(Prisma.sql`d.event_id = (SELECT e.id FROM events e
                                         WHERE e.id = ${query.eventId} AND e.project_id = ${scope.projectId} AND e.organization_id = ${scope.organizationId})`);
  }
  if (query.webhookId) {
    // Deleted webhooks included: their history stays searchable.
    where.push(Prisma.sql`d.webhook_id = (SELECT w.id FROM webhooks w
                                           WHERE w.id = ${query.webhookId} AND w.project_id = ${scope.projectId} AND w.organization_id = ${scope.organizationId})`);
  }
  if (!query.eventId && !query.webhookId) where.push(Prisma.sql`d.project_id = ${scope.projectId}`);
  if (query.status) where.push(Prisma.sql`d.status = ${query.status}::"DeliveryStatus"`);
  if (query.event) where.push(Prisma.sql`d.event_type = ${query.event}`);
  if (query.test !== undefined) where.push(Prisma.sql`d.test = ${query.test === 'true'}`);
  if (query.statusCode !== undefined) where.push(Prisma.sql`d.last_status_code = ${query.statusCode}::int`);
  if (query.errorCode) where.push(Prisma.sql`d.last_error_code = ${query.errorCode}`);
  const range = timeRange(query);
  const ids = idBounds('delivery', range);
  if (range.from) where.push(Prisma.sql`d.created_at >= ${range.from}::timestamptz`, Prisma.sql`d.id >= ${ids.gte}`);
  if (range.to) where.push(Prisma.sql`d.created_at < ${range.to}::timestamptz`, Prisma.sql`d.id < ${ids.lt}`);
  if (query.cursor) where.push(Prisma.sql`d.id < ${query.cursor}`);
  return Prisma.sql`
    SELECT d.id FROM deliveries d
     WHERE ${Prisma.join(where, ' AND ')}
     ORDER BY d.id DESC
     LIMIT ${(query.limit ?? 50) + 1}::int`;
}
