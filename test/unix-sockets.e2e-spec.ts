import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { Redis } from 'ioredis';
import { TEST_DATABASE_URL } from './support/env';
import { documented } from './support/payloads';
import { Receiver } from './support/receiver';
import { Stack, createDatabaseFromTemplate, dropDatabase, startStack } from './support/stack';
import { createWebhook, eventually, newTenant } from './support/tenant';

/**
 * Unix sockets instead of loopback TCP, when the URLs say so: `unix:///path/redis.sock` for Redis
 * and `?host=/socket/dir` for Postgres. The Redis server here listens on a socket only (port 0),
 * so every command Bellhop sends it, BullMQ's included, went through the socket; Postgres is
 * asked which of its sessions on the test database came over TCP.
 */
describe('Postgres and Redis over Unix sockets', () => {
  const socket = path.join(tmpdir(), `bellhop-redis-${randomBytes(4).toString('hex')}.sock`);
  let redisServer: ChildProcess;
  let stack: Stack;
  let receiver: Receiver;
  let databaseUrl: string;
  let socketDatabaseUrl: string;

  beforeAll(async () => {
    redisServer = spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await eventually(async () => (existsSync(socket) ? true : undefined), 10_000);

    // The socket directory of the test server, as Postgres reports it.
    const tcp = new Client({ connectionString: TEST_DATABASE_URL });
    await tcp.connect();
    let directory: string;
    try {
      directory = (await tcp.query<{ unix_socket_directories: string }>('SHOW unix_socket_directories')).rows[0].unix_socket_directories.split(',')[0].trim();
    } finally {
      await tcp.end();
    }

    databaseUrl = await createDatabaseFromTemplate(`bhsock${randomBytes(4).toString('hex')}`);
    const url = new URL(databaseUrl);
    socketDatabaseUrl = `postgresql://${url.username}@localhost${url.pathname}?host=${encodeURIComponent(directory)}`;
    receiver = await new Receiver().start();
    stack = await startStack({ databaseUrl: socketDatabaseUrl, env: { REDIS_URL: `unix://${socket}` } });
  });

  afterAll(async () => {
    await stack?.stop();
    await receiver?.stop();
    if (databaseUrl) await dropDatabase(databaseUrl);
    redisServer?.kill('SIGKILL');
    rmSync(socket, { force: true });
  });

  it('publishes, queues and delivers with both connections on sockets', async () => {
    const tenant = await newTenant(stack, 'Sockets');
    await createWebhook(stack, tenant, `${receiver.url}/hook`);
    const published = await stack
      .http()
      .post(`/projects/${tenant.projectId}/events`)
      .set(tenant.auth)
      .send({ event: 'baseline.drift_detected', data: documented('baseline.drift_detected') })
      .expect(202);
    await receiver.waitFor(1);
    expect(receiver.requests[0].headers['webhook-id']).toBe(published.body.event.id);

    // The attempt was recorded, through the socket connection of the worker.
    const delivery = await eventually(async () => {
      const res = await stack.http().get(`/events/${published.body.event.id}`).set(tenant.auth).expect(200);
      return res.body.event.deliveries[0]?.status === 'succeeded' ? res.body.event.deliveries[0] : undefined;
    });
    expect(delivery.attempts).toBe(1);

    // Every session on this database but the one asking is a socket one (no client address).
    const check = new Client({ connectionString: databaseUrl });
    await check.connect();
    try {
      const { rows } = await check.query<{ socket: number; tcp: number }>(
        `SELECT count(*) FILTER (WHERE client_addr IS NULL)::int AS socket, count(*) FILTER (WHERE client_addr IS NOT NULL)::int AS tcp
           FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`,
      );
      expect(rows[0].tcp).toBe(0);
      expect(rows[0].socket).toBeGreaterThan(0);
    } finally {
      await check.end();
    }

    // The queue lives on the socket-only server.
    const redis = new Redis({ path: socket, lazyConnect: true });
    try {
      await redis.connect();
      expect(await redis.exists(`${stack.queuePrefix}:delivery:meta`)).toBe(1);
    } finally {
      redis.disconnect();
    }
  });
});
