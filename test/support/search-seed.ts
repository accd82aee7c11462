import type { Client } from 'pg';
import { newId } from '@bellhop/domain';

export interface SearchSeed {
  organizationId: string;
  /** The project searched: 90% of the rows. */
  projectId: string;
  /** Its webhooks; the first two are soft-deleted. */
  webhookIds: string[];
  /** Another project of the same organization: the other 10%. */
  otherProjectId: string;
  /** An event of the searched project (its deliveries go to two of its webhooks). */
  eventId: string;
  /** A delivery id in the middle of the searched project, for a cursor. */
  middleDeliveryId: string;
  /** The time span of the rows: created_at spread evenly, ids made from the same times. */
  from: Date;
  to: Date;
}

/**
 * Fills a database (migrated, otherwise empty of this organization) with `deliveries` delivery
 * rows in SQL, two per event, for plan tests and by-hand timings. Ids are ULIDs made from the rows'
 * created_at, as the application makes them, so that time bounds on ids hold. Of the deliveries:
 * 90% succeeded (200), 6% failed (500, or no response with timeout / connection_refused), 3%
 * pending (429), 1% cancelled; 0.5% test; event types 1% baseline.security_finding, a third
 * baseline.uploaded, the rest baseline.drift_detected; 20 webhooks in the searched project.
 */
export async function seedDeliveries(db: Client, deliveries: number, spanMs = 30 * 86_400_000): Promise<SearchSeed> {
  const organizationId = newId('organization');
  const projectId = newId('project');
  const otherProjectId = newId('project');
  const webhookIds = Array.from({ length: 20 }, () => newId('webhook'));
  const otherWebhookIds = Array.from({ length: 5 }, () => newId('webhook'));
  const events = Math.ceil(deliveries / 2);
  const to = new Date(Date.now() - 60_000);
  const from = new Date(to.getTime() - spanMs);

  // Crockford base32 of a millisecond time, 10 characters: the first part of a ULID.
  await db.query(`
    CREATE OR REPLACE FUNCTION pg_temp.ulid_time(ms bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
      SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> (5 * (9 - i))) & 31)::int + 1, 1), '' ORDER BY i)
        FROM generate_series(0, 9) i
    $fn$`);
  await db.query(`INSERT INTO organizations (id, name, plan) VALUES ($1, 'search-seed', 'team')`, [organizationId]);
  await db.query(`INSERT INTO projects (id, organization_id, name) VALUES ($1, $3, 'searched'), ($2, $3, 'other')`, [projectId, otherProjectId, organizationId]);
  await db.query(
    `INSERT INTO webhooks (id, organization_id, project_id, name, url, events, secret_ciphertext, deleted_at)
     SELECT w.id, $1, w.project_id, 'seed', 'https://hooks.example.com/' || w.n, '{*}', 'v1.x.x.x',
            CASE WHEN w.project_id = $2 AND w.n <= 2 THEN now() END
       FROM (SELECT id, $2 AS project_id, n FROM unnest($3::text[]) WITH ORDINALITY AS u(id, n)
             UNION ALL SELECT id, $4, n FROM unnest($5::text[]) WITH ORDINALITY AS u(id, n)) w`,
    [organizationId, projectId, webhookIds, otherProjectId, otherWebhookIds],
  );
  // Event g at from + g * step; every tenth event in the other project.
  await db.query(
    `INSERT INTO events (id, organization_id, project_id, type, body, created_at)
     SELECT 'evt_' || pg_temp.ulid_time(t.ms) || lpad(t.g::text, 16, '0'), $1,
            CASE WHEN t.g % 10 = 0 THEN $3 ELSE $2 END,
            CASE WHEN t.g % 100 = 1 THEN 'baseline.security_finding' WHEN t.g % 3 = 0 THEN 'baseline.uploaded' ELSE 'baseline.drift_detected' END,
            '{}', to_timestamp(t.ms / 1000.0)
       FROM (SELECT g, ($5::bigint + g * ($6::bigint / $4::bigint)) AS ms FROM generate_series(1, $4::int) g) t`,
    [organizationId, projectId, otherProjectId, events, from.getTime(), spanMs],
  );
  await db.query(
    `INSERT INTO deliveries (id, organization_id, project_id, event_id, webhook_id, event_type, test, created_at, status, attempt_count,
                             scheduled_attempts, next_attempt_at, last_status_code, last_response_time_ms, last_error_code, completed_at)
     SELECT 'dlv_' || substr(x.id, 5, 10) || lpad((x.g * 2 + x.k)::text, 16, '0'), $1, x.project_id, x.id,
            CASE WHEN x.project_id = $2 THEN ($3::text[])[1 + (x.g + x.k * 7) % 20] ELSE ($4::text[])[1 + (x.g + x.k * 2) % 5] END,
            x.type, x.r % 200 = 3, x.created_at,
            x.status::"DeliveryStatus", 1, 1,
            CASE WHEN x.status = 'pending' THEN x.created_at + interval '1 hour' END,
            CASE x.status WHEN 'succeeded' THEN 200 WHEN 'pending' THEN 429 WHEN 'cancelled' THEN 503
                          ELSE CASE WHEN x.r % 3 = 0 THEN NULL ELSE 500 END END,
            25,
            CASE WHEN x.status = 'failed' AND x.r % 3 = 0 THEN CASE WHEN x.r % 2 = 0 THEN 'timeout' ELSE 'connection_refused' END END,
            CASE WHEN x.status <> 'pending' THEN x.created_at END
       FROM (SELECT y.*, CASE WHEN y.r % 100 < 90 THEN 'succeeded' WHEN y.r % 100 < 96 THEN 'failed' WHEN y.r % 100 < 99 THEN 'pending' ELSE 'cancelled' END AS status
               FROM (SELECT e.id, e.project_id, e.type, e.created_at, z.g, k, abs(hashint8(z.g * 2 + k) % 1000) AS r
                       FROM events e CROSS JOIN LATERAL (SELECT right(e.id, 16)::int AS g) z CROSS JOIN generate_series(0, 1) k
                      WHERE e.organization_id = $1) y) x`,
    [organizationId, projectId, webhookIds, otherWebhookIds],
  );
  await db.query('ANALYZE events; ANALYZE deliveries; ANALYZE webhooks');
  const eventId = (await db.query<{ id: string }>(`SELECT id FROM events WHERE project_id = $1 ORDER BY id LIMIT 1 OFFSET $2`, [projectId, Math.floor(events / 3)])).rows[0].id;
  const middleDeliveryId = (await db.query<{ id: string }>(`SELECT id FROM deliveries WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT 1`, [projectId, `dlv_${eventId.slice(4, 14)}`])).rows[0].id;
  return { organizationId, projectId, webhookIds, otherProjectId, eventId, middleDeliveryId, from, to };
}
