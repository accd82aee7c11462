import { defineConfig } from 'prisma/config';

// Used by the Prisma CLI (generate, and migrate deploy where the engine can be downloaded).
// `npm run db:migrate` applies the same migrations offline through scripts/db.js.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/bellhop' },
});
