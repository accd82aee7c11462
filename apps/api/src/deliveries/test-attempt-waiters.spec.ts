import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import type { BellhopConfig } from '@bellhop/config';
import { TestAttemptWaiters } from './test-attempt-waiters';

/** A stand-in for the subscriber connection: the test emits what Redis would deliver. */
class FakeSubscriber extends EventEmitter {
  readonly subscribe = jest.fn(async () => 1);
  readonly quit = jest.fn(async () => 'OK');
}

describe('TestAttemptWaiters', () => {
  let subscriber: FakeSubscriber;
  let waiters: TestAttemptWaiters;
  let registry: Registry;

  beforeEach(async () => {
    subscriber = new FakeSubscriber();
    const redis = { duplicate: () => subscriber } as unknown as Redis;
    registry = new Registry();
    waiters = new TestAttemptWaiters(redis, { queuePrefix: 'bh' } as BellhopConfig, registry);
    await waiters.onModuleInit();
    // Nothing here may be answered by the periodic look or the bound: only by an announcement.
    Object.assign(waiters.options, { recheckMs: 60_000, boundMs: 60_000 });
  });

  const announce = (deliveryId: string, channel = 'bh:test-attempts') => subscriber.emit('message', channel, deliveryId);

  it('subscribes to the channel under the queue prefix', () => {
    expect(subscriber.subscribe).toHaveBeenCalledWith('bh:test-attempts');
  });

  it('does not lose an announcement that arrives while the first look is reading', async () => {
    let looks = 0;
    const look = async () => {
      looks++;
      // The attempt is recorded and announced after this read saw it pending.
      if (looks === 1) announce('dlv_1');
      return { done: looks > 1, value: looks };
    };
    await expect(waiters.wait('dlv_1', 'org_1', look, new AbortController().signal)).resolves.toEqual({ kind: 'done', value: 2 });
    expect(waiters.size).toBe(0);
  });

  it("wakes only the delivery announced, on its own installation's channel", async () => {
    let done = false;
    const looks = jest.fn(async () => ({ done, value: null }));
    const waiting = waiters.wait('dlv_1', 'org_1', looks, new AbortController().signal);
    await new Promise((resolve) => setImmediate(resolve));
    announce('dlv_2');
    announce('dlv_1', 'other:test-attempts');
    await new Promise((resolve) => setImmediate(resolve));
    expect(looks).toHaveBeenCalledTimes(1);
    done = true;
    announce('dlv_1');
    await expect(waiting).resolves.toEqual({ kind: 'done', value: null });
    expect(looks).toHaveBeenCalledTimes(2);
  });

  it('drops the waiter at once when the client goes away, and looks no more', async () => {
    let release!: () => void;
    const look = jest.fn(() => new Promise<{ done: boolean; value: null }>((resolve) => (release = () => resolve({ done: false, value: null }))));
    const client = new AbortController();
    const waiting = waiters.wait('dlv_1', 'org_1', look, client.signal);
    expect(waiters.size).toBe(1);
    // Gone in the middle of a look: counted out straight away, not when the read returns.
    client.abort();
    expect(waiters.size).toBe(0);
    release();
    await expect(waiting).resolves.toEqual({ kind: 'gone' });
    announce('dlv_1');
    await new Promise((resolve) => setImmediate(resolve));
    expect(look).toHaveBeenCalledTimes(1);
  });

  it('answers busy beyond the cap without registering or reading, and shows the waiters on the gauge', async () => {
    waiters.options.maxWaiters = 1;
    const client = new AbortController();
    const first = waiters.wait('dlv_1', 'org_1', async () => ({ done: false, value: 1 }), client.signal);
    const look = jest.fn(async () => ({ done: true, value: 2 }));
    await expect(waiters.wait('dlv_2', 'org_1', look, new AbortController().signal)).resolves.toEqual({ kind: 'busy' });
    expect(look).not.toHaveBeenCalled();
    expect(await registry.getSingleMetricAsString('bellhop_test_waiters')).toMatch(/^bellhop_test_waiters 1$/m);
    client.abort();
    await expect(first).resolves.toEqual({ kind: 'gone' });
    expect(await registry.getSingleMetricAsString('bellhop_test_waiters')).toMatch(/^bellhop_test_waiters 0$/m);
  });

  it("answers busy beyond one organization's share without taking another organization's place", async () => {
    Object.assign(waiters.options, { maxWaiters: 10, maxWaitersPerOrganization: 2 });
    const client = new AbortController();
    const pending = async () => ({ done: false, value: null });
    const held = [waiters.wait('dlv_1', 'org_a', pending, client.signal), waiters.wait('dlv_2', 'org_a', pending, client.signal)];
    const look = jest.fn(pending);
    await expect(waiters.wait('dlv_3', 'org_a', look, client.signal)).resolves.toEqual({ kind: 'busy' });
    expect(look).not.toHaveBeenCalled();
    // Another organization still waits.
    const other = waiters.wait('dlv_4', 'org_b', look, client.signal);
    expect(waiters.size).toBe(3);
    expect(look).toHaveBeenCalledTimes(1);
    client.abort();
    await Promise.all([...held, other]);
    // The places are given back.
    const again = new AbortController();
    const next = waiters.wait('dlv_5', 'org_a', pending, again.signal);
    expect(waiters.size).toBe(1);
    again.abort();
    await expect(next).resolves.toEqual({ kind: 'gone' });
  });

  it('keeps waiting when a look after the first fails, and fails with the first', async () => {
    let looks = 0;
    const look = async () => {
      looks++;
      if (looks === 2) throw new Error('Connection terminated unexpectedly');
      return { done: looks === 3, value: looks };
    };
    const waiting = waiters.wait('dlv_1', 'org_1', look, new AbortController().signal);
    await new Promise((resolve) => setImmediate(resolve));
    announce('dlv_1');
    await new Promise((resolve) => setImmediate(resolve));
    expect(looks).toBe(2);
    expect(waiters.size).toBe(1);
    announce('dlv_1');
    await expect(waiting).resolves.toEqual({ kind: 'done', value: 3 });
    const failing = jest.fn(async () => Promise.reject(new Error('Delivery not found')));
    await expect(waiters.wait('dlv_2', 'org_1', failing, new AbortController().signal)).rejects.toThrow('Delivery not found');
    expect(waiters.size).toBe(0);
  });

  it('answers every waiting request with its last look when the application shuts down, and new ones at once', async () => {
    const look = jest.fn(async () => ({ done: false, value: 'pending' }));
    const waiting = [waiters.wait('dlv_1', 'org_1', look, new AbortController().signal), waiters.wait('dlv_2', 'org_2', look, new AbortController().signal)];
    await new Promise((resolve) => setImmediate(resolve));
    expect(look).toHaveBeenCalledTimes(2);
    waiters.onModuleDestroy();
    await expect(Promise.all(waiting)).resolves.toEqual([
      { kind: 'timed_out', value: 'pending' },
      { kind: 'timed_out', value: 'pending' },
    ]);
    // Nothing read after the hook: the database may be disconnecting.
    expect(look).toHaveBeenCalledTimes(2);
    await expect(waiters.wait('dlv_3', 'org_1', look, new AbortController().signal)).resolves.toEqual({ kind: 'busy' });
    expect(look).toHaveBeenCalledTimes(2);
    expect(waiters.size).toBe(0);
  });

  it('closes its connection on shutdown', async () => {
    await waiters.onApplicationShutdown();
    expect(subscriber.quit).toHaveBeenCalled();
  });
});
