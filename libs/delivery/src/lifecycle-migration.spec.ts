import { Logger } from '@nestjs/common';
import { loadConfig } from '@bellhop/config';
import { PrismaService } from '@bellhop/database';
import { DeliveryStore } from './delivery.store';

/* The delivery-lifecycle migration on data written by the earlier code. */

describe('migration 20261129203000_delivery_lifecycle (real Postgres)', () => {
  const { readFileSync } = require('node:fs') as typeof import('node:fs');
  const { join } = require('node:path') as typeof import('node:path');
  const { Client } = require('pg') as typeof import('pg');
  const { randomBytes } = require('node:crypto') as typeof import('node:crypto');
  const serverUrl = process.env.TEST_POSTGRES_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
  const migrations = join(__dirname, '..', '..', '..', 'prisma', 'migrations');
  const name = `bellhop_migration_${randomBytes(6).toString('hex')}`;
  let prisma: PrismaService;
  let store: DeliveryStore;

  afterAll(async () => {
    await prisma?.onModuleDestroy();
    const admin = new Client({ connectionString: serverUrl });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.end();
  });

  it('gives a delivery whose manual retry was waiting under the earlier code its last outcome back, so it gets no automatic attempts', async () => {
    Logger.overrideLogger(false);
    const admin = new Client({ connectionString: serverUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE "${name}"`);
    await admin.end();
    const url = new URL(serverUrl);
    url.pathname = `/${name}`;
    const pg = new Client({ connectionString: url.toString() });
    await pg.connect();
    await pg.query(readFileSync(join(migrations, '20261123110017_init', 'migration.sql'), 'utf8'));
    // Old data: a delivery that used up its schedule (3 attempts with RETRY_SCHEDULE=150ms,300ms), then
    // POST /retry under the old code: status back to pending, next_trigger manual, due now.
    await pg.query(`INSERT INTO organizations (id, name, plan) VALUES ('org_m', 'Acme', 'team')`);
    await pg.query(`INSERT INTO projects (id, organization_id, name) VALUES ('prj_m', 'org_m', 'p')`);
    await pg.query(`INSERT INTO webhooks (id, organization_id, project_id, url, events, secret_ciphertext) VALUES ('wh_m', 'org_m', 'prj_m', 'https://example.com/h', '{baseline.uploaded}', 'v1.x.y.z')`);
    await pg.query(`INSERT INTO events (id, organization_id, project_id, type, body) VALUES ('evt_m', 'org_m', 'prj_m', 'baseline.uploaded', '{}')`);
    await pg.query(`INSERT INTO deliveries (id, organization_id, event_id, webhook_id, event_type, status, attempt_count, next_attempt_at, next_trigger)
                    VALUES ('dlv_m', 'org_m', 'evt_m', 'wh_m', 'baseline.uploaded', 'pending', 3, now() - interval '1 second', 'manual')`);
    // This migration and every later one, in order, as `npm run db:migrate` applies them.
    const { readdirSync } = require('node:fs') as typeof import('node:fs');
    for (const dir of readdirSync(migrations).filter((name) => /^\d+_/.test(name) && name >= '20261129203000').sort()) {
      await pg.query(readFileSync(join(migrations, dir, 'migration.sql'), 'utf8'));
    }
    await pg.end();

    const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: url.toString(), DATABASE_POOL_SIZE: '3', RETRY_SCHEDULE: '150ms,300ms' });
    prisma = new PrismaService(config);
    await prisma.onModuleInit();
    store = new DeliveryStore(prisma, config);
    const row = await prisma.delivery.findUniqueOrThrow({ where: { id: 'dlv_m' } });
    expect(row.manualRequestedAt).not.toBeNull();
    // The contract: the manual attempt is the only one; no automatic attempt, and the delivery stays
    // failed when it fails: no scheduled step may be claimed.
    const scheduled = await store.claim({ deliveryId: 'dlv_m', kind: 'scheduled' });
    expect(scheduled).toBeNull();
    expect(row.status).toBe('failed');
  });
});
