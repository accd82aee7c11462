'use strict';
/*
 * Bellhop's benchmark: the real API and worker (built, production mode) against local Postgres and
 * Redis, a receiver in its own process, and two references measured in the same run on the same
 * machine: the raw HTTP ceiling (undici Pool.request) and the pipeline ceiling (BullMQ + HMAC +
 * undici + batched INSERT). Bounded in count and time; cleans up after itself.
 *
 *   npm run bench                 all scenarios (about 5 minutes)
 *   npm run bench -- --quick      smaller counts, for a smoke run
 *   npm run bench -- --soak 600   also a soak at 500 events/s for 600 s, sampling the worker's RSS
 *   BENCH_PROFILE=api npm run bench  also writes a CPU profile of the API to bench/results/profiles
 *   npm run bench -- --only ingest,burst   some scenarios only (references, burst, batch, paced, ingest,
 *                                 validation, fanout, history, dashboard); the JSON then goes to bench/results/partial.json
 *   npm run bench -- --keep       keeps the bellhop_bench database afterwards, to look into it
 *   npm run bench -- --only history,dashboard --history-attempts 10000000
 *                                 the history and dashboard scenarios at another size (default 1,000,000)
 *   npm run bench -- --previous /path/to/other/checkout
 *                                 also runs the same scenarios against another build of Bellhop (a
 *                                 checkout of the previous release, built there), in the same run
 *                                 after this one, and prints its figures beside this release's
 */
const { fork, spawn, execFileSync } = require('node:child_process');
const { createHmac, randomBytes } = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { Client } = require('pg');
const { Pool, request } = require('undici');
const { NODE_FLAGS, appEnvironment } = require('../scripts/node-runtime');

/** Payloads that satisfy the documented schemas (the Bellwether documentation's own examples). */
const DRIFT = {
  fromVersion: 11,
  toVersion: 12,
  severity: 'breaking',
  changes: { toolsAdded: ['new_tool'], toolsRemoved: [], toolsModified: ['existing_tool'], breakingCount: 1, warningCount: 2 },
};
const FINDING = {
  version: 12,
  findings: [{ severity: 'high', category: 'injection', tool: 'execute_command', description: 'Potential command injection vulnerability' }],
};

