import { InjectQueue } from '@nestjs/bullmq';
import { Injectable } from '@nestjs/common';
import { Queue } from 'bullmq';
import { DELIVERY_JOB_OPTIONS, DeliveryJob, Queues, deliveryJobId } from '@bellhop/queue';

/** Jobs per Redis pipeline. */
const DISPATCH_CHUNK = 250;

export interface Dispatch {
  deliveryId: string;
  webhookId?: string;
  organizationId?: string;
  /** The attempt number this job is for (1 for a new delivery). */
  attempt: number;
  /** When it is due; now when omitted. */
  at?: Date | null;
  /** Appended to the job id for an extra job beside the scheduled one (a manual retry). */
  key?: string;
}

/**
 * Puts deliveries on the queue by id, after their rows are committed. A lost enqueue is not lost
 * work: the sweeper finds due rows that have no job and dispatches them again.
 */
@Injectable()
export class DeliveryDispatcher {
  constructor(@InjectQueue(Queues.delivery) private readonly queue: Queue<DeliveryJob>) {}

  async dispatch(items: readonly Dispatch[]): Promise<void> {
    if (items.length === 0) return;
    const now = Date.now();
    const jobs = items.map((item) => ({
      name: 'attempt',
      data: { deliveryId: item.deliveryId, webhookId: item.webhookId, organizationId: item.organizationId },
      opts: {
        ...DELIVERY_JOB_OPTIONS,
        jobId: deliveryJobId(item.deliveryId, item.attempt) + (item.key ? `-${item.key}` : ''),
        delay: item.at ? Math.max(0, item.at.getTime() - now) : 0,
      },
    }));
    // Chunks keep each Redis pipeline bounded for very large fan-outs; they are sent together so
    // that Redis runs one while the next is being written.
    const chunks: Array<typeof jobs> = [];
    for (let i = 0; i < jobs.length; i += DISPATCH_CHUNK) chunks.push(jobs.slice(i, i + DISPATCH_CHUNK));
    await Promise.all(chunks.map((chunk) => this.queue.addBulk(chunk)));
  }

  /** Best effort: a failed enqueue after commit is logged by the caller and repaired by the sweeper. */
  async tryDispatch(items: readonly Dispatch[]): Promise<Error | null> {
    try {
      await this.dispatch(items);
      return null;
    } catch (err) {
      return err as Error;
    }
  }
}
