'use strict';
/*
 * The pipeline ceiling: the least a webhook sender on this stack must do per delivery, with nothing
 * else: a BullMQ job, an HMAC-SHA256 signature, an undici Pool POST, and the attempt row written in
 * batched multi-row INSERTs (a job completes only once its row is committed). Bellhop's burst
 * figure is reported as a ratio to this, measured in the same run on the same machine.
 *
 *   node bench/pipeline-ceiling.js <receiverUrl> <count> <databaseUrl> <redisUrl>
 */
const { createHmac, randomBytes } = require('node:crypto');
const { Queue, Worker } = require('bullmq');
const { Pool: PgPool } = require('pg');
const { Pool } = require('undici');

async function main() {
  const [receiverUrl, countText, databaseUrl, redisUrl] = process.argv.slice(2);
  const count = Number(countText);
  // The same parsing of REDIS_URL as Bellhop's (redis:, rediss: or unix:), so both use one transport.
  const { redisConnectionOptions } = require('../dist/libs/queue/src/connection');
  const connection = { ...redisConnectionOptions(redisUrl), maxRetriesPerRequest: null };
  const prefix = `bhceil${randomBytes(3).toString('hex')}`;
  const pg = new PgPool({ connectionString: databaseUrl, max: 8 });
  await pg.query('CREATE TABLE IF NOT EXISTS bench_ceiling_attempts (id text PRIMARY KEY, job_id text NOT NULL, status int, duration_ms int, headers jsonb, created_at timestamptz DEFAULT now())');
  await pg.query('TRUNCATE bench_ceiling_attempts');
  const http = new Pool(new URL(receiverUrl).origin, { connections: 64, pipelining: 1 });
  const secret = 'whsec_' + randomBytes(32).toString('base64');
  const body = JSON.stringify({ event: 'baseline.uploaded', timestamp: new Date().toISOString(), project: { id: 'proj_x', name: 'bench' }, data: { pad: 'x'.repeat(800) } });

  // Rows wait here until the next flush; each job's promise resolves when its row is committed.
  let pending = [];
  let flushing = null;
  async function flush() {
    while (pending.length) {
      const batch = pending;
      pending = [];
      const values = [];
      const params = [];
      batch.forEach((row, i) => {
        values.push(`($${i * 5 + 1}, $${i * 5 + 2}, $${i * 5 + 3}, $${i * 5 + 4}, $${i * 5 + 5})`);
        params.push(row.id, row.jobId, row.status, row.durationMs, row.headers);
      });
      try {
        await pg.query(`INSERT INTO bench_ceiling_attempts (id, job_id, status, duration_ms, headers) VALUES ${values.join(',')}`, params);
        batch.forEach((row) => row.resolve());
      } catch (err) {
        batch.forEach((row) => row.reject(err));
      }
    }
    flushing = null;
  }
  function record(row) {
    return new Promise((resolve, reject) => {
      pending.push({ ...row, resolve, reject });
      if (!flushing) flushing = new Promise((r) => setImmediate(r)).then(flush);
    });
  }

  const queue = new Queue('ceiling', { connection, prefix });
  let done = 0;
  let finished;
  const allDone = new Promise((resolve) => (finished = resolve));
  const worker = new Worker(
    'ceiling',
    async (job) => {
      const started = Date.now();
      const signature = 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
      const headers = { 'content-type': 'application/json', 'x-bellwether-signature': signature, 'x-bellwether-delivery': job.id };
      const res = await http.request({ method: 'POST', path: '/ceiling', headers, body });
      await res.body.dump();
      await record({ id: `att_${job.id}`, jobId: job.id, status: res.statusCode, durationMs: Date.now() - started, headers: JSON.stringify(headers) });
    },
    { connection, prefix, concurrency: 50, removeOnComplete: { count: 0 }, removeOnFail: { count: 0 } },
  );
  worker.on('completed', () => {
    done += 1;
    if (done === count) finished();
  });
  await worker.waitUntilReady();

  const start = Date.now();
  for (let i = 0; i < count; i += 500) {
    const n = Math.min(500, count - i);
    await queue.addBulk(Array.from({ length: n }, (_, k) => ({ name: 'd', data: { deliveryId: `dlv_${i + k}` }, opts: { jobId: `c-${i + k}`, removeOnComplete: true } })));
  }
  await allDone;
  const seconds = (Date.now() - start) / 1000;
  const rows = Number((await pg.query('SELECT count(*) FROM bench_ceiling_attempts')).rows[0].count);
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await pg.query('DROP TABLE bench_ceiling_attempts');
  await pg.end();
  await http.close();
  process.stdout.write(JSON.stringify({ count, seconds, perSecond: count / seconds, rows }) + '\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