const root = path.resolve(__dirname, '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const soakIndex = args.indexOf('--soak');
const soakSeconds = soakIndex >= 0 ? Number(args[soakIndex + 1] || 600) : 0;
const onlyIndex = args.indexOf('--only');
const only = onlyIndex >= 0 ? new Set(String(args[onlyIndex + 1] || '').split(',')) : null;
const runs = (scenario) => !only || only.has(scenario);
const previousIndex = args.indexOf('--previous');
const previousRoot = previousIndex >= 0 ? path.resolve(args[previousIndex + 1] || '') : null;
const N = {
  burst: quick ? 3000 : 20000,
  batch: quick ? 5000 : 20000,
  httpCeiling: quick ? 5000 : 20000,
  pipelineCeiling: quick ? 3000 : 20000,
  pacedSeconds: quick ? 8 : 30,
  pacedWarmup: quick ? 2 : 5,
  ingestSeconds: quick ? 5 : 10,
  fanout: 1000,
  fanoutRounds: quick ? 3 : 10,
  historyAttempts: args.includes('--history-attempts') ? Number(args[args.indexOf('--history-attempts') + 1]) : quick ? 100_000 : 1_000_000,
};
if (!(N.historyAttempts >= 0)) throw new Error('--history-attempts takes a number of attempt rows');

const DATABASE_ADMIN = process.env.BENCH_DATABASE_ADMIN_URL || 'postgresql://postgres@127.0.0.1:5432/postgres';
const DATABASE_URL = process.env.BENCH_DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/bellhop_bench';
// REDIS_URL as Bellhop reads it: redis://host:port, or unix:///path/to/redis.sock for a Unix socket
// (and BENCH_DATABASE_URL=postgresql://postgres@localhost/bellhop_bench?host=/var/run/postgresql).
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const redisOptions = () => require('../dist/libs/queue/src/connection').redisConnectionOptions(REDIS_URL);
const API_PORT = Number(process.env.BENCH_API_PORT || 3300);
const WORKER_PORT = Number(process.env.BENCH_WORKER_PORT || 3301);
const API = `http://127.0.0.1:${API_PORT}`;
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const deadlineOf = (ms) => Date.now() + ms;

function percentile(values, p) {
  if (!values.length) return null;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
const round = (x, digits = 1) => (x === null || x === undefined ? null : Number(x.toFixed(digits)));

function log(message) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// ---- processes ------------------------------------------------------------------------------

const children = [];
function cleanupChildren() {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
}
process.on('exit', cleanupChildren);
process.on('SIGINT', () => process.exit(130));

function startReceiver() {
  const child = fork(path.join(__dirname, 'receiver.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  let seq = 0;
  const waiting = new Map();
  child.on('message', (msg) => {
    if (msg.id !== undefined && waiting.has(msg.id)) {
      waiting.get(msg.id)(msg);
      waiting.delete(msg.id);
    }
  });
  const call = (msg) =>
    new Promise((resolve) => {
      const id = ++seq;
      waiting.set(id, resolve);
      child.send({ ...msg, id });
    });
  return new Promise((resolve) => {
    child.once('message', (msg) => {
      resolve({
        child,
        url: `http://127.0.0.1:${msg.port}`,
        stats: (withLatencies = false) => call({ type: 'stats', withLatencies }),
        reset: (trackLatency = true) => call({ type: 'reset', trackLatency }),
      });
    });
  });
}

function appEnv() {
  return {
    ...process.env,
    NODE_ENV: 'production',
    DATABASE_URL,
    REDIS_URL,
    QUEUE_PREFIX: `bhbench${randomBytes(3).toString('hex')}`,
    JWT_SECRET: randomBytes(32).toString('hex'),
    SECRETS_KEY: randomBytes(32).toString('base64'),
    ALLOW_HTTP_DESTINATIONS: 'true',
    ALLOW_PRIVATE_DESTINATIONS: 'true',
    RATE_LIMIT: '100000000/1m',
    PUBLISH_RATE_LIMIT: '100000000/1s',
    AUTH_RATE_LIMIT: '100000/1m',
    HOST: '127.0.0.1',
    PORT: String(API_PORT),
    WORKER_PORT: String(WORKER_PORT),
    LOG_LEVEL: 'warn',
    DEFAULT_PLAN: 'team',
  };
}

function startApp(name, env, appRoot = root) {
  const entry = path.join(appRoot, 'dist', 'apps', name, 'src', 'main.js');
  // BENCH_PROFILE=api (or worker, or api,worker) writes a V8 CPU profile of that app on exit.
  const profile = (process.env.BENCH_PROFILE || '').split(',').includes(name) ? ['--cpu-prof', '--cpu-prof-dir', path.join(root, 'bench', 'results', 'profiles')] : [];
  // This build as scripts/start.js, the image and the units run it (heap flags, allocator setting);
  // another build (--previous) as its own start command did: plain node.
  const runtime = appRoot === root ? { flags: NODE_FLAGS, env: appEnvironment(env) } : { flags: [], env };
  const child = spawn(process.execPath, [...runtime.flags, ...profile, entry], { env: runtime.env, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

/**
 * Server-side counters: transactions committed in the benchmark database, rows it inserted,
 * updated and deleted (pg_stat_database: a Postgres 15 session that goes idle publishes its counts
 * within 10 s, so the reading after a scenario waits 11 s), and commands Redis has run (INFO stats:
 * the whole server, so only meaningful with nothing else using it).
 */
async function serverCounts(db, settleMs) {
  await sleep(settleMs);
  const { rows } = await db.query(
    `SELECT xact_commit::float8 AS transactions, (tup_inserted + tup_updated + tup_deleted)::float8 AS rows_written
       FROM pg_stat_database WHERE datname = current_database()`,
  );
  const { Redis } = require('ioredis');
  const redis = new Redis({ ...redisOptions(), lazyConnect: true, maxRetriesPerRequest: 1 });
  let redisCommands = 0;
  try {
    await redis.connect();
    redisCommands = Number(/total_commands_processed:(\d+)/.exec(await redis.info('stats'))?.[1] ?? 0);
  } finally {
    redis.disconnect();
  }
  return { transactions: rows[0].transactions, rowsWritten: rows[0].rows_written, redisCommands };
}

/** The worker's count of jobs sent back without an attempt, by reason, or null if it has none. */
async function sentBackCounts() {
  try {
    const res = await request(`http://127.0.0.1:${WORKER_PORT}/metrics`);
    const text = await res.body.text();
    const count = (reason) => Number((new RegExp(`^bellhop_delivery_jobs_sent_back_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(text) || [0, 0])[1]);
    if (!text.includes('bellhop_delivery_jobs_sent_back_total')) return null;
    return { over_cap: count('over_cap'), not_due: count('not_due') };
  } catch {
    return null;
  }
}

async function waitReady(url, ms = 30_000) {
  const deadline = deadlineOf(ms);
  for (;;) {
    try {
      const res = await request(`${url}/health/ready`);
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not ready within ${ms} ms`);
    await sleep(200);
  }
}

/** CPU seconds (user + system) and peak RSS of a process, from /proc. */
function usage(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    const ticks = os.constants && 100; // USER_HZ is 100 on Linux
    const cpuSeconds = (Number(stat[11]) + Number(stat[12])) / ticks;
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name) => Number((new RegExp(`${name}:\\s+(\\d+)`).exec(status) || [0, 0])[1]);
    return { cpuSeconds, rssMb: kb('VmRSS') / 1024, peakRssMb: kb('VmHWM') / 1024 };
  } catch {
    return { cpuSeconds: 0, rssMb: 0, peakRssMb: 0 };
  }
}

/** CPU seconds so far of the API, the worker, all Postgres and Redis processes, and the whole box. */
function cpuSample(apiPid, workerPid) {
  const byName = { postgres: 0, redis: 0 };
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const raw = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const name = raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')'));
      const key = name.startsWith('postgres') ? 'postgres' : name.startsWith('redis') ? 'redis' : null;
      if (!key) continue;
      const stat = raw.slice(raw.lastIndexOf(') ') + 2).split(' ');
      // Own time, plus that of reaped children: Postgres backends that exit (a pool closing a
      // connection) hand their time to the postmaster.
      byName[key] += (Number(stat[11]) + Number(stat[12]) + Number(stat[13]) + Number(stat[14])) / 100;
    } catch {
      // the process ended meanwhile
    }
  }
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const busy = cpu.reduce((a, b) => a + b, 0) - cpu[3] - (cpu[4] || 0);
  return { api: usage(apiPid).cpuSeconds, worker: usage(workerPid).cpuSeconds, ...byName, box: busy / 100 };
}

// ---- API client ------------------------------------------------------------------------------

const api = new Pool(API, { connections: 64, keepAliveTimeout: 60_000 });

async function call(method, urlPath, body, token, extraHeaders = {}) {
  const headers = { 'content-type': 'application/json', ...extraHeaders };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await api.request({ method, path: urlPath, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.body.text();
  if (res.statusCode >= 400) throw new Error(`${method} ${urlPath} -> ${res.statusCode} ${text.slice(0, 200)}`);
  return text ? JSON.parse(text) : null;
}

/** Runs `fn(i)` for i in [0, count) with at most `concurrency` in flight. */
async function inParallel(count, concurrency, fn) {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      const i = next++;
      await fn(i);
    }
  });
  await Promise.all(lanes);
}

async function waitForReceipts(receiver, count, ms) {
  const deadline = deadlineOf(ms);
  for (;;) {
    const stats = await receiver.stats();
    if (stats.count >= count) return stats;
    if (Date.now() > deadline) return stats;
    await sleep(100);
  }
}

// ---- scenarios -------------------------------------------------------------------------------

async function httpCeiling(receiver) {
  const pool = new Pool(receiver.url, { connections: 64 });
  const secret = 'whsec_' + randomBytes(32).toString('base64');
  const body = JSON.stringify({ event: 'baseline.uploaded', timestamp: new Date().toISOString(), project: { id: 'proj_x', name: 'bench' }, data: { pad: 'x'.repeat(800) } });
  await receiver.reset(false);
  const start = now();
  await inParallel(N.httpCeiling, 64, async () => {
    const headers = { 'content-type': 'application/json', 'x-bellwether-signature': 'sha256=' + createHmac('sha256', secret).update(body).digest('hex') };
    const res = await pool.request({ method: 'POST', path: '/ceiling', headers, body });
    await res.body.dump();
  });
  const seconds = (now() - start) / 1000;
  await pool.close();
  return { count: N.httpCeiling, seconds: round(seconds, 2), perSecond: round(N.httpCeiling / seconds, 0) };
}

function pipelineCeiling(receiver) {
  const out = execFileSync(process.execPath, [path.join(__dirname, 'pipeline-ceiling.js'), receiver.url, String(N.pipelineCeiling), DATABASE_URL, REDIS_URL], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 180_000,
  });
  const result = JSON.parse(out.trim().split('\n').pop());
  return { count: result.count, seconds: round(result.seconds, 2), perSecond: round(result.perSecond, 0), rowsWritten: result.rows };
}

async function attemptsOf(db, webhookId) {
  const { rows } = await db.query(
    `SELECT count(*)::int AS attempts, count(DISTINCT a.delivery_id)::int AS deliveries
       FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1`,
    [webhookId],
  );
  return rows[0];
}

/**
 * `count` events to one webhook of a project of the scenario's own (so that the attempt rows
 * counted are its only), published by `publishAll(projectId, data)`; through to the last receipt
 * and the last attempt row.
 */
async function oneWebhookBurst(ctx, name, count, publishAll) {
  const { receiver, token, organizationId, db } = ctx;
  const project = await call('POST', '/projects', { name: `bench-${name}`, organizationId }, token);
  const projectId = project.project.id;
  const webhook = await call('POST', `/projects/${projectId}/webhooks`, { url: `${receiver.url}/${name}`, events: ['baseline.drift_detected'] }, token);
  const webhookId = webhook.webhook.id;
  await receiver.reset(false);
  const data = { ...DRIFT, pad: 'x'.repeat(600) };
  const start = now();
  await publishAll(projectId, data);
  const publishedAt = now();
  const stats = await waitForReceipts(receiver, count, 240_000);
  const seconds = (stats.last - start) / 1000;
  // Receipt comes before the attempt row is committed: wait (bounded) for the last rows.
  let counted = await attemptsOf(db, webhookId);
  for (const deadline = deadlineOf(10_000); counted.deliveries < count && Date.now() < deadline; counted = await attemptsOf(db, webhookId)) await sleep(100);
  return {
    events: count,
    received: stats.count,
    duplicates: stats.duplicates,
    attemptRows: counted.attempts,
    deliveriesWithAttempts: counted.deliveries,
    publishSeconds: round((publishedAt - start) / 1000, 2),
    seconds: round(seconds, 2),
    perSecond: round(stats.count / seconds, 0),
  };
}

/** N.burst single-event publishes to one webhook, 64 in flight. */
function burst(ctx) {
  return oneWebhookBurst(ctx, 'burst', N.burst, (projectId, data) =>
    inParallel(N.burst, 64, () => call('POST', `/projects/${projectId}/events`, { event: 'baseline.drift_detected', data }, ctx.token)),
  );
}

/**
 * The same burst through batch publishing: N.batch events to one webhook, 100 events a request
 * (`POST /projects/{id}/events/batch`), 8 requests in flight.
 */
function batchBurst(ctx) {
  const perRequest = 100;
  const events = (data) => Array.from({ length: perRequest }, () => ({ event: 'baseline.drift_detected', data }));
  return oneWebhookBurst(ctx, 'batch', N.batch, (projectId, data) =>
    inParallel(Math.ceil(N.batch / perRequest), 8, () => call('POST', `/projects/${projectId}/events/batch`, { events: events(data) }, ctx.token)),
  );
}

async function paced(ctx, rate) {
  const { receiver, token, projectId } = ctx;
  await receiver.reset(true);
  const total = rate * N.pacedSeconds;
  const warmup = rate * N.pacedWarmup;
  const start = now();
  const inflight = [];
  let late = 0;
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - now();
    if (wait > 1) await sleep(wait);
    else if (wait < -50) late += 1;
    const data = { ...DRIFT, seq: i, warm: i < warmup, sentAt: now() };
    inflight.push(call('POST', `/projects/${projectId}/events`, { event: 'baseline.drift_detected', data }, token));
    if (inflight.length > 2000) await Promise.all(inflight.splice(0, 1000));
  }
  await Promise.all(inflight);
  const stats = await waitForReceipts(receiver, total, 60_000);
  const full = await receiver.stats(true);
  const measured = full.latencies.slice(warmup);
  return {
    rate,
    seconds: N.pacedSeconds,
    events: total,
    received: stats.count,
    publisherLate: late,
    p50Ms: round(percentile(measured, 50)),
    p95Ms: round(percentile(measured, 95)),
    p99Ms: round(percentile(measured, 99)),
  };
}

