'use strict';
/*
 * What an idle install costs: the built API and worker started with no traffic at all, then, after
 * a settling time, each process's CPU (from /proc/<pid>/stat) and RSS (VmRSS) over a window, the
 * Redis commands the two processes send (MONITOR, kept to their own connections: the Redis may be
 * shared) and the Postgres transactions committed and connections opened in their database
 * (pg_stat_database).
 *
 *   node bench/idle.js                      10 s to settle, then 60 s measured
 *   node bench/idle.js --settle 10 --window 60
 *   node bench/idle.js --scrape 15          also scrape both /metrics every 15 s, as Prometheus would
 *   node bench/idle.js --no-monitor         no Redis MONITOR (it slows a busy shared Redis a little)
 *   node bench/idle.js --commands           also list the Redis commands seen, by name
 *   node bench/idle.js --cpu-prof DIR       run both with --cpu-prof, profiles written to DIR at exit
 *   node bench/idle.js --json FILE          also write the figures to FILE
 *   node bench/idle.js --root DIR           run the build of another checkout (its dist/), e.g. the previous release
 *
 * Needs a migrated database (DATABASE_URL, default bellhop_idle on 127.0.0.1) and the apps built
 * (dist/). Uses QUEUE_PREFIX=bhidle unless given; ports PORT/WORKER_PORT default 3917/3918.
 */
const { NODE_FLAGS, appEnvironment } = require('../scripts/node-runtime');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { setInterval, clearInterval } = require('node:timers');
const { Client } = require('pg');
const { fetch } = require('undici');

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at === -1 ? fallback : args[at + 1];
};
const root = path.resolve(option('root', path.resolve(__dirname, '..')));
const flag = (name) => args.includes(`--${name}`);

const settleS = Number(option('settle', '10'));
const windowS = Number(option('window', '60'));
const scrapeS = Number(option('scrape', '0'));
const cpuProfDir = option('cpu-prof', null);
const jsonFile = option('json', null);
const monitor = !flag('no-monitor');
const databaseUrl = process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/bellhop_idle';
const redisUrl = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const port = Number(process.env.PORT ?? 3917);
const workerPort = Number(process.env.WORKER_PORT ?? 3918);
const ticksPerSecond = 100; // USER_HZ on Linux

const env = {
  ...process.env,
  NODE_ENV: process.env.NODE_ENV ?? 'development',
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  DATABASE_URL: databaseUrl,
  REDIS_URL: redisUrl.href,
  QUEUE_PREFIX: process.env.QUEUE_PREFIX ?? 'bhidle',
  PORT: String(port),
  WORKER_PORT: String(workerPort),
  HOST: '127.0.0.1',
};

function start(name, main) {
  const nodeArgs = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
  // As scripts/start.js runs the apps (heap flags, allocator setting).
  const child = spawn(process.execPath, [...NODE_FLAGS, ...nodeArgs, path.join(root, main)], { cwd: root, env: appEnvironment(env), stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.on('data', (chunk) => process.stderr.write(`[${name}] ${chunk}`));
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`${name} exited early (${code ?? signal})`);
      process.exit(1);
    }
  });
  return { name, child, pid: child.pid };
}

async function waitHealthy(url, deadlineMs) {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  throw new Error(`${url} not healthy in ${deadlineMs} ms`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** utime + stime of a process, in clock ticks. */
function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

function rssMb(pid) {
  const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

/** The local ports of a process's TCP connections to Redis (its sockets' inodes matched in /proc/net/tcp*). */
function redisPorts(pid) {
  const inodes = new Set();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set();
  const redisPort = Number(redisUrl.port || 6379);
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let lines;
    try {
      lines = fs.readFileSync(table, 'utf8').split('\n').slice(1);
    } catch {
      continue;
    }
    for (const line of lines) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !inodes.has(f[9])) continue;
      const local = parseInt(f[1].split(':')[1], 16);
      const remote = parseInt(f[2].split(':')[1], 16);
      if (remote === redisPort) ports.add(local);
    }
  }
  return ports;
}

/** MONITOR on its own connection; counts the commands of the given processes' connections (and the Lua calls their scripts make). */
function monitorRedis(processes) {
  const counts = { total: 0, byProcess: {}, byCommand: {} };
  let ports = new Map();
  const refresh = () => {
    ports = new Map();
    for (const p of processes) for (const port of redisPorts(p.pid)) ports.set(port, p.name);
  };
  refresh();
  const refresher = setInterval(refresh, 1000);
  const socket = net.connect(Number(redisUrl.port || 6379), redisUrl.hostname);
  let buffer = '';
  let counting = false;
  let lastOwner = null;
  socket.setEncoding('utf8');
  socket.write('MONITOR\r\n');
  socket.on('data', (chunk) => {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf('\r\n')) !== -1) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const match = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(line);
      if (!match) continue;
      const [, source, command] = match;
      let owner;
      if (source === 'lua') owner = lastOwner;
      else {
        owner = ports.get(Number(source.split(':').pop())) ?? null;
        lastOwner = owner && /^(evalsha|eval|fcall)$/i.test(command) ? owner : null;
      }
      if (!counting || !owner) continue;
      counts.total++;
      counts.byProcess[owner] = (counts.byProcess[owner] ?? 0) + 1;
      const key = `${owner} ${source === 'lua' ? 'lua:' : ''}${command.toUpperCase()}`;
      counts.byCommand[key] = (counts.byCommand[key] ?? 0) + 1;
    }
  });
  return {
    begin: () => (counting = true),
    end: () => {
      counting = false;
      clearInterval(refresher);
      socket.destroy();
      return counts;
    },
  };
}

