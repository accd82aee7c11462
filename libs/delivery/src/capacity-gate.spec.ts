import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import { CapacityGate, type CapacityOptions, type Slot, type SlotKey } from './capacity-gate';
import { type InFlightLimiter, LocalInFlightLimiter, RedisInFlightLimiter, type SlotHolder, type SlotLimits } from './in-flight-limiter';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const OPTIONS: CapacityOptions = {
  maxInFlightPerWebhook: 2,
  maxInFlightPerOrganization: 2,
  overCapDelayMs: [250, 1000],
  overCapDelayMaxMs: 5_000,
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

  it.each([2, 3])('lets %i jobs in line see a slot that another worker gives back', async (waiters) => {
    const [one, two] = [gateOf({ maxInFlightPerWebhook: 1, maxInFlightPerOrganization: 100 }), gateOf({ maxInFlightPerWebhook: 1, maxInFlightPerOrganization: 100, slotWaitMs: 1000, slotWaitMaxMs: 2000 })];
    const webhookId = `wh_line_${waiters}`;
    const holder = held(await one.enter(key(`org_line_h${waiters}`, webhookId)));
    // Worker two's jobs wait in one line for the webhook's only slot: past a few polls each.
    const started = Date.now();
    const taken = Array.from({ length: waiters }, (_, i) => two.enter(key(`org_line_${waiters}_${i}`, webhookId)).then((slot) => ({ slot, at: Date.now() })));
    await sleep(150);
    const releasedAt = Date.now();
    await holder.release(true);
    const first = await Promise.race(taken);
    expect(first.slot.kind).toBe('held');
    // Seen by polling within a few polls, not at the end of the wait (slotWaitMs after they came).
    expect(first.at - releasedAt).toBeLessThan(100);
    expect(first.at - started).toBeLessThan(500);
    await held(first.slot).release();
    for (const { slot } of await Promise.all(taken)) if (slot.kind !== 'denied') await slot.release();
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
    // Without the webhook's cap; the organization's still counted in this process.
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

describe('CapacityGate in one process', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it("keeps each organization's cap within the process while the limiter is unavailable", async () => {
    const failing: InFlightLimiter = {
      acquire: () => Promise.reject(new Error('Connection is closed.')),
      release: () => Promise.reject(new Error('Connection is closed.')),
    };
    const gate = new CapacityGate(failing, OPTIONS);
    // Attempts that are not finishing: none gives its slot back.
    const kinds: string[] = [];
    for (let i = 0; i < 5; i++) kinds.push((await gate.enter(key('org_flood', `wh_flood_${i}`))).kind);
    expect(kinds).toEqual(['unlimited', 'unlimited', 'denied', 'denied', 'denied']);
    // Another tenant still gets in, and so does this one when one of its attempts ends.
    const other = held(await gate.enter(key('org_calm', 'wh_calm')));
    expect(other.kind).toBe('unlimited');
    const first = held(await gate.enter(key('org_flood_b', 'wh_b1')));
    held(await gate.enter(key('org_flood_b', 'wh_b2')));
    expect((await gate.enter(key('org_flood_b', 'wh_b3'))).kind).toBe('denied');
    await first.release(true);
    expect((await gate.enter(key('org_flood_b', 'wh_b3'))).kind).toBe('unlimited');
  });

  // Either order in line: the job woken first may be the one whose webhook is full.
  it.each([
    ['whose webhook is full', 'W1', 'W2'],
    ['whose webhook is free', 'W2', 'W1'],
  ])("does not lose a wake-up in the organization's line when its first job is the one %s", async (_name, firstWebhook, secondWebhook) => {
    // No polling: only releases here wake waiting jobs.
    const gate = new CapacityGate(new LocalInFlightLimiter(), { ...OPTIONS, maxInFlightPerWebhook: 1, maxInFlightPerOrganization: 3, slotWaitMs: 500, slotPollMs: 60_000 });
    // Another tenant holds W1's only slot.
    const other = held(await gate.enter(key('org_P', 'W1')));
    // The tenant's attempts finish quickly here, so that its jobs wait in line at its cap...
    await held(await gate.enter(key('org_O', 'W3'))).release(true);
    // ...which it is at now.
    const holders = [held(await gate.enter(key('org_O', 'W3'))), held(await gate.enter(key('org_O', 'W4'))), held(await gate.enter(key('org_O', 'W5')))];
    const started = Date.now();
    const first = gate.enter(key('org_O', firstWebhook)).then((slot) => ({ slot, at: Date.now() }));
    await sleep(5);
    const second = gate.enter(key('org_O', secondWebhook)).then((slot) => ({ slot, at: Date.now() }));
    await sleep(45);
    const releasedAt = Date.now();
    await holders[0].release(true);
    // The job for W2 takes the tenant's freed slot at once: if the job woken for it finds W1 full,
    // it waits for W1 instead and passes the wake-up on.
    const free = await (firstWebhook === 'W2' ? first : second);
    expect(free.slot.kind).toBe('held');
    expect(free.at - releasedAt).toBeLessThan(100);
    expect(free.at - started).toBeLessThan(400);
    await other.release(true);
    const full = await (firstWebhook === 'W2' ? second : first);
    await Promise.all([free, full].map(({ slot }) => (slot.kind === 'denied' ? undefined : slot.release())));
    await Promise.all(holders.slice(1).map((h) => h.release()));
  });

  it('sends a job back for longer at each refusal, up to the maximum, jittered', async () => {
    const limiter = new LocalInFlightLimiter();
    const gate = new CapacityGate(limiter, { ...OPTIONS, maxInFlightPerOrganization: 1, slotTtlMs: 60_000 });
    const holder = held(await gate.enter(key('org_backoff', 'wh_backoff_1')));
    const delays = async (refusals: number) => {
      const out: number[] = [];
      for (let i = 0; i < 20; i++) {
        const slot = await gate.enter(key('org_backoff', 'wh_backoff_2'), refusals);
        if (slot.kind !== 'denied') throw new Error('expected a refusal');
        out.push(slot.retryAt.getTime() - Date.now());
      }
      return out;
    };
    for (const [refusals, low, high] of [
      [0, 250, 1000],
      [1, 500, 2000],
      [2, 1000, 4000],
      [10, 2500, 5000],
    ]) {
      const seen = await delays(refusals);
      expect(Math.min(...seen)).toBeGreaterThanOrEqual(low - 5);
      expect(Math.max(...seen)).toBeLessThanOrEqual(high);
      // Jittered: jobs refused together do not all come back together.
      expect(new Set(seen).size).toBeGreaterThan(10);
    }
    // Never beyond a quarter of the lease.
    const short = new CapacityGate(limiter, { ...OPTIONS, maxInFlightPerOrganization: 1, slotTtlMs: 8_000 });
    const late = await short.enter(key('org_backoff', 'wh_backoff_2'), 10);
    expect(late.kind === 'denied' && late.retryAt.getTime() - Date.now()).toBeLessThanOrEqual(2000);
    await holder.release();
  });

  it('names slot members per process with more than the pid (pid 1 in every container)', () => {
    const [, processPart] = CapacityGate.member('dlv_1').split('.');
    expect(processPart).not.toBe(process.pid.toString(36));
    expect(processPart.length).toBeGreaterThanOrEqual(8);
    expect(CapacityGate.member('dlv_1')).not.toBe(CapacityGate.member('dlv_1'));
  });
});