async function ingest(ctx, event = 'baseline.drift_detected', forSeconds = N.ingestSeconds) {
  const { token, projectId, receiver } = ctx;
  await receiver.reset(false);
  const latencies = [];
  const end = now() + forSeconds * 1000;
  const start = now();
  let count = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (now() < end) {
        const t0 = now();
        await call('POST', `/projects/${projectId}/events`, { event, data: { ...DRIFT, n: count } }, token);
        latencies.push(now() - t0);
        count += 1;
      }
    }),
  );
  const seconds = (now() - start) / 1000;
  const stats = await waitForReceipts(receiver, count, 120_000);
  return { events: count, seconds: round(seconds, 2), perSecond: round(count / seconds, 0), p50Ms: round(percentile(latencies, 50)), p99Ms: round(percentile(latencies, 99)), received: stats.count };
}

/**
 * What validating `data` costs a publish, with everything else the same: two of the project's own
 * types, one without a schema and one with the documented schema of baseline.drift_detected, take
 * the same path (the type looked up, one subscriber); only the second validates. Alternating
 * rounds, so that drift of the box falls on both.
 */
async function validationCost(ctx) {
  const { token, projectId, receiver } = ctx;
  const catalog = await call('GET', '/event-types');
  const schema = catalog.eventTypes.find((t) => t.type === 'baseline.drift_detected').schema;
  await call('POST', `/projects/${projectId}/event-types`, { type: 'bench.unchecked' }, token);
  await call('POST', `/projects/${projectId}/event-types`, { type: 'bench.checked', schema }, token);
  await call('POST', `/projects/${projectId}/webhooks`, { url: `${receiver.url}/validation`, events: ['bench.*'] }, token);
  const totals = { 'bench.unchecked': { events: 0, seconds: 0, p99: [] }, 'bench.checked': { events: 0, seconds: 0, p99: [] } };
  const rounds = quick ? 2 : 4;
  for (let round = 0; round < rounds; round += 1) {
    for (const type of round % 2 === 0 ? ['bench.unchecked', 'bench.checked'] : ['bench.checked', 'bench.unchecked']) {
      const result = await ingest(ctx, type, N.ingestSeconds / 2);
      totals[type].events += result.events;
      totals[type].seconds += result.seconds;
      totals[type].p99.push(result.p99Ms);
    }
  }
  const rate = (t) => round(t.events / t.seconds, 0);
  const without = rate(totals['bench.unchecked']);
  const withValidation = rate(totals['bench.checked']);
  return {
    rounds,
    withoutValidationPerSecond: without,
    withValidationPerSecond: withValidation,
    ratio: round(withValidation / without, 3),
    withoutValidationP99Ms: Math.max(...totals['bench.unchecked'].p99),
    withValidationP99Ms: Math.max(...totals['bench.checked'].p99),
  };
}