/** Transactions and connections (sessions) of the database so far. */
async function databaseCounts(client, database) {
  const { rows } = await client.query('SELECT xact_commit + xact_rollback AS xacts, sessions FROM pg_stat_database WHERE datname = $1', [database]);
  return { xacts: Number(rows[0]?.xacts ?? 0), sessions: Number(rows[0]?.sessions ?? 0) };
}

let stopping = false;

async function main() {
  const database = new URL(databaseUrl).pathname.slice(1);
  // Read from another database, so that these reads are not counted.
  const statsUrl = new URL(databaseUrl);
  statsUrl.pathname = '/postgres';
  const stats = new Client({ connectionString: statsUrl.href });
  await stats.connect();

  const processes = [start('api', 'dist/apps/api/src/main.js'), start('worker', 'dist/apps/worker/src/main.js')];
  const stop = async () => {
    stopping = true;
    await Promise.all(processes.map((p) => new Promise((resolve) => {
      if (p.child.exitCode !== null) return resolve();
      p.child.once('exit', resolve);
      p.child.kill('SIGTERM');
    })));
    await stats.end().catch(() => undefined);
  };
  process.on('SIGINT', () => void stop().then(() => process.exit(130)));
  try {
    await Promise.all([waitHealthy(`http://127.0.0.1:${port}/health`, 30_000), waitHealthy(`http://127.0.0.1:${workerPort}/health`, 30_000)]);
    await sleep(settleS * 1000);

    const redis = monitor ? monitorRedis(processes) : null;
    await sleep(500);
    const scrapes = { count: 0, errors: 0 };
    const scraper = scrapeS > 0 ? setInterval(() => {
      for (const url of [`http://127.0.0.1:${port}/metrics`, `http://127.0.0.1:${workerPort}/metrics`]) {
        fetch(url).then((r) => r.text().then(() => (r.ok ? scrapes.count++ : scrapes.errors++)), () => scrapes.errors++);
      }
    }, scrapeS * 1000) : null;

    const startTicks = processes.map((p) => cpuTicks(p.pid));
    const startCounts = await databaseCounts(stats, database);
    const startedAt = process.hrtime.bigint();
    redis?.begin();
    const rss = processes.map(() => []);
    for (let s = 0; s < windowS; s++) {
      await sleep(1000);
      processes.forEach((p, i) => rss[i].push(rssMb(p.pid)));
    }
    const counted = redis?.end();
    const seconds = Number(process.hrtime.bigint() - startedAt) / 1e9;
    const endTicks = processes.map((p) => cpuTicks(p.pid));
    // pg_stat_database is flushed by each backend at most once a second (and by an idle one within 10 s).
    await sleep(1500);
    const endCounts = await databaseCounts(stats, database);
    if (scraper) clearInterval(scraper);

    const result = {
      settleSeconds: settleS,
      windowSeconds: Math.round(seconds),
      scrapeEverySeconds: scrapeS || null,
      processes: processes.map((p, i) => ({
        name: p.name,
        cpuPercent: +((100 * (endTicks[i] - startTicks[i])) / ticksPerSecond / seconds).toFixed(2),
        rssMb: { mean: +(rss[i].reduce((a, b) => a + b, 0) / rss[i].length).toFixed(1), max: +Math.max(...rss[i]).toFixed(1) },
        redisCommandsPerSecond: counted ? +((counted.byProcess[p.name] ?? 0) / seconds).toFixed(2) : null,
      })),
      redisCommandsPerSecond: counted ? +(counted.total / seconds).toFixed(2) : null,
      postgresTransactionsPerSecond: +((endCounts.xacts - startCounts.xacts) / seconds).toFixed(2),
      postgresConnectionsOpened: endCounts.sessions - startCounts.sessions,
      redisCommands: flag('commands') && counted ? Object.fromEntries(Object.entries(counted.byCommand).sort((a, b) => b[1] - a[1])) : undefined,
      scrapes: scrapeS > 0 ? scrapes : undefined,
    };
    for (const p of result.processes) {
      console.log(`${p.name.padEnd(7)} CPU ${p.cpuPercent.toFixed(2).padStart(5)} %  RSS ${p.rssMb.mean} MB (max ${p.rssMb.max})  Redis ${p.redisCommandsPerSecond ?? '-'} commands/s`);
    }
    console.log(`Redis ${result.redisCommandsPerSecond ?? '-'} commands/s, Postgres ${result.postgresTransactionsPerSecond} transactions/s and ${result.postgresConnectionsOpened} connections opened (over ${result.windowSeconds} s)`);
    if (result.redisCommands) for (const [k, v] of Object.entries(result.redisCommands)) console.log(`  ${String(v).padStart(6)}  ${k}`);
    if (jsonFile) fs.writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
