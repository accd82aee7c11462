import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Client } from 'pg';

/** Test support only (excluded from the worker build): a throwaway, migrated Postgres database. */
export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

const ROOT = join(__dirname, '..', '..', '..', '..');

/* eslint-disable no-restricted-properties -- test support: it reads the test server's address and hands the environment to the migration script. */

export async function createTestDatabase(serverUrl = process.env.TEST_POSTGRES_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres'): Promise<TestDatabase> {
  const name = `bellhop_unit_${randomBytes(6).toString('hex')}`;
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  // scripts/db.js creates the database and applies prisma/migrations, exactly as `npm run db:migrate` does.
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'db.js'), 'migrate'], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url.toString() },
    stdio: 'pipe',
  });
  return {
    url: url.toString(),
    async drop() {
      const admin = new Client({ connectionString: serverUrl });
      await admin.connect();
      try {
        await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    },
  };
}