/** A project with N.fanout webhooks subscribed to one type; set up outside the measured rounds. */
async function fanoutProject(ctx) {
  const { token, receiver, organizationId } = ctx;
  const project = await call('POST', '/projects', { name: 'bench-fanout', organizationId }, token);
  const projectId = project.project.id;
  await inParallel(N.fanout, 16, (i) => call('POST', `/projects/${projectId}/webhooks`, { url: `${receiver.url}/fanout/${i}`, events: ['baseline.security_finding'] }, token));
  return projectId;
}

async function fanout(ctx, projectId) {
  const { token, receiver } = ctx;
  const publishMs = [];
  const allReceivedMs = [];
  for (let round_ = 0; round_ < N.fanoutRounds; round_++) {
    await receiver.reset(false);
    const t0 = now();
    const res = await call('POST', `/projects/${projectId}/events`, { event: 'baseline.security_finding', data: { ...FINDING, round: round_ } }, token);
    publishMs.push(now() - t0);
    if (res.deliveries !== N.fanout) throw new Error(`fan-out reached ${res.deliveries} webhooks, expected ${N.fanout}`);
    const stats = await waitForReceipts(receiver, N.fanout, 60_000);
    allReceivedMs.push(stats.last - t0);
  }
  return {
    webhooks: N.fanout,
    rounds: N.fanoutRounds,
    // Deliveries, for the costs per delivery.
    received: N.fanout * N.fanoutRounds,
    publishP50Ms: round(percentile(publishMs, 50)),
    publishP99Ms: round(percentile(publishMs, 99)),
    allReceivedP50Ms: round(percentile(allReceivedMs, 50)),
    allReceivedMaxMs: round(Math.max(...allReceivedMs)),
  };
}

/**
 * The first 10 characters of a ULID made `hoursAgo` hours (and a minute) before now: delivery ids
 * of the seeded history, one per hour of the 30 days, so that its rows go to the monthly
 * partitions of attempts as real ones do.
 */
function seededIdTimes() {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  const at = Date.now();
  return Array.from({ length: 720 }, (_, hoursAgo) => {
    let ms = at - hoursAgo * 3_600_000 - 60_000;
    let out = '';
    for (let i = 0; i < 10; i++) {
      out = alphabet[ms % 32] + out;
      ms = Math.floor(ms / 32);
    }
    return out;
  });
}

/** A seeded delivery's id (its random part marked H), in SQL, from generate_series `g` and the times in parameter `times`. */
const SEEDED_DELIVERY_ID = (g, times) => `'dlv_' || (${times}::text[])[${g} % 720 + 1] || 'H' || lpad(${g}::text, 15, '0')`;

/** Fills the attempts table to N.historyAttempts rows (5 per delivery) on one webhook, in SQL. */
async function history(ctx) {
  const { db, token, webhookId } = ctx;
  const existing = (await db.query('SELECT count(*)::int AS n FROM attempts')).rows[0].n;
  const needed = Math.max(0, N.historyAttempts - existing);
  const deliveries = Math.ceil(needed / 5);
  log(`history: adding ${deliveries} deliveries with 5 attempts each`);
  const { rows } = await db.query('SELECT d.event_id, d.organization_id FROM deliveries d WHERE d.webhook_id = $1 LIMIT 1', [webhookId]);
  const template = rows[0];
  const times = seededIdTimes();
  // A build with attempts partitioned by month: the months of the 30 days, as the worker adds them.
  if ((await db.query(`SELECT to_regproc('bellhop_attempts_add_month') IS NOT NULL AS partitioned`)).rows[0].partitioned) {
    await db.query(`SELECT bellhop_attempts_add_month((now() AT TIME ZONE 'UTC' - make_interval(days => d))::date) FROM unnest(ARRAY[0, 15, 30, 31]) AS d`);
  }
  await db.query(
    `INSERT INTO events (id, organization_id, project_id, type, body, created_at)
     SELECT 'evt_H' || lpad(g::text, 25, '0'), e.organization_id, e.project_id, e.type, e.body, now() - (g % 720) * interval '1 hour' - interval '1 minute'
       FROM generate_series(1, $1) g, (SELECT * FROM events WHERE id = $2) e`,
    [deliveries, template.event_id],
  );
  await db.query(
    `INSERT INTO deliveries (id, organization_id, project_id, event_id, webhook_id, event_type, status, attempt_count, scheduled_attempts, next_attempt_at,
                             last_status_code, last_response_time_ms, created_at, completed_at)
     SELECT ${SEEDED_DELIVERY_ID('g', '$4')}, $3, (SELECT project_id FROM webhooks WHERE id = $2), 'evt_H' || lpad(g::text, 25, '0'), $2, 'baseline.drift_detected', 'failed', 5, 5, NULL,
            500, 12, now() - (g % 720) * interval '1 hour' - interval '1 minute', now() - (g % 720) * interval '1 hour'
       FROM generate_series(1, $1) g`,
    [deliveries, webhookId, template.organization_id, times],
  );
  await db.query(
    `INSERT INTO attempts (id, delivery_id, attempt, trigger, created_at, request_url, request_headers, response_status, response_headers, response_body, response_time_ms)
     SELECT 'att_H' || lpad((g * 5 + k)::text, 25, '0'), ${SEEDED_DELIVERY_ID('g', '$2')}, k, 'scheduled', now() - (g % 720) * interval '1 hour' - interval '1 minute' + k * interval '1 second',
            'http://127.0.0.1/bench', '{"content-type":"application/json"}'::jsonb, 500, '{"content-type":"text/plain"}'::jsonb, 'boom', 5 + (g * 7 + k * 13) % 400
       FROM generate_series(1, $1) g, generate_series(1, 5) k`,
    [deliveries, times],
  );
  // The rows above were written around the recording statement: their rollups are built as the
  // dashboard migration builds them for an existing history.
  await db.query(ROLLUP_SEEDED_HISTORY);
  await db.query('ANALYZE attempts; ANALYZE deliveries; ANALYZE events');
  const total = (await db.query('SELECT count(*)::int AS n FROM attempts')).rows[0].n;
  const sample = (await db.query(`SELECT id FROM deliveries WHERE webhook_id = $1 ORDER BY random() LIMIT 200`, [webhookId])).rows.map((r) => r.id);
  const listMs = [];
  const pageMs = [];
  const getMs = [];
  for (let i = 0; i < 200; i++) {
    let t0 = now();
    await call('GET', `/webhooks/${webhookId}/deliveries?limit=50`, undefined, token);
    listMs.push(now() - t0);
    t0 = now();
    await call('GET', `/webhooks/${webhookId}/deliveries?limit=50&status=failed&cursor=${sample[i % sample.length]}`, undefined, token);
    pageMs.push(now() - t0);
    t0 = now();
    await call('GET', `/deliveries/${sample[i % sample.length]}`, undefined, token);
    getMs.push(now() - t0);
  }
  return {
    attemptRows: total,
    listFirstPageP95Ms: round(percentile(listMs, 95)),
    listFilteredCursorP95Ms: round(percentile(pageMs, 95)),
    getDeliveryP95Ms: round(percentile(getMs, 95)),
  };
}

