import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Global, Logger, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Redis } from 'ioredis';
import { BELLHOP_CONFIG, type BellhopConfig } from '@bellhop/config';
import { REDIS, RedisModule } from './redis.module';

/**
 * A "Redis" that is down: it accepts connections and drops them at once, so ioredis fails and
 * reconnects quickly and keeps doing so.
 */
async function downRedis(): Promise<{ url: string; server: Server }> {
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `redis://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('RedisModule', () => {
  it('logs the shared connection failing at warn, once per interval, and never leaves an error unhandled', async () => {
    const { url, server } = await downRedis();
    @Global()
    @Module({ providers: [{ provide: BELLHOP_CONFIG, useValue: { redisUrl: url } as BellhopConfig }], exports: [BELLHOP_CONFIG] })
    class ConfigStub {}
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const stderr = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    const module = await Test.createTestingModule({ imports: [ConfigStub, RedisModule] }).compile();
    const redis = module.get<Redis>(REDIS);
    // Counted without an 'error' listener of the test's own, which would hide a missing one.
    const reconnections = { count: 0 };
    redis.on('reconnecting', () => reconnections.count++);
    try {
      // Several failed reconnections (ioredis waits 50 ms, 100 ms, ... between them).
      for (let waited = 0; reconnections.count < 3 && waited < 5_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(reconnections.count).toBeGreaterThanOrEqual(3);
      expect(stderr.mock.calls.filter(([first]) => String(first).includes('Unhandled error event'))).toEqual([]);
      const logged = warn.mock.calls.filter(([entry]) => String((entry as { msg?: string })?.msg).includes('Redis connection failing'));
      expect(logged).toHaveLength(1);
    } finally {
      redis.disconnect();
      await module.close();
      server.close();
      warn.mockRestore();
      stderr.mockRestore();
    }
  });
});
