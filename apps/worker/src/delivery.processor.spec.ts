import { Logger } from '@nestjs/common';
import { DelayedError, Job } from 'bullmq';
import { loadConfig } from '@bellhop/config';
import type { AttemptOutcome, DeliveryService } from '@bellhop/delivery';
import type { DeliveryJob } from '@bellhop/queue';
import { DeliveryProcessor, OVER_CAP_PRIORITY, deliveryWorkerOptions } from './delivery.processor';

describe('deliveryWorkerOptions', () => {
  it('uses the configured concurrency and a lock well above the delivery timeout', () => {
    const config = loadConfig({ NODE_ENV: 'test', WORKER_CONCURRENCY: '7', DELIVERY_TIMEOUT: '45s' });
    const options = deliveryWorkerOptions(config);
    expect(options.concurrency).toBe(7);
    expect(options.lockDuration).toBeGreaterThanOrEqual(45_000 + 30_000);
    expect(options.stalledInterval).toBeLessThanOrEqual(options.lockDuration!);
    expect(options.drainDelay).toBe(10);
  });
});

describe('DeliveryProcessor', () => {
  beforeAll(() => Logger.overrideLogger(false));
  const config = loadConfig({ NODE_ENV: 'test' });
  const job = (id: string, data: DeliveryJob = { deliveryId: 'dlv_01ABC', kind: 'scheduled', attempt: 1 }) => {
    const moveToDelayed = jest.fn().mockResolvedValue(undefined);
    const changePriority = jest.fn().mockResolvedValue(undefined);
    return { job: { id, data, priority: 0, moveToDelayed, changePriority } as unknown as Job<DeliveryJob>, moveToDelayed, changePriority };
  };
  const processor = (outcome: AttemptOutcome | Error) => {
    const attempt = jest.fn(() => (outcome instanceof Error ? Promise.reject(outcome) : Promise.resolve(outcome)));
    return { processor: new DeliveryProcessor({ attempt } as unknown as DeliveryService, config), attempt };
  };

  it('passes the typed job data (the step it was made for, not a parse of its id) to the service', async () => {
    const { processor: p, attempt } = processor({ kind: 'skipped', reason: 'done' });
    const data: DeliveryJob = { deliveryId: 'dlv_01ABC', webhookId: 'wh_1', organizationId: 'org_1', kind: 'scheduled', attempt: 2 };
    await p.process(job('dlv_01ABC-2-swept', data).job, 'token');
    expect(attempt).toHaveBeenCalledWith(data, 0);
  });

  it('tells the service how many times the job was sent back before', async () => {
    const { processor: p, attempt } = processor({ kind: 'over_cap', at: new Date(Date.now() + 500) });
    const { job: j } = job('dlv_01ABC-1');
    // BullMQ's count of starts, this one included.
    Object.assign(j, { attemptsStarted: 4 });
    await expect(p.process(j, 'token')).rejects.toBeInstanceOf(DelayedError);
    expect(attempt).toHaveBeenCalledWith(j.data, 3);
  });

  it.each<AttemptOutcome>([
    { kind: 'not_due', at: new Date(Date.now() + 60_000) },
    { kind: 'over_cap', at: new Date(Date.now() + 500) },
  ])('moves the job back to the delayed set when the outcome is $kind', async (outcome) => {
    const { processor: p } = processor(outcome);
    const { job: j, moveToDelayed } = job('dlv_01ABC-1');
    await expect(p.process(j, 'token')).rejects.toBeInstanceOf(DelayedError);
    expect(moveToDelayed).toHaveBeenCalledWith((outcome as { at: Date }).at.getTime(), 'token');
  });

  it('puts a job refused at a cap behind fresh jobs once, and leaves an early one where it was', async () => {
    const overCap = job('dlv_01ABC-1');
    await expect(processor({ kind: 'over_cap', at: new Date(Date.now() + 500) }).processor.process(overCap.job, 'token')).rejects.toBeInstanceOf(DelayedError);
    expect(overCap.changePriority).toHaveBeenCalledWith({ priority: OVER_CAP_PRIORITY });
    // Already behind: a second refusal costs no extra round trip.
    const again = job('dlv_01ABC-1');
    Object.assign(again.job, { priority: OVER_CAP_PRIORITY });
    await expect(processor({ kind: 'over_cap', at: new Date(Date.now() + 500) }).processor.process(again.job, 'token')).rejects.toBeInstanceOf(DelayedError);
    expect(again.changePriority).not.toHaveBeenCalled();
    const early = job('dlv_01ABC-1');
    await expect(processor({ kind: 'not_due', at: new Date(Date.now() + 60_000) }).processor.process(early.job, 'token')).rejects.toBeInstanceOf(DelayedError);
    expect(early.changePriority).not.toHaveBeenCalled();
  });

  it('lets a failure fail the job (the sweeper re-dispatches the delivery)', async () => {
    const { processor: p } = processor(new Error('database down'));
    await expect(p.process(job('dlv_01ABC-1').job, 'token')).rejects.toThrow('database down');
  });
});