/** The dashboard migration's backfill, for the history seeded above (events evt_H...). */
const ROLLUP_SEEDED_HISTORY = `
  INSERT INTO webhook_stats_hourly AS h (webhook_id, hour, project_id, deliveries_succeeded, deliveries_failed, deliveries_cancelled,
                                         attempts, attempts_succeeded, attempts_failed, latency)
  SELECT s.webhook_id, s.hour, max(s.project_id), sum(s.ds), sum(s.df), sum(s.dc), sum(s.a), sum(s.asu), sum(s.af), bellhop_counts_sum(s.lat)
    FROM (
      SELECT d.webhook_id, date_trunc('hour', d.created_at, 'UTC') AS hour, d.project_id,
             count(*) FILTER (WHERE d.status = 'succeeded') AS ds, count(*) FILTER (WHERE d.status = 'failed') AS df,
             count(*) FILTER (WHERE d.status = 'cancelled') AS dc, 0 AS a, 0 AS asu, 0 AS af, '{}'::int[] AS lat
        FROM deliveries d WHERE d.event_id LIKE 'evt_H%' AND NOT d.test AND d.status <> 'pending' GROUP BY 1, 2, 3
      UNION ALL
      SELECT d.webhook_id, date_trunc('hour', a.created_at, 'UTC'), d.project_id, 0, 0, 0, count(*),
             count(*) FILTER (WHERE a.error_code IS NULL AND a.response_status BETWEEN 200 AND 299),
             count(*) FILTER (WHERE NOT (a.error_code IS NULL AND a.response_status BETWEEN 200 AND 299)),
             bellhop_histogram(COALESCE(array_agg(bellhop_latency_bucket(a.response_time_ms)) FILTER (WHERE a.response_status IS NOT NULL), '{}'))
        FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.event_id LIKE 'evt_H%' AND NOT d.test GROUP BY 1, 2, 3
    ) s
   GROUP BY s.webhook_id, s.hour
  ON CONFLICT (webhook_id, hour) DO UPDATE SET
         deliveries_succeeded = h.deliveries_succeeded + EXCLUDED.deliveries_succeeded, deliveries_failed = h.deliveries_failed + EXCLUDED.deliveries_failed,
         deliveries_cancelled = h.deliveries_cancelled + EXCLUDED.deliveries_cancelled, attempts = h.attempts + EXCLUDED.attempts,
         attempts_succeeded = h.attempts_succeeded + EXCLUDED.attempts_succeeded, attempts_failed = h.attempts_failed + EXCLUDED.attempts_failed,
         latency = bellhop_counts_add(h.latency, EXCLUDED.latency);
  INSERT INTO webhook_errors_hourly AS e (webhook_id, hour, code, count)
  SELECT d.webhook_id, date_trunc('hour', a.created_at, 'UTC'), COALESCE(a.error_code, 'http_' || a.response_status), count(*)
    FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
   WHERE d.event_id LIKE 'evt_H%' AND NOT d.test AND NOT (a.error_code IS NULL AND a.response_status BETWEEN 200 AND 299)
   GROUP BY 1, 2, 3
  ON CONFLICT (webhook_id, hour, code) DO UPDATE SET count = e.count + EXCLUDED.count`;

/**
 * The dashboard at N.historyAttempts attempts in the project (the history scenario's rows, spread
 * over 30 days): stats of the busy webhook and of the project for each window, and the project's
 * delivery search with each kind of filter, first pages and a page further on.
 */
async function dashboard(ctx) {
  const { db, token, webhookId, projectId } = ctx;
  const attemptRows = (await db.query('SELECT count(*)::int AS n FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.project_id = $1', [projectId])).rows[0].n;
  const cursor = (await db.query(`SELECT id FROM deliveries WHERE project_id = $1 ORDER BY id DESC OFFSET 5000 LIMIT 1`, [projectId])).rows[0]?.id;
  const from = new Date(Date.now() - 10 * 86_400_000).toISOString();
  const to = new Date(Date.now() - 9 * 86_400_000).toISOString();
  const routes = {
    'webhook stats 24h': `/webhooks/${webhookId}/stats?window=24h`,
    'webhook stats 7d': `/webhooks/${webhookId}/stats?window=7d`,
    'webhook stats 30d': `/webhooks/${webhookId}/stats?window=30d`,
    'project stats 24h': `/projects/${projectId}/stats?window=24h`,
    'project stats 30d': `/projects/${projectId}/stats?window=30d`,
    'search, no filter': `/projects/${projectId}/deliveries?limit=50`,
    'search, a page further on': `/projects/${projectId}/deliveries?limit=50&cursor=${cursor}`,
    'search status=failed': `/projects/${projectId}/deliveries?status=failed&limit=50`,
    'search status=succeeded (rare)': `/projects/${projectId}/deliveries?status=succeeded&limit=50`,
    'search webhookId': `/projects/${projectId}/deliveries?webhookId=${webhookId}&limit=50`,
    'search event': `/projects/${projectId}/deliveries?event=baseline.drift_detected&limit=50`,
    'search statusCode=500': `/projects/${projectId}/deliveries?statusCode=500&limit=50`,
    'search errorCode=timeout (none)': `/projects/${projectId}/deliveries?errorCode=timeout&limit=50`,
    'search from/to (one day, 10 days ago)': `/projects/${projectId}/deliveries?from=${from}&to=${to}&limit=50`,
    'search test=true (none)': `/projects/${projectId}/deliveries?test=true&limit=50`,
  };
  const rounds = quick ? 20 : 100;
  const out = [];
  for (const [name, url] of Object.entries(routes)) {
    await call('GET', url, undefined, token);
    const ms = [];
    for (let i = 0; i < rounds; i++) {
      const t0 = now();
      await call('GET', url, undefined, token);
      ms.push(now() - t0);
    }
    out.push({ route: name, p50Ms: round(percentile(ms, 50)), p95Ms: round(percentile(ms, 95)) });
  }
  return { attemptRows, routes: out };
}

