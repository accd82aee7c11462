import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import { CapacityGate, type CapacityOptions, type Slot, type SlotKey } from './capacity-gate';
import { RedisInFlightLimiter, type SlotHolder, type SlotLimits } from './in-flight-limiter';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const OPTIONS: CapacityOptions = {
  maxInFlightPerWebhook: 2,
  maxInFlightPerOrganization: 2,
  overCapDelayMs: [250, 1000],
  slotWaitMs: 100,
  slotWaitMaxMs: 1000,
  slotTtlMs: 10_000,
};

let sequence = 0;
function key(organizationId: string, webhookId: string): SlotKey {
  const deliveryId = `dlv_${++sequence}`;
  return { deliveryId, webhookId, organizationId, member: CapacityGate.member(deliveryId) };
}

function held(slot: Slot): Extract<Slot, { release: unknown }> {
  if (slot.kind === 'denied') throw new Error('expected a slot, the gate denied it');
  return slot;
}

/** Two worker processes as far as the caps go: each its own gate and Redis connection, one queue prefix. */
describe('CapacityGate across workers (real Redis)', () => {
  const prefix = `bellhop-unit-${randomBytes(4).toString('hex')}`;
  const connections: Redis[] = [];
  const gateOf = (options: Partial<CapacityOptions> = {}, limiter?: RedisInFlightLimiter) => {
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    connections.push(redis);
    return new CapacityGate(limiter ?? new RedisInFlightLimiter(redis, prefix), { ...OPTIONS, ...options });
  };
  const members = (cap: string) => connections[0].zrange(`${prefix}:${cap}`, '0', '-1');

  beforeAll(() => Logger.overrideLogger(false));
  afterAll(async () => {
    const keys = await connections[0].keys(`${prefix}:*`);
    if (keys.length) await connections[0].del(...keys);
    await Promise.all(connections.map((redis) => redis.quit()));
  });

  it("shares one organization's cap between two workers", async () => {
    const [one, two] = [gateOf(), gateOf()];
    // The tenant's two slots, both taken in worker one by attempts that are not finishing.
    const first = held(await one.enter(key('org_shared', 'wh_1')));
    const second = held(await one.enter(key('org_shared', 'wh_2')));
    // Worker two has every slot of its own free, yet gives the tenant none, and at once.
    const at = Date.now();
    const refused = await two.enter(key('org_shared', 'wh_3'));
    expect(refused.kind).toBe('denied');
    expect(Date.now() - at).toBeLessThan(50);
    // Another tenant is not held back.
    await held(await two.enter(key('org_other', 'wh_4'))).release();
    // A slot given back in worker one is worker two's to take.
    await first.release();
    const third = held(await two.enter(key('org_shared', 'wh_3')));
    await Promise.all([second.release(), third.release()]);
    expect(await members('inflight-org:org_shared')).toEqual([]);
  });

  it("gives a killed worker's slots to another worker once their lease is over", async () => {
    const crashed = gateOf({ slotTtlMs: 200 });
    const survivor = gateOf();
    // The crashed worker never gives these back.
    held(await crashed.enter(key('org_crash', 'wh_c1')));
    held(await crashed.enter(key('org_crash', 'wh_c2')));
    expect((await survivor.enter(key('org_crash', 'wh_c3'))).kind).toBe('denied');
    await sleep(250);
    await held(await survivor.enter(key('org_crash', 'wh_c3'))).release();
  });

  it('lets the first job in line take a slot that another worker gives back', async () => {
    const [one, two] = [gateOf(), gateOf({ slotWaitMs: 500 })];
    const holders = [held(await one.enter(key('org_wait', 'wh_w'))), held(await one.enter(key('org_wait_b', 'wh_w')))];
    // The webhook is at its cap: worker two's job waits in place, polling for releases elsewhere.
    const waiting = two.enter(key('org_wait_c', 'wh_w'));
    await sleep(100);
    const releasedAt = Date.now();
    await holders[0].release(true);
    const slot = held(await waiting);
    expect(Date.now() - releasedAt).toBeLessThan(100);
    await Promise.all([slot.release(), holders[1].release()]);
    expect(await members('inflight:wh_w')).toEqual([]);
  });

  it('gives back slots taken by a script whose answer was lost, and delivers without the caps', async () => {
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    connections.push(redis);
    // The script runs in Redis, but its answer never reaches the worker.
    const lossy = new (class extends RedisInFlightLimiter {
      override async acquire(holder: SlotHolder, limits: SlotLimits): Promise<never> {
        await super.acquire(holder, limits);
        throw new Error('Connection is closed.');
      }
    })(redis, prefix);
    const gate = gateOf({}, lossy);
    const slot = held(await gate.enter(key('org_lost', 'wh_lost')));
    expect(slot.kind).toBe('unlimited');
    await sleep(50);
    expect(await members('inflight:wh_lost')).toEqual([]);
    expect(await members('inflight-org:org_lost')).toEqual([]);
    await slot.release();
  });

  it('gives the slots back once, however often the release is called', async () => {
    const gate = gateOf({ maxInFlightPerOrganization: 1 });
    const mine = key('org_once', 'wh_once');
    const slot = held(await gate.enter(mine));
    expect(await members('inflight-org:org_once')).toEqual([mine.member]);
    await Promise.all([slot.release(true), slot.release(), slot.release(false)]);
    expect(await members('inflight-org:org_once')).toEqual([]);
    expect(await members('inflight:wh_once')).toEqual([]);
    // Someone else's slot, taken after, is not given back by a late call of the first release.
    const next = held(await gate.enter(key('org_once', 'wh_once')));
    await slot.release();
    expect(await members('inflight-org:org_once')).toHaveLength(1);
    await next.release();
  });
});
