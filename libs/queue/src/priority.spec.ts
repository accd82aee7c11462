import { randomBytes } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { redisConnectionOptions } from './connection';

/**
 * What Bellhop relies on in BullMQ's order of jobs, against a real Redis, so that an upgrade that
 * changes it fails here: a job sent back at a cap (priority 1) comes after every fresh job, and
 * the sweeper's changePriority({ priority: 0 }) puts it at the back of the fresh ones.
 */
describe("BullMQ's order of fresh and prioritized jobs", () => {
  const connection = { ...redisConnectionOptions(process.env.TEST_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'), maxRetriesPerRequest: null };
  const prefix = `bhprio${randomBytes(4).toString('hex')}`;
  let queue: Queue;

  beforeAll(() => {
    queue = new Queue('order', { connection, prefix });
  });

  afterAll(async () => {
    await queue.obliterate({ force: true });
    await queue.close();
  });

  async function order(): Promise<string[]> {
    const seen: string[] = [];
    const worker = new Worker('order', async (job) => void seen.push(job.name), { connection, prefix, concurrency: 1, autorun: false });
    const drained = new Promise<void>((resolve) => worker.on('drained', () => resolve()));
    void worker.run();
    await drained;
    await worker.close();
    return seen;
  }

  it('takes fresh jobs before a prioritized one, and a re-queued one after the fresh ones already there', async () => {
    await queue.add('sent-back', {}, { priority: 1 });
    await queue.add('fresh-1', {});
    const starved = await queue.add('starved', {}, { priority: 1 });
    await queue.add('fresh-2', {});
    expect(await starved.getState()).toBe('prioritized');
    await starved.changePriority({ priority: 0 });
    expect(await starved.getState()).toBe('waiting');
    await queue.add('fresh-3', {});
    expect(await order()).toEqual(['fresh-1', 'fresh-2', 'starved', 'fresh-3', 'sent-back']);
  });
});