async function soak(ctx, seconds) {
  const { token, projectId, worker } = ctx;
  const samples = [];
  const rate = 500;
  const start = now();
  const inflight = [];
  let i = 0;
  let nextSample = start;
  while (now() - start < seconds * 1000) {
    const due = start + (i * 1000) / rate;
    const wait = due - now();
    if (wait > 1) await sleep(wait);
    inflight.push(call('POST', `/projects/${projectId}/events`, { event: 'baseline.drift_detected', data: { ...DRIFT, i } }, token));
    if (inflight.length > 2000) await Promise.all(inflight.splice(0, 1000));
    i += 1;
    if (now() >= nextSample) {
      samples.push({ t: round((now() - start) / 1000, 0), rssMb: round(usage(worker.pid).rssMb, 1) });
      nextSample += 10_000;
    }
  }
  await Promise.all(inflight);
  const steady = samples.filter((s) => s.t >= 60);
  const rss = steady.map((s) => s.rssMb);
  const meanOf = (values) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  const mean = meanOf(rss);
  // Growth, as opposed to the garbage collector's sawtooth: the means of the first and last thirds,
  // and the least-squares slope over the steady part.
  const third = Math.max(1, Math.floor(rss.length / 3));
  const ts = steady.map((s) => s.t / 60);
  const tMean = meanOf(ts);
  const slope = steady.reduce((acc, s, i) => acc + (ts[i] - tMean) * (s.rssMb - mean), 0) / Math.max(1e-9, ts.reduce((acc, t) => acc + (t - tMean) ** 2, 0));
  return {
    seconds,
    rate,
    samples,
    meanRssMb: round(mean),
    minRssMb: Math.min(...rss),
    maxRssMb: Math.max(...rss),
    maxDeviationPct: round((Math.max(...rss.map((r) => Math.abs(r - mean))) / mean) * 100),
    firstThirdMeanRssMb: round(meanOf(rss.slice(0, third))),
    lastThirdMeanRssMb: round(meanOf(rss.slice(-third))),
    slopeMbPerMinute: round(slope, 2),
  };
}

// ---- main ------------------------------------------------------------------------------------

async function dropDatabase() {
  const name = new URL(DATABASE_URL).pathname.slice(1);
  const admin = new Client({ connectionString: DATABASE_ADMIN });
  await admin.connect();
  await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
  await admin.query(`DROP DATABASE IF EXISTS "${name}"`);
  await admin.end();
}

