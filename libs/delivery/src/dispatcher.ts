import { InjectQueue } from '@nestjs/bullmq';
import { Injectable } from '@nestjs/common';
import { Queue } from 'bullmq';
import { DELIVERY_JOB_OPTIONS, DeliveryJob, Queues, deliveryJobId, manualJobId } from '@bellhop/queue';

/** Jobs per Redis pipeline. */
const DISPATCH_CHUNK = 250;

interface DispatchBase {
  deliveryId: string;
  webhookId?: string;
  organizationId?: string;
  /** When it is due; now when omitted. */
  at?: Date | null;
  /** Appended to the job id for an extra job beside one that may still exist (a re-dispatch). */
  key?: string;
}

/** A job for the next scheduled step (`attempt`: 1 for a new delivery), or for a manual request. */
export type Dispatch = DispatchBase & ({ kind?: 'scheduled'; attempt: number } | { kind: 'manual'; requestedAt: Date });

function jobIdOf(item: Dispatch): string {
  const base = item.kind === 'manual' ? manualJobId(item.deliveryId, item.requestedAt) : deliveryJobId(item.deliveryId, item.attempt);
  return item.key ? `${base}-${item.key}` : base;
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
      data: {
        deliveryId: item.deliveryId,
        webhookId: item.webhookId,
        organizationId: item.organizationId,
        ...(item.kind === 'manual' ? { kind: 'manual' as const } : { kind: 'scheduled' as const, attempt: item.attempt }),
      } satisfies DeliveryJob,
      opts: {
        ...DELIVERY_JOB_OPTIONS,
        jobId: jobIdOf(item),
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