/** Removes what the run left in Redis under its own queue prefix (BullMQ's meta and event keys). */
async function dropQueueKeys(prefix) {
  const { Redis } = require('ioredis');
  const redis = new Redis({ ...redisOptions(), lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } catch (err) {
    log(`could not remove the run's Redis keys (${prefix}:*): ${err.message}`);
  } finally {
    redis.disconnect();
  }
}

/** A fresh database with the migrations of the build under test (its own scripts/db.js). */
async function resetDatabase(appRoot = root) {
  await dropDatabase();
  execFileSync(process.execPath, [path.join(appRoot, 'scripts', 'db.js'), 'migrate'], { cwd: appRoot, env: { ...process.env, DATABASE_URL }, stdio: ['ignore', 'ignore', 'inherit'] });
}

function table(title, rows) {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const width = keys.map((k) => Math.max(k.length, ...rows.map((r) => String(r[k] ?? '').length)));
  const line = (cells) => '| ' + cells.map((c, i) => String(c ?? '').padEnd(width[i])).join(' | ') + ' |';
  return [`\n${title}`, line(keys), '|' + width.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...rows.map((r) => line(keys.map((k) => r[k])))].join('\n');
}

/**
 * The targets, each read from a release's results and the same run's pipeline ceiling.
 * `value` is null when the scenario did not run.
 */
const TARGETS = [
  { name: 'whole-box CPU per event, burst of single publishes', unit: 'ms', at: 'most', limit: 1.5, value: (r) => r.burst?.cpuSecondsPer1000.wholeBox },
  { name: 'burst of single publishes', unit: '/s', at: 'least', limit: 1200, value: (r) => r.burst?.perSecond, complete: (r) => everyDelivery(r.burst) },
  { name: 'burst of single publishes vs pipeline ceiling', unit: '', at: 'least', limit: 0.35, value: (r, ceiling) => ratio(r.burst?.perSecond, ceiling), complete: (r) => everyDelivery(r.burst) },
  { name: 'burst through batch publish', unit: '/s', at: 'least', limit: 2500, value: (r) => r.batch?.perSecond, complete: (r) => everyDelivery(r.batch) },
  { name: 'burst through batch publish vs pipeline ceiling', unit: '', at: 'least', limit: 0.8, value: (r, ceiling) => ratio(r.batch?.perSecond, ceiling), complete: (r) => everyDelivery(r.batch) },
  { name: 'paced 500/s, enqueue to receipt p99', unit: 'ms', at: 'most', limit: 100, value: (r) => r.paced.find((p) => p.rate === 500)?.p99Ms },
  { name: 'paced 1,000/s, enqueue to receipt p99', unit: 'ms', at: 'most', limit: 250, value: (r) => r.paced.find((p) => p.rate === 1000)?.p99Ms },
  { name: 'ingest, one subscriber', unit: '/s', at: 'least', limit: 1500, value: (r) => r.ingest?.perSecond },
  { name: 'ingest p99', unit: 'ms', at: 'most', limit: 50, value: (r) => r.ingest?.p99Ms },
  { name: 'fan-out to 1,000 webhooks, all received (slowest round)', unit: 'ms', at: 'most', limit: 1000, value: (r) => r.fanout?.allReceivedMaxMs },
  { name: 'worker peak RSS', unit: 'MB', at: 'most', limit: 256, value: (r) => r.resources.workerPeakRssMb },
  { name: 'API peak RSS', unit: 'MB', at: 'most', limit: 256, value: (r) => r.resources.apiPeakRssMb },
];

/** Every event received once, with exactly one attempt row each (the guarantee a rate is worth nothing without). */
function everyDelivery(r) {
  return !r || (r.received === r.events && r.duplicates === 0 && r.attemptRows === r.events && r.deliveriesWithAttempts === r.events);
}

function ratio(value, ceiling) {
  return value && ceiling ? round(value / ceiling, 2) : null;
}

function targetRows(current, previous, ceiling) {
  return TARGETS.map((t) => {
    const value = t.value(current, ceiling) ?? null;
    const lost = t.complete && !t.complete(current);
    const met = value === null ? 'not run' : lost ? 'not met (events lost)' : (t.at === 'most' ? value <= t.limit : value >= t.limit) ? 'met' : 'not met';
    const row = { target: t.name, [`goal`]: `${t.at === 'most' ? '≤' : '≥'} ${t.limit}${t.unit ? ' ' + t.unit : ''}`, 'this release': value, met };
    if (previous) row['previous release'] = t.value(previous, ceiling) ?? null;
    return row;
  });
}

/**
 * One build of Bellhop through the scenarios: a fresh database with its migrations, its API and
 * worker (built, production mode), its own organization and project.
 */
async function runRelease(appRoot, receiver, label) {
  log(`${label}: ${appRoot}`);
  if (!fs.existsSync(path.join(appRoot, 'dist', 'apps', 'worker', 'src', 'main.js'))) throw new Error(`build first: npm run build (in ${appRoot})`);
  log('resetting the benchmark database');
  await resetDatabase(appRoot);
  const env = appEnv();
  const apiProcess = startApp('api', env, appRoot);
  const worker = startApp('worker', env, appRoot);
  await waitReady(API);
  await waitReady(`http://127.0.0.1:${WORKER_PORT}`);
  const db = new Client({ connectionString: DATABASE_URL });
  await db.connect();

  const signup = await call('POST', '/auth/signup', { email: `bench-${randomBytes(4).toString('hex')}@example.com`, password: 'benchmark password', name: 'Bench' });
  const token = signup.session.token;
  const organizationId = signup.organization.id;
  const project = await call('POST', '/projects', { name: 'bench', organizationId }, token);
  const projectId = project.project.id;
  const webhook = await call('POST', `/projects/${projectId}/webhooks`, { url: `${receiver.url}/bellhop`, events: ['baseline.drift_detected'] }, token);
  const ctx = { receiver, token, organizationId, projectId, webhookId: webhook.webhook.id, db, worker, api: apiProcess };

  // Warm up JIT, pools and caches, then measure.
  await receiver.reset(false);
  await inParallel(500, 32, () => call('POST', `/projects/${projectId}/events`, { event: 'baseline.drift_detected', data: { ...DRIFT, warm: true } }, token));
  await waitForReceipts(receiver, 500, 30_000);

  /**
   * CPU seconds per 1,000 events of each part of the box while `fn` runs, and how many queue jobs
   * the worker sent back without an attempt meanwhile (at a cap, or early; builds that do not
   * count them say null).
   */
  const measured = async (fn) => {
    const sentBackBefore = await sentBackCounts();
    const countsBefore = await serverCounts(db, 1_100);
    const before = cpuSample(apiProcess.pid, worker.pid);
    const out = await fn();
    const after = cpuSample(apiProcess.pid, worker.pid);
    const countsAfter = await serverCounts(db, 11_000);
    const sentBackAfter = await sentBackCounts();
    const events = Math.max(1, out.received ?? out.events);
    const per1000 = (key) => round(((after[key] - before[key]) / events) * 1000, 3);
    out.cpuSecondsPer1000 = { api: per1000('api'), worker: per1000('worker'), postgres: per1000('postgres'), redis: per1000('redis'), wholeBox: per1000('box') };
    // Counts rather than times: what each event costs the servers, whatever else the box was doing.
    out.postgresTransactionsPerEvent = round((countsAfter.transactions - countsBefore.transactions) / events, 2);
    out.postgresRowsWrittenPerEvent = round((countsAfter.rowsWritten - countsBefore.rowsWritten) / events, 2);
    out.redisCommandsPerEvent = round((countsAfter.redisCommands - countsBefore.redisCommands) / events, 1);
    out.jobsSentBackOverCap = sentBackAfter && sentBackBefore ? sentBackAfter.over_cap - sentBackBefore.over_cap : null;
    out.jobsSentBackEarly = sentBackAfter && sentBackBefore ? sentBackAfter.not_due - sentBackBefore.not_due : null;
    return out;
  };

  const result = { appRoot, burst: null, batch: null, paced: [], ingest: null, validation: null, fanout: null, history: null, dashboard: null, soak: null, errors: [] };
  /** Runs one scenario; a failure is recorded and the others still run (a build may lack a route). */
  const scenario = async (name, description, fn) => {
    if (!runs(name)) return;
    log(`${name}: ${description}`);
    try {
      await fn();
    } catch (err) {
      log(`  failed: ${err.message}`);
      result.errors.push({ scenario: name, message: err.message });
    }
  };
  await scenario('burst', `${N.burst} events to one webhook`, async () => {
    result.burst = await measured(() => burst(ctx));
    log(`  ${result.burst.perSecond}/s`);
  });
  await scenario('batch', `${N.batch} events to one webhook, 100 a request`, async () => {
    result.batch = await measured(() => batchBurst(ctx));
    log(`  ${result.batch.perSecond}/s`);
  });
  await scenario('paced', `500 and 1,000 events/s for ${N.pacedSeconds} s each`, async () => {
    for (const rate of [500, 1000]) {
      result.paced.push(await paced(ctx, rate));
      log(`  ${rate}/s: p99 ${result.paced.at(-1).p99Ms} ms`);
    }
  });
  await scenario('ingest', 'publish as fast as 32 clients can', async () => {
    result.ingest = await measured(() => ingest(ctx));
    log(`  ${result.ingest.perSecond}/s, p99 ${result.ingest.p99Ms} ms`);
  });
  await scenario('validation', `ingest of a project's own type with and without a schema, ${quick ? 2 : 4} alternating rounds`, async () => {
    result.validation = await validationCost(ctx);
    log(`  with ${result.validation.withValidationPerSecond}/s, without ${result.validation.withoutValidationPerSecond}/s (ratio ${result.validation.ratio})`);
  });
  await scenario('fanout', `one event to ${N.fanout} webhooks`, async () => {
    const projectId = await fanoutProject(ctx);
    result.fanout = await measured(() => fanout(ctx, projectId));
    log(`  publish p99 ${result.fanout.publishP99Ms} ms, all received in ${result.fanout.allReceivedMaxMs} ms`);
  });
  await scenario('history', `${N.historyAttempts} attempt rows`, async () => {
    result.history = await history(ctx);
    log(`  list p95 ${result.history.listFirstPageP95Ms} ms, get p95 ${result.history.getDeliveryP95Ms} ms`);
  });
  await scenario('dashboard', 'stats and search', async () => {
    if (!result.history) {
      log(`  seeding ${N.historyAttempts} attempt rows first`);
      await history(ctx);
    }
    result.dashboard = await dashboard(ctx);
    for (const r of result.dashboard.routes) log(`  ${r.route}: p95 ${r.p95Ms} ms`);
  });
  if (soakSeconds > 0) {
    log(`soak: 500 events/s for ${soakSeconds} s`);
    result.soak = await soak(ctx, soakSeconds);
  }
  result.resources = {
    workerPeakRssMb: round(usage(worker.pid).peakRssMb),
    apiPeakRssMb: round(usage(apiProcess.pid).peakRssMb),
    workerCpuSecondsPer1000: result.burst?.cpuSecondsPer1000.worker ?? null,
    apiCpuSecondsPer1000: result.burst?.cpuSecondsPer1000.api ?? null,
  };

  await db.end();
  apiProcess.kill('SIGTERM');
  worker.kill('SIGTERM');
  await Promise.all([apiProcess, worker].map((child) => (child.exitCode === null && child.signalCode === null ? new Promise((resolve) => child.once('exit', resolve)) : null)));
  await dropQueueKeys(env.QUEUE_PREFIX);
  return result;
}

const flat = (r) => {
  if (!r) return r;
  const { cpuSecondsPer1000, ...rest } = r;
  return cpuSecondsPer1000 ? { ...rest, ...Object.fromEntries(Object.entries(cpuSecondsPer1000).map(([k, v]) => [`cpu/1k ${k}`, v])) } : rest;
};

function printRelease(label, r, http, pipeline) {
  const vs = (perSecond) => (http && pipeline ? { vsHttpCeiling: ratio(perSecond, http.perSecond), vsPipelineCeiling: ratio(perSecond, pipeline.perSecond) } : {});
  console.log(`\n== ${label} (${path.relative(root, r.appRoot) || '.'})`);
  if (r.burst) console.log(table('Burst, single-event publishes', [{ ...flat(r.burst), ...vs(r.burst.perSecond) }]));
  if (r.batch) console.log(table('Burst through batch publish (100 a request)', [{ ...flat(r.batch), ...vs(r.batch.perSecond) }]));
  if (r.paced.length) console.log(table('Paced: enqueue to receipt', r.paced));
  if (r.ingest) console.log(table('Ingest (one subscriber)', [flat(r.ingest)]));
  if (r.validation) console.log(table('Ingest with and without payload validation (same path, alternating)', [r.validation]));
  if (r.fanout) console.log(table('Fan-out (costs per delivery)', [flat(r.fanout)]));
  if (r.history) console.log(table('History', [r.history]));
  if (r.dashboard) console.log(table(`Dashboard at ${r.dashboard.attemptRows} attempts in the project`, r.dashboard.routes));
  console.log(table('Resources', [r.resources]));
  if (r.errors.length) console.log(table('Scenarios that failed', r.errors));
  if (r.soak) console.log(table('Soak', [{ ...r.soak, samples: r.soak.samples.length }]));
}

async function main() {
  const started = Date.now();
  const receiver = await startReceiver();
  log(`receiver at ${receiver.url}`);

  let http = null;
  let pipeline = null;
  if (runs('references') || runs('burst') || runs('batch')) {
    // The pipeline ceiling writes its rows into the benchmark database: give it one.
    await resetDatabase();
    log('reference 1: raw undici Pool.request to the receiver');
    http = await httpCeiling(receiver);
    log(`  ${http.perSecond}/s`);
    log('reference 2: BullMQ + HMAC + undici + batched INSERT');
    pipeline = pipelineCeiling(receiver);
    log(`  ${pipeline.perSecond}/s`);
  }

  const current = await runRelease(root, receiver, 'this release');
  const outDir = path.join(root, 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, only ? 'partial.json' : quick ? 'quick.json' : 'latest.json');
  // This release's figures are kept even if the other build's run fails.
  fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), references: { httpCeiling: http, pipelineCeiling: pipeline }, ...current, appRoot: undefined }, null, 2) + '\n');
  let previous = null;
  if (previousRoot) {
    previous = await runRelease(previousRoot, receiver, 'previous release').catch((err) => {
      log(`previous release: ${err.message}`);
      return null;
    });
  }

  const ratios = (r) =>
    r.burst && http && pipeline
      ? { burstVsHttpCeiling: ratio(r.burst.perSecond, http.perSecond), burstVsPipelineCeiling: ratio(r.burst.perSecond, pipeline.perSecond), batchVsPipelineCeiling: ratio(r.batch?.perSecond, pipeline.perSecond) }
      : null;
  const { appRoot: _current, ...currentResult } = current;
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGb: round(os.totalmem() / 2 ** 30, 0), node: process.version },
    quick,
    only: only ? [...only] : null,
    references: { httpCeiling: http, pipelineCeiling: pipeline },
    ...currentResult,
    ratios: ratios(current),
    targets: targetRows(current, previous, pipeline?.perSecond),
    previous: previous ? { ...previous, appRoot: undefined, ratios: ratios(previous) } : null,
    durationSeconds: round((Date.now() - started) / 1000, 0),
  };

  if (http && pipeline) {
    console.log(table('References (same run, same machine)', [
      { reference: 'HTTP ceiling: undici Pool.request', perSecond: http.perSecond },
      { reference: 'pipeline ceiling: BullMQ + HMAC + undici + batched INSERT', perSecond: pipeline.perSecond },
    ]));
  }
  printRelease('this release', current, http, pipeline);
  if (previous) printRelease('previous release', previous, http, pipeline);
  console.log(table(`Targets (ratios against this run's pipeline ceiling, ${pipeline?.perSecond ?? '?'}/s)`, result.targets));

  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwritten to ${path.relative(root, file)} in ${result.durationSeconds} s`);
  if (!only && !quick) console.log(`chart: ${path.relative(root, require('./chart').draw(file))}`);

  await api.close();
  receiver.child.kill('SIGTERM');
  if (!args.includes('--keep')) await dropDatabase().catch(() => undefined);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
